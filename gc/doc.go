// Package gc is Berth's online garbage collector: a pure mark and sweep over
// a reference graph (graph.go, driven by tests with plain maps) and Run,
// which reads the graph from a store.Store and sweeps through it. It may
// import storage/store, manifest and the OCI digest package; never the HTTP
// layer or a backend.
//
// # What is kept
//
// The roots are every manifest revision of every repository (Distribution's
// default: untagged manifests are kept) and every digest a tag points at.
// From a kept manifest, its config and layers, its child manifests (nested
// indexes too) and the manifest's own bytes are marked; a referrer (a
// manifest with a subject) is kept while its subject is kept. A blob is
// unreferenced if no kept manifest of any repository marks it; a layer link
// of repository R is unreferenced if no kept manifest of R marks its blob.
//
// # The concurrency contract
//
// GC runs while pushes and pulls go on; there is no read-only window.
//
// Run records start before it reads anything, then marks, then sweeps. The
// sweep deletes a blob's data (or a layer link) only if it was unreferenced
// when marked AND its file's ModTime, read after an atomic rename aside, is
// before cutoff = start - grace; else the file is moved back. The store
// (storage/store/gc.go) holds the other half: whenever it lets a client rely
// on a blob that exists — StatBlob (HEAD), MountBlob, FinishUpload/PutBlob
// finding or moving the bytes in, PutManifest checking a reference or
// finding its own body stored — it touches the file (ModTime := now) if its
// ModTime is older than store.Options.TouchAfter (10m), and reports the blob
// unknown if the touch finds it gone. Sweeping needs storage.Toucher; Run
// refuses to sweep without it (only DryRun), since the rule cannot hold.
//
// Why a push that got 201 cannot lose a blob b. The push's PutManifest
// checked b at some time t2 and wrote the revision link at t3 > t2.
//
//   - If GC read that repository's revisions after t3, the manifest is a
//     root and b is marked: b is not a candidate.
//   - Otherwise GC read them before t3, so start < t3. At t2 the store saw
//     b's ModTime m and left it at max(m, t2) >= t2 - TouchAfter. Given
//     assumption A below, t2 - TouchAfter > start - grace = cutoff.
//     The sweep of b renames it aside at some tr. If tr > t2, the rename
//     moves the file with ModTime >= t2 - TouchAfter > cutoff, the check
//     sees it and puts it back. If tr < t2, the store's stat or touch at t2
//     found nothing (the rename is atomic, and ModTime travels with it), so
//     PutManifest answered MANIFEST_BLOB_UNKNOWN, not 201.
//
// A blob pushed during GC is written after start (recent ModTime) and
// survives the same way; a client that saw b exist by HEAD or mount and
// then pushes a manifest is covered by the PutManifest case (and the HEAD
// touch makes the 201 the likely outcome). Layer links follow the same
// rule: StatBlob touches the link, MountBlob and FinishUpload write it anew,
// and SweepLayerLink renames aside and checks like SweepBlob.
//
// Assumption A: grace > TouchAfter + the longest PutManifest (from its
// reference check to its revision link) + the clock skew between the
// collector and the storage's clock (the file's ModTime). With the default
// grace of 1h and TouchAfter of 10m, a PUT may take 50 minutes less the
// skew. Run rejects grace <= TouchAfter.
//
// A sweep killed between the rename and the delete leaves a "gc-doomed"
// file; the next Run puts it back before marking, so runs converge.
package gc

// Package gc is Berth's online garbage collector: a pure mark and sweep over
// a reference graph (graph.go, driven by tests with plain maps), the reading
// of that graph from a store (read.go), retention rules (retention.go), and
// Run, which deletes what nothing reaches while the registry keeps serving
// pushes and pulls (run.go). It may import storage/store, manifest and the
// OCI digest package; never the HTTP layer or a backend.
//
// # What is kept
//
// The roots of a repository are the manifests its tags point at (after
// retention removed tags), every manifest revision unless untagged ones are
// deleted (Options.DeleteUntagged), revisions written after the cutoff, and
// whatever a client leased during the run. From a kept manifest, its config
// and layers, its child manifests (nested indexes too), its own bytes and
// its referrers (manifests whose subject it is) are kept. Everything else
// that is older than the cutoff (start - grace) goes: manifest revisions
// (with their referrers-index entries and tag history links), layer links
// no kept manifest of the repository needs, blob bytes no kept manifest of
// any repository needs, and uploads idle for longer than UploadMaxAge.
// Tags are only removed by retention; a tag's manifest is a root, so a tag
// never points at a missing manifest.
//
// # The referrers index
//
// Marking takes a manifest's subject from its body, never from the
// referrers index, so an incomplete index cannot make a referrer go. Run
// also completes that index: a manifest with a subject that the index of
// its repository does not list (written by a registry that keeps no index,
// such as CNCF Distribution) gets the entry its push would have written,
// unless the run deletes it; a dry run does this too, as it only adds. An
// entry written for a manifest deleted meanwhile is removed again
// (store.IndexReferrer).
//
// # The safety contract
//
// Nothing here needs a lock service, a database, or a read-only window;
// only storage with read-after-write consistency (a filesystem, S3), which
// every replica and any "berth gc" share. The two parties are the store
// (storage/store/gc.go) serving clients, and the collector:
//
//   - The store, whenever it lets a client rely on something that already
//     exists (PutManifest: the blobs and child manifests it references and
//     its own stored body and revision; FinishUpload: identical bytes
//     already stored and the layer link; MountBlob: the bytes and the
//     target link), first WRITES A LEASE naming (repository, digest) pairs,
//     THEN READS the doom lists. If one names any of those items, it waits
//     until the list goes (the collector decided), then looks at what is
//     there. HEAD and mount answer "unknown" for a doomed item at once; a
//     GET is a read and ignores doom lists (what it reads is either needed
//     by nothing or kept by a push's lease).
//   - The collector plans from a graph read after its start, then, in
//     rounds, FIRST WRITES A DOOM LIST naming the round's items (one object
//     per round, so that one round removing its list leaves every other),
//     THEN READS every lease written since the cutoff, re-marks with the
//     leased digests as extra roots, spares what they reach, deletes the
//     rest (manifests, then layer links, then blobs), and removes its list.
//
// Why a manifest that got 201 never loses a blob or child b. Its PUT wrote
// lease L (naming b) at t1, read the doom lists at t2 > t1, and saw b
// present after. The collector wrote the list naming b at td and read the
// leases at tl > td. Either td < t2: the PUT saw the list and waited until the
// collector had deleted or spared b, then looked; if b was gone the PUT
// answered MANIFEST_BLOB_UNKNOWN, not 201. Or t2 < td: then t1 < t2 < td <
// tl, so the collector read L (it is younger than the cutoff, see A) and
// spared b and, through the re-mark, everything b reaches. A collector that
// read the graph after the PUT's revision link was written has the
// manifest as a root and never plans b. The same argument covers a layer
// link, a child manifest's revision, the PUT's own body (re-pushing a
// manifest the collector is deleting waits, then writes it again), a blob
// whose upload finished onto bytes already stored, and a mount. A blob or
// revision written after the run started is newer than the cutoff and is
// never planned.
//
// A client that saw a blob exist (HEAD, or a mount) and then pushes a
// manifest is covered by the PUT argument: 201 with the blob kept, or
// MANIFEST_BLOB_UNKNOWN. HEAD also leases a blob older than the store's
// LeaseAfter, so that a collector running between the HEAD and the PUT
// spares it and the PUT gets 201. A HEAD or mount of a doomed blob answers
// "unknown" and the client uploads it again; the upload's finish waits
// for the collector, so the bytes it leaves are never the ones deleted.
//
// Sparse manifests (the store's SparseManifests) accept a reference that
// is absent, which would turn the MANIFEST_BLOB_UNKNOWN above into a 201
// for a manifest whose blob a collector deleted between the client's HEAD
// and its PUT (a slow push whose HEAD came before the cutoff's lease
// window). So a round's doom list is not removed but kept as a tombstone
// for store.TombstoneTTL (a day), a killed collector's once it is void
// too, and the store accepts an absent reference only if neither a doom
// list nor a tombstone names it: absent because never pushed, not because
// collected. The collector writes its list before it deletes anything, so
// a PUT that finds a deleted item absent finds the list (valid, or a
// tombstone) as well.
//
// An upload in progress is never swept: only uploads with no file written
// for UploadMaxAge (at least the grace) are purged, and a finished one
// moves its bytes into place with a fresh modification time.
//
// Assumptions. (A) A lease counts while it is younger than the cutoff: the
// grace must exceed the longest manifest PUT (from its lease to its
// revision link) plus the clock skew between the hosts and the storage.
// Times are the storage's: a run's start is the modification time of an
// object it writes. (B) A round deletes nothing later than store.DoomTTL/4
// after it wrote its doom list (checked on this host's monotonic clock; a
// slower round spares its items); the store treats a list older than
// store.DoomTTL as void, so a killed collector blocks nobody for long, and
// the three quarters in between absorb clock skew. NoGrace drops (A): use
// it only when no client writes.
//
// # A full storage
//
// The contract asks the collector to write before it deletes: the clock
// probe (Run's start), then each round's doom list. On a storage with no
// space left those writes would fail, and nothing could ever be freed. So
// the store keeps a reserve for the collector (store.Reserve: an object of
// zeros under _berth/gc, Options.Reserve bytes, made by the server at its
// start and by every run that completes): a collector write refused for
// space (storage.IsFull) releases the reserve and is made again
// (store.withReserve), so that the writes happen, in the same order,
// before anything is deleted; the contract is unchanged. A client's push
// may take some of the released space first; a reserve of 1 MiB holds the
// clock probe and several rounds' lists, and the first round's deletions
// free more. The run makes the reserve again at its end.
//
// # Interruption
//
// A run killed at any point leaves: deleted items (gone, as planned),
// a doom list (void after DoomTTL, removed by a later run), leases
// (expire), and a plan half done. Until its list is void, a push that
// relies on an item the killed run doomed, and that exists again (pushed
// anew), waits: at most store.DoomTTL (a minute) after the kill. Items are
// deleted manifests first, then layer
// links, then blobs, so a revision never outlives its bytes; the next run
// reads the graph afresh and finishes the job. Several collectors may run
// at once (an in-server loop on each replica and a "berth gc"): each one's
// doom lists and leases argument holds on its own, and deletes are
// idempotent.
package gc

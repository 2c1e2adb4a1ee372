// Package layers is berth run's layer store: each image layer unpacked
// once, in its own directory keyed by diff_id and shared by every image
// that has it, with OCI whiteouts turned into overlayfs whiteouts; and the
// rootfs assembled from layers by an overlayfs mount (Mount) or, where
// overlayfs is unavailable (OverlaySupported), by copying them (Flatten).
// It also writes trees back out as tar streams: a container's overlayfs
// upper directory as an OCI layer, overlay whiteouts and opaque
// directories turned back into OCI whiteouts (WriteUpper), and a whole
// rootfs, for export (WriteTree; MountView shows a container's rootfs
// read-only to read it from).
//
// It may import the standard library, golang.org/x/sys/unix, go-digest,
// image-spec and klauspost/compress; never the registry, the storage
// drivers or the pull client (depcheck_test.go). It runs as root.
//
// # Layout
//
//	<root>/                            0700: stored layers keep setuid files
//	  layers/<alg>/<hex>/              one complete layer; <alg>:<hex> is its diff_id
//	    fs/                            the unpacked tree, an overlayfs lowerdir
//	    layer.json                     {diffID, size, entries, skipped, complete}
//	  mountpoints/{dev,proc,sys}/      empty: the top lower layer of a container's rootfs (Mount)
//	  overlay-ok                       the kernel and filesystem an overlay probe passed on
//	  tmp/<id>.lock                    flocked by the process using tmp/<id>
//	  tmp/<id>/                        an unpack in progress (fs/ and layer.json as above),
//	                                   or a layer being removed
//
// AddUpper stores a build step's overlayfs upper directory without a
// second extraction: the directory is renamed to tmp/<id>/fs and made, as
// its stream is written, exactly what extracting that stream would make
// (see AddUpper); the rest is as for an unpack.
//
// An unpack fills tmp/<id>/, verifies the diff_id, syncs the filesystem,
// writes layer.json last and renames tmp/<id> to layers/<alg>/<hex>: a
// directory under layers/ is always complete. A failed unpack removes its
// tmp/<id>; Open removes the slots nobody holds a lock on (crash leftovers)
// and leaves those of live processes sharing the root alone. Remove renames
// the layer into a slot before deleting it.
//
// # Concurrency
//
// A Store is safe for concurrent use. Unpack of one diff_id runs once per
// process (later callers wait and do not read their stream) and, across
// processes, the first rename wins and the others discard their copy.
// UnpackAll unpacks an image's layers a few at a time, opening only those
// not yet stored. The store keeps no reference counts: removing a layer
// that a mounted or running rootfs uses is the caller's problem.
//
// # Extraction rules
//
// Every path is resolved relative to the layer's directory with openat2
// (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
// RESOLVE_NO_XDEV), or, on kernels without openat2, component by component
// with openat(O_NOFOLLOW|O_DIRECTORY); the change itself is one *at call
// on the final name from that directory's descriptor. Nothing is ever
// followed, so nothing outside the layer's directory is touched:
//
//   - absolute names are confined: "/etc/passwd" is etc/passwd in the layer
//     (a layer's "/" is the container's root);
//   - relative names whose ".." climbs above the root are refused
//     (ErrUnsafeEntry, the whole layer fails); ".." that stays inside is
//     cleaned lexically;
//   - a path through a symlink (even one the layer itself made, such as
//     etc -> /etc followed by etc/passwd) or through a non-directory is
//     refused, whiteouts included;
//   - "." as a directory ("./") is the root and ignored; "." as anything
//     else, and empty names, are refused;
//   - hardlinks must name an earlier non-directory entry of the same layer
//     (same name rules, resolved without symlinks): anything else is
//     refused;
//   - symlinks are created as written, resolved only inside the container;
//   - regular files are always new inodes (O_CREAT|O_EXCL|O_NOFOLLOW after
//     removing what an earlier entry put there), so no earlier hardlink or
//     symlink can redirect a write;
//   - device nodes and unknown entry types are skipped and counted (fifos are made)
//     (Layer.Skipped);
//   - owners, modes with setuid, setgid and sticky bits, and times are
//     kept; of xattrs only user.* and security.capability (trusted.*, which
//     would let a layer forge overlayfs metadata, is dropped);
//   - Limits caps the uncompressed bytes and the entries (a gzip bomb fails
//     with ErrTooLarge).
//
// Whiteouts: ".wh.NAME" becomes a 0/0 character device NAME and
// ".wh..wh..opq" sets trusted.overlay.opaque=y on its directory, the forms
// overlayfs reads. A whiteout only hides lower layers: one whose NAME an
// earlier entry of the same layer made leaves that entry (and makes it
// opaque if it is a directory, as does a directory made after a whiteout
// of its name).
//
// Any error removes the partial unpack. Media types: see CheckMediaType;
// the compression (gzip, zstd or none) is read from the stream's first
// bytes.
package layers

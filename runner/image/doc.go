// Package image is berth's local image store: the images `berth pull`
// fetched, by reference and by ID (the config digest), over the layer store
// of runner/layers, and the root filesystems `berth run` and `berth bundle`
// build from them.
//
// It may import the standard library, golang.org/x/sys/unix, go-digest,
// klauspost/compress (StoreLayer's gzip),
// image-spec, runner/pull and runner/layers; never the registry server,
// storage or the container runtime (depcheck_test.go).
//
// # Layout
//
//	<state>/                          0700 (default /var/lib/berth)
//	  layers/                         the runner/layers store (its own layout, see its doc)
//	  images/<alg>/<hex>.json         one image record; <alg>:<hex> is the config digest,
//	                                  the image ID: manifest digest and media type,
//	                                  platform, the config as pulled (base64), the layers
//	                                  (diff_id, blob digest, media type, size), pull time
//	  blobs/<alg>/<hex>               a verified blob: the manifests, configs and compressed
//	                                  layers of the images, and the indexes and their other
//	                                  platforms' blobs, as pulled, committed or loaded
//	                                  (what push and save give out), written through
//	                                  blobs/.tmp-* and a rename
//	  refs.json                       the reference index: {"refs": {REF: {"id", "manifest",
//	                                  "index"}}}, REF in the full host/name:tag[@digest] form;
//	                                  "index" is the multi-platform index REF was pulled or
//	                                  loaded through, its blob stored (with every platform's
//	                                  blobs after pull --all-platforms: Store.Index); "id" and
//	                                  "manifest" are empty when it has no image for this host
//	  lock                            flock: shared by Pull and Rootfs/Flatten, exclusive by Prune
//	  refs.lock                       flock: exclusive around every change of refs.json and images/
//
// Records and refs.json are written to a temporary file, synced and renamed
// into place: readers (List, Get) take no lock and see each file whole. An
// image record is written before the reference that names it, and removed
// after the last reference to it.
//
// # Concurrency
//
// A Store is safe for concurrent use, and processes may share a state
// directory. A pull holds the shared lock from its first layer to its
// record, so Prune (exclusive) can never remove a layer a pull counted as
// present (PullOptions.Have) or just unpacked before the image naming it is
// recorded. Prune keeps the layers of every recorded image and those the
// caller names; the store keeps no reference count of the rootfs it
// mounted, so a caller that removes an image whose containers still run
// must pass their layers to Prune.
package image

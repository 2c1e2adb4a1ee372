// Package commit turns containers into images and trees into tars: Commit
// makes a container's writable layer a new layer on top of its image
// (`berth commit`), Import makes a one-layer image from a rootfs tar
// (`berth import`), and Export writes a container's whole filesystem as a
// tar (`berth export`). ApplyChanges applies the Dockerfile instructions
// `-c` gives (CMD, ENTRYPOINT, ENV, ...) to an image config.
//
// It may import the standard library, go-digest, image-spec, BuildKit's
// Dockerfile parser (and Docker's config types), and runner/image,
// runner/layers, runner/container, runner/pull and runner/build/dockerfile
// (the Dockerfile config helpers); never the
// registry server or the storage drivers (depcheck_test.go).
//
// # What an image made here holds
//
// A new layer's tar stream (layers.WriteUpper or, for Import, the tar as
// given, decompressed) is stored by image.Store.StoreLayer (shared with
// berth build): unpacked into the layer store, which checks every entry
// and computes the diff_id as it reads, while the same bytes are
// gzip-compressed into a blob that is committed only once the layer is
// stored: one pass, and a refused entry leaves nothing. The config and the manifest are then stored as blobs
// and the image recorded (image.Store's Record), all under image.Store's
// Hold so that Prune cannot remove a piece before the image names it. A
// failure after the layer is stored leaves at most a layer and blobs no
// image names, which the next Prune removes. The manifest keeps
// the base image's format: Docker schema 2 media types over a Docker
// image, OCI ones otherwise (and for Import).
package commit

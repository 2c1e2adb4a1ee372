// Package push sends images from the local image store (runner/image) to OCI
// distribution registries for `berth push`: per blob a HEAD, a cross-repository
// mount from another repository of the same registry that a local image came
// from, or an upload (monolithic for small blobs, PATCH chunks streamed from the
// stored file for large ones, resumed where the registry says it stands after a
// broken connection); then the manifests, children before their index, so that a
// tag never names something half pushed. Requests go through the pull client
// (runner/pull), its token flow and docker config credentials.
//
// It may import the standard library, go-digest, image-spec, golang.org/x/term,
// manifest, runner/pull and runner/image; never the registry server, storage, auth
// or the container runtime (depcheck_test.go).
package push

// Package output writes a built image somewhere besides the local image
// store: `berth build --output`. The forms, as docker buildx takes them:
//
//	type=local,dest=DIR    the image's filesystem, flattened, written into DIR
//	                       (created if missing; paths resolved inside DIR, a
//	                       symlink in it replaced, never followed)
//	type=tar,dest=FILE     the same filesystem as one tar
//	type=oci,dest=FILE     an OCI image archive (runner/archive's Save: an OCI
//	type=docker,dest=FILE  layout and a docker-archive in one tar, which
//	                       docker load, podman load and skopeo read)
//	DIR                    type=local,dest=DIR
//	-                      type=tar,dest=-
//
// A FILE of "-" is standard output (type=local,dest=- too writes the tar
// there); files are written to a temporary name and renamed when whole.
//
// It may import the standard library, runner/archive, runner/image and
// runner/layers; never the registry server, storage or the container
// runtime (depcheck_test.go).
package output

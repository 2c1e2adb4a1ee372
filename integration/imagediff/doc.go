// Package imagediff compares two built images the way a user of them would
// see them: their config (what docker build writes: Env, Entrypoint, Cmd,
// User, Healthcheck, OnBuild, Shell, history, ...) and their flattened
// filesystem (the layers applied in order with OCI whiteouts: per path the
// type, mode, owner, size, content digest, link target and xattrs), never
// the times, the compression or the digests. The build tests use it to hold
// berth build's images against BuildKit's for the same Dockerfile.
//
// Load reads one image from an OCI image layout (a directory or a tar of
// one, as `buildctl build --output type=oci` writes) or a docker-archive tar;
// Compare lists the differences of two, one readable line each.
//
// It may import the standard library and klauspost/compress (zstd layers);
// nothing of Berth, so that it judges berth build with code of its own
// (depcheck_test.go).
package imagediff

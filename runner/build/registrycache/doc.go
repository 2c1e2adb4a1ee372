// Package registrycache keeps berth build's cache in a registry
// (`--cache-to type=registry,ref=REF` and `--cache-from
// type=registry,ref=REF`) as ONE manifest under one tag, not one tag per
// step: Export writes it and pushes it with runner/push (blobs the
// repository has are skipped, blobs of images of the same registry
// mounted), Source reads it back and downloads a step's layer only when a
// build looks that step up. A registry's garbage collection treats it as
// any other manifest: while the tag names it, its config and layer blobs
// are kept.
//
// # Format
//
// An OCI image manifest (application/vnd.oci.image.manifest.v1+json) with
//
//	artifactType  application/vnd.berth.build.cache.v1
//	config        a blob of media type
//	              application/vnd.berth.build.cache.config.v1+json
//	layers        the layer blobs of the cached steps, each once, as
//	              stored locally (gzip OCI layers, or what a base image
//	              had), in the order the steps first made them
//
// whose config is the JSON object
//
//	{"layers": [{"diffID": "sha256:…"}, …],      one per manifest layer, same order
//	 "steps":  [{"key": "<64 hex>",               the step's cache key (runner/build)
//	             "layer": 0,                      index into layers
//	             "created": "2025-…Z",            when the step first made the layer
//	             "step": "RUN …"}, …]}            its history line, for people
//
// A step's key hashes its parent's key and the step with its arguments
// expanded (runner/build's doc), so a build on another machine, from the
// same base image and context, finds the same keys. Export with
// build.CacheMin keeps the steps of the image's own stages; build.CacheMax
// those of every stage. A cache read back is checked whole before it is
// used (keys, digests, indexes, media types, sizes); a layer is checked
// against its digest, size and diff_id as a pulled one is.
//
// It may import the standard library, go-digest, image-spec, manifest,
// runner/build, runner/image, runner/pull and runner/push; never the
// registry server, storage or the container runtime (depcheck_test.go).
package registrycache

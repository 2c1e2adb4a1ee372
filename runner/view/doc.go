// Package view holds what berth's runner commands show of the local image
// and container stores, in docker's shapes: the documents of `berth
// inspect` and `berth image inspect` (docker's JSON field names, so that
// docker's --format templates work on them), the rows of `berth history`,
// `berth images` (with its --filter) and `berth ps`, their default table
// formats and column headers. The documents and rows are built by pure
// functions over what the stores return; Inspector reads the stores.
//
// It may import the standard library, go-digest, image-spec, runtime-spec
// and the runner packages whose stores it shows (runner/image,
// runner/container, runner/spec, runner/pull for references,
// runner/format); never the registry server, storage or auth
// (depcheck_test.go).
package view

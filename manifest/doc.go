// Package manifest parses and validates what clients push by name: image manifests, indexes
// (OCI and Docker schema 2), repository names, tags and digests, and defines their sentinel errors.
//
// It may import only the standard library, go-digest and image-spec: the HTTP layer, the storage
// packages and the registry package stay out (see storage/depcheck_test.go).
package manifest

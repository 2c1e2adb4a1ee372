// Package store is the registry's content store: blobs, uploads, manifests,
// tags and referrers kept through a storage.Driver in the on-storage layout of
// CNCF Distribution v2 (drawn in layout.go), so that Berth and Distribution can
// serve the same root directory or bucket.
//
// It may import storage, manifest and the OCI digest/spec packages; never the
// HTTP layer or a backend.
package store

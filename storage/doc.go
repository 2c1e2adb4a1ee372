// Package storage defines the driver interface that every storage backend
// (filesystem, in-memory, S3) implements, and the errors drivers return.
//
// It may import only the standard library: the HTTP layer, manifest handling
// and cloud SDKs stay out (see depcheck_test.go). The registry's on-storage
// layout lives one level up, in package storage/store.
package storage

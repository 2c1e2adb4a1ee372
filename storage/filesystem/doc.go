// Package filesystem holds the storage.Driver that keeps content as files under a local root directory.
// It may import only the standard library and package storage.
package filesystem

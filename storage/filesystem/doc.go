// Package filesystem holds the storage.Driver that keeps content as files under a local root directory.
// It may import only the standard library, golang.org/x/sys/unix (Linux writeback hints) and package storage.
package filesystem

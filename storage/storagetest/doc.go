// Package storagetest holds the test suite and benchmarks that every storage.Driver must pass.
// It may import only the standard library (testing included) and package storage.
package storagetest

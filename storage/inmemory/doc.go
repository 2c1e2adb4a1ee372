// Package inmemory holds a storage.Driver that keeps content in memory, for tests and throwaway registries.
// It may import only the standard library and package storage.
package inmemory

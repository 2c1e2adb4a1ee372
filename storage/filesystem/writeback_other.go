//go:build !linux

package filesystem

import "os"

// startWriteback does nothing where sync_file_range is missing: the fsync
// ending the writer writes everything.
func startWriteback(f *os.File, off, n int64) {}

// syncData makes f's data durable.
func syncData(f *os.File) error { return f.Sync() }

// syncFilesystem does nothing where syncfs is missing: directories that a
// process which crashed made and never synced may be lost in a crash of
// the machine soon after (see dirSyncer).
func syncFilesystem(name string) error { return nil }

package storage

import "context"

// Toucher is an optional driver ability: setting the modification time of
// the file at path to now (the driver's clock) without changing its content,
// so that Stat and Walk report the new ModTime. It returns ErrNotFound if no
// file is at path (a directory is not a file). It is idempotent. Wrappers of
// a Driver must forward it.
//
// Garbage collection relies on it: the store touches an old blob whenever it
// lets a client rely on it, and the sweep spares blobs touched since it
// started (see package gc). Without it, GC may only plan (dry run).
type Toucher interface {
	Touch(ctx context.Context, path string) error
}

package inmemory

import (
	"context"

	"github.com/berth-registry/berth/storage"
)

var _ storage.BatchDeleter = (*Driver)(nil)

// DeleteFiles removes the files at paths, and the directories this leaves
// empty, under one lock; a directory at a path is left alone.
func (d *Driver) DeleteFiles(ctx context.Context, paths []string) []error {
	errs := make([]error, len(paths))
	if err := ctx.Err(); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, p := range paths {
		if err := checkPath(p, true); err != nil {
			errs[i] = err
			continue
		}
		if n := d.lookup(p); n != nil && !n.isDir() {
			d.remove(p)
		}
	}
	return errs
}

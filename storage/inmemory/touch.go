package inmemory

import (
	"context"
	"time"

	"github.com/berth-registry/berth/storage"
)

var _ storage.Toucher = (*Driver)(nil)

// Touch sets the modification time of the file at p to now.
func (d *Driver) Touch(ctx context.Context, p string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkPath(p, true); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	n := d.lookup(p)
	if n == nil || n.isDir() {
		return notFound(p)
	}
	n.modTime = time.Now()
	return nil
}

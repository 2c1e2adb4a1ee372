package filesystem

import (
	"context"
	"os"
	"time"

	"github.com/berth-registry/berth/storage"
)

var _ storage.Toucher = (*Driver)(nil)

// Touch sets the modification time of the file at p to now.
func (d *Driver) Touch(ctx context.Context, p string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	name, err := d.fileName(p)
	if err != nil {
		return err
	}
	fi, err := os.Lstat(name)
	if err != nil {
		return pathError(p, err)
	}
	if !fi.Mode().IsRegular() {
		return notFound(p)
	}
	now := time.Now()
	if err := os.Chtimes(name, now, now); err != nil {
		return pathError(p, err)
	}
	return nil
}

//go:build !linux

package filesystem

import (
	"context"
	"os"

	"github.com/berth-registry/berth/storage"
)

// statFile describes the file or directory name (storage path p), following
// links.
func statFile(p, name string) (storage.FileInfo, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return storage.FileInfo{}, err
	}
	return fileInfo(p, fi), nil
}

// Version is not supported off Linux.
func (d *Driver) Version(ctx context.Context, p string) (storage.Version, error) {
	return storage.Version{}, storage.ErrUnsupported
}

// ReadVersion is not supported off Linux.
func (d *Driver) ReadVersion(ctx context.Context, p string) ([]byte, storage.Version, error) {
	return nil, storage.Version{}, storage.ErrUnsupported
}

//go:build !linux

package filesystem

import (
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

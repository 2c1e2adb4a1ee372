package filesystem

import (
	"context"
	"os"
	"path"

	"github.com/berth-registry/berth/storage"
)

var _ storage.BatchDeleter = (*Driver)(nil)

// DeleteFiles removes the files at paths one after the other (an unlink
// each), then the directories this leaves empty, as Delete does: each
// parent directory once, however many files it lost. A symbolic link at a
// path is removed, not what it points to. A directory at a path is left
// alone (an empty one may be removed: it is no content).
func (d *Driver) DeleteFiles(ctx context.Context, paths []string) []error {
	errs := make([]error, len(paths))
	emptied := map[string]bool{} // parents of removed files, to prune
	for i, p := range paths {
		if err := ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		name, err := d.fileName(p)
		if err != nil {
			errs[i] = err
			continue
		}
		// os.Remove unlinks a file or a link, removes an empty directory,
		// and fails on a directory that is not empty.
		if err := os.Remove(name); err != nil {
			if isNotFound(err) {
				continue
			}
			if fi, lerr := os.Lstat(name); isNotFound(lerr) || lerr == nil && fi.IsDir() {
				continue // gone meanwhile, or a directory: no file there
			}
			errs[i] = pathError(p, err)
			continue
		}
		emptied[path.Dir(p)] = true
	}
	// prune goes up while directories are empty, so the order of the
	// parents does not matter.
	for dir := range emptied {
		d.prune(dir)
	}
	return errs
}

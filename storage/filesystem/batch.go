package filesystem

import (
	"context"
	"math/rand/v2"
	"os"
	"path"
	"sync"
	"sync/atomic"

	"github.com/berth-registry/berth/storage"
)

var _ storage.BatchDeleter = (*Driver)(nil)

// deleteWorkers is how many unlinks and rmdirs DeleteFiles has in flight:
// on a cold cache each waits for the disk to read a directory, and a disk
// serves many such reads at once far faster than one after the other.
const deleteWorkers = 32

// DeleteFiles removes the files at paths, deleteWorkers at a time (an
// unlink each, then the directories this leaves empty, as Delete does). A
// symbolic link
// at a path is removed, not what it points to. A directory at a path is
// left alone (an empty one may be removed: it is no content).
func (d *Driver) DeleteFiles(ctx context.Context, paths []string) []error {
	errs := make([]error, len(paths))
	// Paths in a row usually share a directory, and every unlink and
	// rmdir in one directory takes its lock: in their given order the
	// workers would wait on each other. A random order spreads them over
	// the directories (a collection took two thirds of the time).
	order := rand.Perm(len(paths))
	each(len(paths), deleteWorkers, func(k int) {
		i := order[k]
		if err := ctx.Err(); err != nil {
			errs[i] = err
			return
		}
		p := paths[i]
		name, err := d.fileName(p)
		if err != nil {
			errs[i] = err
			return
		}
		// os.Remove unlinks a file or a link, removes an empty directory,
		// and fails on a directory that is not empty.
		if err := os.Remove(name); err != nil {
			if isNotFound(err) {
				return
			}
			if fi, lerr := os.Lstat(name); isNotFound(lerr) || lerr == nil && fi.IsDir() {
				return // gone meanwhile, or a directory: no file there
			}
			errs[i] = pathError(p, err)
			return
		}
		// prune goes up while directories are empty; two prunes meeting
		// in a parent leave it to whichever finds it empty.
		d.prune(path.Dir(p))
	})
	return errs
}

// each calls fn(0..n-1), workers calls at a time.
func each(n, workers int, fn func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				fn(i)
			}
		})
	}
	wg.Wait()
}

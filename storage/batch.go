package storage

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// BatchDeleter is an optional driver ability: deleting many files at once,
// in far fewer requests than one Delete each (S3's DeleteObjects takes 1000
// keys). Garbage collection deletes through it, by way of DeleteFiles.
// Wrappers of a Driver must forward it.
type BatchDeleter interface {
	// DeleteFiles deletes the file at each of paths, as Delete does for a
	// file: its content, whatever the driver keeps for it out of sight
	// (content left by Close included), and the directories this leaves
	// empty. It returns one result per path, in the order of paths (so
	// always len(paths) of them), nil where the path holds no file any
	// more. A path that held nothing counts as deleted (nil), and so does a
	// directory: DeleteFiles removes files, never a directory tree, and
	// leaves a directory at a path as it is. A path that fails
	// ValidateChangePath, or that the driver reserves, is ErrInvalidPath
	// and does not stop the others. A failure of the whole call (ctx done,
	// the backend unreachable) is the result of every path it affects,
	// which may have been deleted or not. With a done ctx every result is
	// ctx's error (errors.Is(err, context.Canceled) holds). The same path
	// given twice gets the same result twice. Deleting "/a" never touches
	// "/ab". It is safe to call concurrently with any other method; a
	// path written while it is deleted may or may not survive.
	DeleteFiles(ctx context.Context, paths []string) []error
}

// DeleteFiles deletes the files at paths as BatchDeleter.DeleteFiles
// specifies, and returns len(paths) results in the order of paths: nil for
// a path that holds no file any more (deleted now, or missing already, or
// a directory, which is left alone), else why not. To learn whether all
// went well, test errors.Join(results...) == nil.
//
// If d is a BatchDeleter, its DeleteFiles does the work, with its own bound
// on requests in flight, and concurrency is not used. Otherwise each path
// is checked with ValidateChangePath, then Stat (a directory is left
// alone), then deleted with Delete, at most concurrency paths at a time (at
// least one); ErrNotFound from either counts as success. A file replaced
// by a directory between that Stat and that Delete would be deleted with
// its tree: drivers that can do better implement BatchDeleter.
func DeleteFiles(ctx context.Context, d Driver, paths []string, concurrency int) []error {
	if b, ok := d.(BatchDeleter); ok {
		errs := b.DeleteFiles(ctx, paths)
		if len(errs) == len(paths) {
			return errs
		}
		// A broken driver: no result can be trusted.
		bad := fmt.Errorf("storage: %T.DeleteFiles returned %d results for %d paths", d, len(errs), len(paths))
		errs = make([]error, len(paths))
		for i := range errs {
			errs[i] = bad
		}
		return errs
	}
	errs := make([]error, len(paths))
	var (
		next atomic.Int64 // index of the next path to delete
		wg   sync.WaitGroup
	)
	for range min(max(concurrency, 1), len(paths)) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(paths); i = int(next.Add(1) - 1) {
				errs[i] = deleteFile(ctx, d, paths[i])
			}
		})
	}
	wg.Wait()
	return errs
}

// deleteFile deletes the file at p with d's Stat and Delete: nil if no
// file is at p afterwards.
func deleteFile(ctx context.Context, d Driver, p string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := ValidateChangePath(p); err != nil {
		return err
	}
	fi, err := d.Stat(ctx, p)
	if err == nil && !fi.IsDir {
		err = d.Delete(ctx, p)
	}
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

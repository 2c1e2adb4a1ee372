package container

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"
)

// WritableSize returns the size of the container's writable layer (its
// upper directory), as docker's SizeRw counts it: the apparent sizes of the
// files, symlinks and other non-directories, each inode once. A container
// run without overlayfs (State.Flattened) has its whole rootfs as its
// writable layer: that is what is counted then.
func (c *Container) WritableSize(ctx context.Context, flattened bool) (int64, error) {
	dir := c.Upper()
	if flattened {
		dir = c.Rootfs()
	}
	n, err := apparentSize(ctx, dir)
	if err != nil {
		return 0, fmt.Errorf("container %s: writable layer size: %w", c.ID, err)
	}
	return n, nil
}

// apparentSize sums the sizes of the non-directories under dir, each inode
// once. Entries that vanish while it walks (a running container deleting
// files) are skipped.
func apparentSize(ctx context.Context, dir string) (int64, error) {
	seen := map[uint64]bool{}
	var total int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p != dir && errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if info.Size() == 0 {
			return nil
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
		}
		total += info.Size()
		return nil
	})
	return total, err
}

//go:build unix

package filesystem

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"syscall"
)

// openFile is os.OpenFile for regular files and directories, cheaper: for
// them os.OpenFile follows its open with four fcntl calls around an epoll_ctl
// that fails (disk files cannot be polled); openFile needs the open and the
// one fcntl of os.NewFile. The file behaves the same: reads and writes are
// plain blocking system calls either way.
func openFile(name string, flag int, perm fs.FileMode) (*os.File, error) {
	for {
		fd, err := syscall.Open(name, flag|syscall.O_CLOEXEC, uint32(perm.Perm()))
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		return os.NewFile(uintptr(fd), name), nil
	}
}

// readSmallFile reads the whole file name with an open, reads until one
// returns nothing, and a close: no stat, and no *os.File to set up and tear
// down. A directory fails with an error wrapping syscall.EISDIR.
func readSmallFile(name string, size int) ([]byte, error) {
	var fd int
	var err error
	for {
		fd, err = syscall.Open(name, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	defer syscall.Close(fd)
	buf := make([]byte, 0, size)
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, cap(buf))
		}
		n, err := syscall.Read(fd, buf[len(buf):cap(buf)])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: name, Err: err}
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}

// openDir opens directory name for reading its entries or syncing it. A
// file there fails with ENOTDIR at once (and a FIFO cannot block the open).
func openDir(name string) (*os.File, error) {
	return openFile(name, os.O_RDONLY|syscall.O_DIRECTORY, 0)
}

// rename is os.Rename without its Lstat of newname: renaming a file onto a
// directory fails with EISDIR all the same.
func rename(oldname, newname string) error {
	for {
		err := syscall.Rename(oldname, newname)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: err}
		}
		return nil
	}
}

// rmdir removes the empty directory name, and nothing else: a file, a
// symbolic link or a directory that is not empty makes it fail.
func rmdir(name string) error {
	if err := syscall.Rmdir(name); err != nil {
		return &fs.PathError{Op: "rmdir", Path: name, Err: err}
	}
	return nil
}

// FreeBytes implements storage.SpaceReporter: the free space of the
// filesystem holding the root, as this process may use it (root may use
// the blocks reserved for it).
func (d *Driver) FreeBytes(ctx context.Context) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(d.root, &st); err != nil {
		return 0, fmt.Errorf("filesystem: statfs %s: %w", d.root, err)
	}
	blocks := st.Bavail
	if os.Geteuid() == 0 {
		blocks = st.Bfree
	}
	return int64(blocks) * int64(st.Bsize), nil
}

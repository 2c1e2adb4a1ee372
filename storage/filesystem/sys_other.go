//go:build !unix

package filesystem

import (
	"io/fs"
	"os"
	"syscall"
)

// openFile opens name as os.OpenFile does.
func openFile(name string, flag int, perm fs.FileMode) (*os.File, error) {
	return os.OpenFile(name, flag, perm)
}

// readSmallFile reads the whole file name; a directory fails with an
// error wrapping syscall.EISDIR.
func readSmallFile(name string, size int) ([]byte, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return nil, &fs.PathError{Op: "read", Path: name, Err: syscall.EISDIR}
	}
	return os.ReadFile(name)
}

// openDir opens directory name for reading its entries or syncing it.
func openDir(name string) (*os.File, error) {
	return os.Open(name)
}

// rename renames oldname to newname as os.Rename does.
func rename(oldname, newname string) error {
	return os.Rename(oldname, newname)
}

// rmdir removes the empty directory name, and nothing else: a file, a
// symbolic link or a directory that is not empty makes it fail.
func rmdir(name string) error {
	fi, err := os.Lstat(name)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return &fs.PathError{Op: "rmdir", Path: name, Err: fs.ErrInvalid}
	}
	return os.Remove(name)
}

//go:build linux

package filesystem

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing the dirty pages of f in
// [off, off+n) to disk, without waiting for them (sync_file_range with
// SYNC_FILE_RANGE_WRITE alone), so that the fsync ending the writer finds
// them written or under way. It is only a hint, and errors are ignored: a
// failed write of those pages is still reported by that fsync, which sees
// every write error since the file was opened.
func startWriteback(f *os.File, off, n int64) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE)
	})
}

// syncData makes f's data durable, and its metadata as far as reading the
// data back needs it (fdatasync).
func syncData(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			if serr = unix.Fdatasync(int(fd)); serr != unix.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	if serr != nil {
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: serr}
	}
	return nil
}

// syncFilesystem makes durable everything written to the file system that
// holds directory name (syncfs).
func syncFilesystem(name string) error {
	f, err := openDir(name)
	if err != nil {
		return err
	}
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Syncfs(int(fd)) }); err != nil {
		return err
	}
	if serr != nil {
		return &os.PathError{Op: "syncfs", Path: name, Err: serr}
	}
	return nil
}

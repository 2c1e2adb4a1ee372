package filesystem

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
	"time"

	"github.com/berth-registry/berth/storage"
)

// statFile describes the file or directory name (storage path p), following
// links, as os.Stat and fileInfo would, without building an fs.FileInfo:
// the existence checks of every manifest GET come here.
func statFile(p, name string) (storage.FileInfo, error) {
	var st syscall.Stat_t
	if err := statRetry(name, &st); err != nil {
		return storage.FileInfo{}, err
	}
	info := storage.FileInfo{Path: p, ModTime: time.Unix(st.Mtim.Unix()), IsDir: st.Mode&syscall.S_IFMT == syscall.S_IFDIR}
	if !info.IsDir {
		info.Size = st.Size
	}
	return info, nil
}

var _ storage.Versioner = (*Driver)(nil)

// Version returns the version of the file at path: its device, inode,
// size, and modification and change times (nanoseconds), from one stat.
// Every writer of this driver replaces a file by renaming a new one over it
// (a new inode, new times), and a writer that rewrites a file in place
// changes its times.
func (d *Driver) Version(ctx context.Context, p string) (storage.Version, error) {
	if err := ctx.Err(); err != nil {
		return storage.Version{}, err
	}
	name, err := d.name(p)
	if err != nil {
		return storage.Version{}, err
	}
	var st syscall.Stat_t
	if err := statRetry(name, &st); err != nil {
		return storage.Version{}, pathError(p, err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return storage.Version{}, notFound(p)
	}
	return version(&st), nil
}

// ReadVersion reads the whole file at path and returns it with the version
// of the file it read (an open, an fstat, reads and a close).
func (d *Driver) ReadVersion(ctx context.Context, p string) ([]byte, storage.Version, error) {
	if err := ctx.Err(); err != nil {
		return nil, storage.Version{}, err
	}
	name, err := d.name(p)
	if err != nil {
		return nil, storage.Version{}, err
	}
	f, err := openFile(name, os.O_RDONLY, 0)
	if err != nil {
		return nil, storage.Version{}, pathError(p, err)
	}
	defer f.Close()
	var st syscall.Stat_t
	rc, err := f.SyscallConn()
	if err == nil {
		cerr := rc.Control(func(fd uintptr) { err = syscall.Fstat(int(fd), &st) })
		if err == nil {
			err = cerr
		}
	}
	if err != nil {
		return nil, storage.Version{}, fmt.Errorf("filesystem: %s: %w", p, err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil, storage.Version{}, notFound(p)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, storage.Version{}, pathError(p, err)
	}
	return b, version(&st), nil
}

func version(st *syscall.Stat_t) storage.Version {
	return storage.Version{int64(st.Dev), int64(st.Ino), st.Size, st.Mtim.Nano(), st.Ctim.Nano()}
}

// statRetry is syscall.Stat, again after EINTR, with a *fs.PathError.
func statRetry(name string, st *syscall.Stat_t) error {
	for {
		err := syscall.Stat(name, st)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return &fs.PathError{Op: "stat", Path: name, Err: err}
		}
		return nil
	}
}

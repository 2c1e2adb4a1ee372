package containerfs

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// Errors of this package; returned errors wrap them (test with errors.Is).
var (
	// ErrInvalid: a path or a tar entry that cannot be copied as asked
	// (a directory onto a file, a missing destination directory, an
	// entry climbing out of the destination, a device onto the host).
	ErrInvalid = errors.New("invalid copy")
	// ErrUnsupported: the kernel has no openat2 (Linux before 5.6), so
	// lookups cannot be confined.
	ErrUnsupported = errors.New("confined lookups unsupported (no openat2)")
)

// Root is a directory opened as the root of confined lookups: every path
// given to its methods is resolved as if the process were chrooted there.
type Root struct {
	fd   int
	name string
}

// OpenRoot opens dir (following symlinks: the caller names it) as a Root.
func OpenRoot(dir string) (*Root, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	return &Root{fd: fd, name: dir}, nil
}

// Close closes the root.
func (r *Root) Close() error { return unix.Close(r.fd) }

// resolveFlags confine a lookup to the root: absolute symlinks and ".."
// resolve inside it, and /proc's magic links (which jump anywhere) are
// refused.
const resolveFlags = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS

// open opens p (relative to the root, "/" or "" being the root itself)
// with openat2 confined to the root.
func (r *Root) open(p string, flags int, mode uint32) (int, error) {
	p = strings.TrimLeft(path.Clean("/"+p), "/")
	if p == "" {
		p = "."
	}
	fd, err := unix.Openat2(r.fd, p, &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Mode: uint64(mode), Resolve: resolveFlags})
	if errors.Is(err, unix.ENOSYS) {
		return -1, ErrUnsupported
	}
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	return fd, nil
}

// split returns p's parent directory (opened, O_PATH) and last name; the
// name is "" for the root itself.
func (r *Root) split(p string) (dirfd int, name string, err error) {
	p = path.Clean("/" + p)
	if p == "/" {
		fd, err := r.open("/", unix.O_PATH|unix.O_DIRECTORY, 0)
		return fd, "", err
	}
	fd, err := r.open(path.Dir(p), unix.O_PATH|unix.O_DIRECTORY, 0)
	return fd, path.Base(p), err
}

// Info is what Stat tells of a path.
type Info struct {
	Mode fs.FileMode
}

// IsDir reports whether the path is a directory.
func (i Info) IsDir() bool { return i.Mode.IsDir() }

// Lstat describes p without following a symlink at its end (symlinks
// on the way are followed, inside the root). A missing path wraps
// fs.ErrNotExist.
func (r *Root) Lstat(p string) (Info, error) {
	dirfd, name, err := r.split(p)
	if err != nil {
		return Info{}, err
	}
	defer unix.Close(dirfd)
	var st unix.Stat_t
	if name == "" {
		err = unix.Fstat(dirfd, &st)
	} else {
		err = unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	}
	if err != nil {
		return Info{}, &fs.PathError{Op: "lstat", Path: p, Err: err}
	}
	return Info{Mode: fileMode(st.Mode)}, nil
}

// Stat describes p, following a symlink at its end inside the root.
func (r *Root) Stat(p string) (Info, error) {
	fd, err := r.open(p, unix.O_PATH, 0)
	if err != nil {
		return Info{}, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return Info{}, &fs.PathError{Op: "stat", Path: p, Err: err}
	}
	return Info{Mode: fileMode(st.Mode)}, nil
}

// fileMode converts a stat mode to an fs.FileMode.
func fileMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		mode |= fs.ModeDir
	case unix.S_IFLNK:
		mode |= fs.ModeSymlink
	case unix.S_IFIFO:
		mode |= fs.ModeNamedPipe
	case unix.S_IFSOCK:
		mode |= fs.ModeSocket
	case unix.S_IFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		mode |= fs.ModeDevice
	}
	if m&unix.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

// Plan decides where a copy of src (a directory when srcIsDir) lands at
// dest, by docker cp's rules, given whether dest exists and is a
// directory: it returns the directory to unpack into and the name the
// source's top entry takes there ("" to unpack only what a directory
// holds, for "SRC/." onto an existing directory).
func Plan(src string, srcIsDir bool, dest string, destExists, destIsDir bool) (dir, name string, err error) {
	contents := srcIsDir && (src == "." || strings.HasSuffix(src, "/."))
	base := path.Base(path.Clean("/" + src))
	if base == "/" {
		base, contents = "", true // the whole root: what it holds
	}
	switch {
	case !srcIsDir && strings.HasSuffix(src, "/"):
		return "", "", fmt.Errorf("%w: %s is not a directory", ErrInvalid, src)
	case destExists && destIsDir:
		if contents {
			return dest, "", nil
		}
		return dest, base, nil
	case destExists && srcIsDir:
		return "", "", fmt.Errorf("%w: cannot copy a directory to a file (%s)", ErrInvalid, dest)
	case !destExists && (strings.HasSuffix(dest, "/") || strings.HasSuffix(dest, "/.")):
		return "", "", fmt.Errorf("%w: the destination directory %s must exist", ErrInvalid, dest)
	}
	clean := path.Clean(dest)
	return path.Dir(clean), path.Base(clean), nil
}

package layers

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// resolver opens directories beneath a root directory descriptor without
// ever following a symlink and without leaving the root. Every filesystem
// change the store makes inside a layer tree or a Flatten target goes
// through a directory descriptor it returns, with *at system calls on a
// single final name.
type resolver struct {
	// walk makes it skip openat2 and resolve component by component with
	// O_NOFOLLOW, as it does by itself on kernels without openat2 (before
	// 5.6). Tests set it to cover that path.
	walk bool
}

// openat2Flags confine a lookup: no symlink anywhere in the path (the final
// component included), no magic /proc links, no crossing a mount point, and
// no step above the starting directory.
const openat2Resolve = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS |
	unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

const dirOpenFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC

// openDir opens the directory rel beneath rootfd and returns its
// descriptor, which the caller closes. rel is clean, relative and free of
// ".." (cleanName guarantees it); "." is the root itself. With create,
// missing directories are made (mode 0755, owned by the caller). A symlink
// in the path fails with ELOOP and a non-directory with ENOTDIR, both
// wrapped in ErrUnsafeEntry by the callers that handle tar entries.
func (r resolver) openDir(rootfd int, rel string, create bool) (int, error) {
	if rel == "." || rel == "" {
		return unix.Openat(rootfd, ".", dirOpenFlags, 0)
	}
	if !r.walk {
		fd, err := openat2Dir(rootfd, rel)
		switch {
		case err == nil:
			return fd, nil
		case errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM):
			// No openat2 here (or a seccomp filter refusing it): walk.
		case errors.Is(err, unix.ENOENT) && create:
			// Make the missing components below.
		default:
			return -1, err
		}
	}
	return walkDir(rootfd, rel, create)
}

// openat2Dir resolves rel in one openat2 call, retrying the EAGAIN the
// kernel returns when a concurrent rename could have raced the lookup.
func openat2Dir(rootfd int, rel string) (int, error) {
	how := &unix.OpenHow{Flags: uint64(dirOpenFlags), Resolve: openat2Resolve}
	for range 16 {
		fd, err := unix.Openat2(rootfd, rel, how)
		if err != unix.EAGAIN {
			return fd, err
		}
	}
	return -1, unix.EAGAIN
}

// walkDir resolves rel one component at a time: each step is an openat
// with O_NOFOLLOW|O_DIRECTORY from the previous descriptor, so a symlink
// fails with ELOOP and a file with ENOTDIR. Components are never "." or
// ".." (rel is clean and confined).
func walkDir(rootfd int, rel string, create bool) (int, error) {
	fd, err := unix.Openat(rootfd, ".", dirOpenFlags, 0)
	if err != nil {
		return -1, err
	}
	for comp := range strings.SplitSeq(rel, "/") {
		next, err := unix.Openat(fd, comp, dirOpenFlags, 0)
		if err == unix.ENOENT && create {
			made := unix.Mkdirat(fd, comp, 0o755)
			if made == nil || made == unix.EEXIST {
				next, err = unix.Openat(fd, comp, dirOpenFlags, 0)
			}
			if made == nil && err == nil {
				if err = unix.Fchmod(next, 0o755); err != nil { // whatever the umask
					unix.Close(next)
				}
			}
		}
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd = next
	}
	return fd, nil
}

// removeAt removes name in the directory dirfd and, if it is a directory,
// everything below it, never following a symlink. A missing name is not an
// error.
func removeAt(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR && err != unix.EPERM {
		return err
	}
	fd, err := unix.Openat(dirfd, name, dirOpenFlags, 0)
	if err != nil {
		return err
	}
	err = clearDir(fd)
	unix.Close(fd)
	if err != nil {
		return err
	}
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && err != unix.ENOENT {
		return err
	}
	return nil
}

// clearDir removes everything inside the directory fd, which stays.
func clearDir(fd int) error {
	names, err := readDirNames(fd)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := removeAt(fd, n); err != nil {
			return err
		}
	}
	return nil
}

// readDirNames lists the directory fd (on a duplicate descriptor, so fd
// stays open and its offset untouched).
func readDirNames(fd int) ([]string, error) {
	dup, err := unix.Openat(fd, ".", dirOpenFlags, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), ".")
	defer f.Close()
	return f.Readdirnames(-1)
}

// lstatAt stats name in dirfd without following a symlink; ok is false
// when nothing is there.
func lstatAt(dirfd int, name string) (st unix.Stat_t, ok bool, err error) {
	err = unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if err == unix.ENOENT {
		return st, false, nil
	}
	if err != nil {
		return st, false, err
	}
	return st, true, nil
}

// isWhiteout reports whether st is an overlayfs whiteout: a character
// device numbered 0/0.
func isWhiteout(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

// pathError gives a resolution or *at failure the path it concerned.
func pathError(op, path string, err error) error {
	return fmt.Errorf("layers: %s %s: %w", op, path, err)
}

package containerfs

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// ExtractOptions say how Extract writes what it unpacks.
type ExtractOptions struct {
	// Owner, when not nil, owns everything unpacked ([uid, gid]); else
	// the entries' own owners are kept.
	Owner *[2]int
	// NoDevices refuses device entries (onto the host), and
	// NoSetuid clears the setuid and setgid bits.
	NoDevices, NoSetuid bool
}

// Extract unpacks the tar rd into the directory dir inside r (which must
// exist). Every entry, and every link an entry makes, is resolved inside
// r: an entry naming an absolute path or climbing with ".." is refused,
// and a symlink on the way (one the container had, or one the tar made)
// resolves inside r, so nothing is written outside it. An existing file
// or symlink at an entry's name is replaced; a directory is kept.
func Extract(r *Root, dir string, rd io.Reader, o ExtractOptions) error {
	if info, err := r.Stat(dir); err != nil {
		return err
	} else if !info.IsDir() {
		return fmt.Errorf("%w: %s is not a directory", ErrInvalid, dir)
	}
	tr := tar.NewReader(rd)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading the tar: %w", err)
		}
		if err := extractEntry(r, dir, tr, hdr, o); err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
	}
}

// entryPath checks a tar entry's name: relative, without "..".
func entryPath(name string) (string, error) {
	n := strings.TrimPrefix(name, "./")
	if n == "" || n == "." || n == "./" {
		return "", nil
	}
	if path.IsAbs(n) {
		return "", fmt.Errorf("%w: an absolute name", ErrInvalid)
	}
	for _, part := range strings.Split(strings.TrimSuffix(n, "/"), "/") {
		if part == ".." {
			return "", fmt.Errorf("%w: a name that climbs out with ..", ErrInvalid)
		}
	}
	return path.Clean(n), nil
}

func extractEntry(r *Root, dir string, tr *tar.Reader, hdr *tar.Header, o ExtractOptions) error {
	rel, err := entryPath(hdr.Name)
	if err != nil {
		return err
	}
	if rel == "" {
		return nil // the destination itself
	}
	full := path.Join("/", dir, rel)
	parent, err := r.mkdirAll(path.Dir(full))
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	base := path.Base(full)
	uid, gid := hdr.Uid, hdr.Gid
	if o.Owner != nil {
		uid, gid = o.Owner[0], o.Owner[1]
	}
	mode := uint32(hdr.Mode & 0o7777)
	if o.NoSetuid {
		mode &^= unix.S_ISUID | unix.S_ISGID
	}
	var existing unix.Stat_t
	exists := unix.Fstatat(parent, base, &existing, unix.AT_SYMLINK_NOFOLLOW) == nil
	isDir := exists && existing.Mode&unix.S_IFMT == unix.S_IFDIR
	if exists && hdr.Typeflag != tar.TypeDir {
		if isDir {
			return fmt.Errorf("%w: cannot overwrite the directory %s with a non-directory", ErrInvalid, full)
		}
		if err := unix.Unlinkat(parent, base, 0); err != nil {
			return err
		}
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if exists && !isDir {
			if err := unix.Unlinkat(parent, base, 0); err != nil {
				return err
			}
		}
		if !isDir {
			if err := unix.Mkdirat(parent, base, 0o700); err != nil {
				return err
			}
		}
	case tar.TypeReg, tar.TypeRegA:
		fd, err := unix.Openat(parent, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(fd), full)
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	case tar.TypeSymlink:
		if err := unix.Symlinkat(hdr.Linkname, parent, base); err != nil {
			return err
		}
	case tar.TypeLink:
		target, err := entryPath(hdr.Linkname)
		if err != nil || target == "" {
			return fmt.Errorf("%w: hard link to %q", ErrInvalid, hdr.Linkname)
		}
		tfd, err := r.open(path.Join("/", dir, target), unix.O_PATH|unix.O_NOFOLLOW, 0)
		if err != nil {
			return err
		}
		err = unix.Linkat(tfd, "", parent, base, unix.AT_EMPTY_PATH)
		unix.Close(tfd)
		return err // a link shares its target's owner, mode and times
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		kind := uint32(unix.S_IFIFO)
		switch hdr.Typeflag {
		case tar.TypeChar:
			kind = unix.S_IFCHR
		case tar.TypeBlock:
			kind = unix.S_IFBLK
		}
		if o.NoDevices && kind != unix.S_IFIFO {
			return fmt.Errorf("%w: a device node", ErrInvalid)
		}
		if err := unix.Mknodat(parent, base, kind|0o600, int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))); err != nil {
			return err
		}
	default:
		return nil // PAX and GNU metadata entries are read by tar.Reader
	}
	ts := []unix.Timespec{unix.NsecToTimespec(hdr.ModTime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
	if hdr.Typeflag == tar.TypeSymlink {
		if err := unix.Fchownat(parent, base, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		return unix.UtimesNanoAt(parent, base, ts, unix.AT_SYMLINK_NOFOLLOW)
	}
	// Through a descriptor of what was made, never by name again: the
	// name may have been swapped for a symlink meanwhile.
	fd, err := unix.Openat(parent, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return fmt.Errorf("%w: %s was replaced by a symlink while it was written", ErrInvalid, full)
	}
	if err := unix.Fchownat(fd, "", uid, gid, unix.AT_EMPTY_PATH); err != nil {
		return err
	}
	self := fmt.Sprintf("/proc/self/fd/%d", fd)
	// After chown, which clears setuid bits.
	if err := unix.Fchmodat(unix.AT_FDCWD, self, mode, 0); err != nil {
		return err
	}
	return unix.UtimesNanoAt(unix.AT_FDCWD, self, ts, 0)
}

// mkdirAll opens the directory p inside r, making the missing ones on the
// way (0755), and returns it (O_PATH).
func (r *Root) mkdirAll(p string) (int, error) {
	fd, err := r.open(p, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err == nil || !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	parent, err := r.mkdirAll(path.Dir(p))
	if err != nil {
		return -1, err
	}
	err = unix.Mkdirat(parent, path.Base(p), 0o755)
	unix.Close(parent)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, err
	}
	return r.open(p, unix.O_PATH|unix.O_DIRECTORY, 0)
}

package layers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// Flatten writes the layers, base first, onto the plain directory target
// (created 0755 if missing): the fallback where overlayfs cannot be
// mounted. Each layer is copied over what the ones below it left, with the
// merge rules of overlayfs: a whiteout deletes the path below, an opaque
// directory first empties the directory below, a directory replaces a
// non-directory, anything else replaces what was there. Files are copied
// (copy_file_range, so reflinked where the filesystem can), never linked
// to the store, so the container cannot change a stored layer; files
// hardlinked within one layer stay hardlinked. Owners, modes (setuid
// included), times and the xattrs Unpack keeps are copied.
//
// target should be empty, or a rootfs Flatten made. Paths in target are
// resolved like tar entries in Unpack: a symlink in target is replaced or
// refused, never followed.
func (s *Store) Flatten(ctx context.Context, layers []Layer, target string) error {
	if _, err := os.Lstat(target); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(target, 0o755); err != nil {
			return fmt.Errorf("layers: flatten target: %w", err)
		}
		if err := os.Chmod(target, 0o755); err != nil { // whatever the umask
			return fmt.Errorf("layers: flatten target: %w", err)
		}
	}
	tfd, err := unix.Open(target, dirOpenFlags, 0)
	if err != nil {
		return pathError("opening", target, err)
	}
	defer unix.Close(tfd)
	for _, l := range layers {
		stored, err := s.Get(l.DiffID)
		if err != nil {
			return err
		}
		a := &applier{res: s.res, dst: tfd, src: stored.Dir, links: make(map[uint64]string)}
		if err := a.apply(ctx); err != nil {
			return fmt.Errorf("layers: flattening %s onto %s: %w", l.DiffID, target, err)
		}
	}
	return nil
}

// applier copies one stored layer tree onto a flattened rootfs.
type applier struct {
	res   resolver
	dst   int    // the target rootfs
	src   string // the stored layer's tree (trusted: the store wrote it)
	links map[uint64]string
	dirs  []dirTime
}

func (a *applier) apply(ctx context.Context) error {
	err := filepath.WalkDir(a.src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no stat", p)
		}
		rel, err := filepath.Rel(a.src, p)
		if err != nil {
			return err
		}
		if rel == "." {
			if isOpaque(p) {
				return clearDir(a.dst)
			}
			return nil
		}
		if err := a.entry(p, rel, st); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return setDirTimes(a.res, a.dst, a.dirs)
}

// entry applies one path of the layer.
func (a *applier) entry(src, rel string, st *syscall.Stat_t) error {
	dir, base := filepath.Dir(rel), filepath.Base(rel)
	parent, err := a.res.openDir(a.dst, dir, true)
	if err != nil {
		return resolveError(dir, err)
	}
	defer unix.Close(parent)
	ts := []unix.Timespec{unix.Timespec(st.Atim), unix.Timespec(st.Mtim)}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		if st.Rdev == 0 {
			return removeAt(parent, base) // a whiteout
		}
		return nil
	case unix.S_IFDIR:
		cur, existed, err := makeRoom(parent, base, true)
		if err != nil {
			return err
		}
		if !existed || cur.Mode&unix.S_IFMT != unix.S_IFDIR {
			if err := unix.Mkdirat(parent, base, 0o700); err != nil {
				return fmt.Errorf("mkdir: %w", err)
			}
		}
		fd, err := unix.Openat(parent, base, dirOpenFlags, 0)
		if err != nil {
			return fmt.Errorf("open directory: %w", err)
		}
		defer unix.Close(fd)
		if existed && isOpaque(src) {
			if err := clearDir(fd); err != nil {
				return fmt.Errorf("opaque directory: %w", err)
			}
		}
		if err := copyAttrs(src, fd, st); err != nil {
			return err
		}
		a.dirs = append(a.dirs, dirTime{name: rel, ts: ts})
		return nil
	case unix.S_IFREG:
		if _, _, err := makeRoom(parent, base, false); err != nil {
			return err
		}
		if st.Nlink > 1 && a.linkEarlier(st.Ino, parent, base) {
			return nil
		}
		if err := copyFile(src, parent, base, st); err != nil {
			return err
		}
		if st.Nlink > 1 {
			a.links[st.Ino] = rel
		}
		return setTimes(parent, base, ts)
	case unix.S_IFLNK:
		if _, _, err := makeRoom(parent, base, false); err != nil {
			return err
		}
		link, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := unix.Symlinkat(link, parent, base); err != nil {
			return fmt.Errorf("symlink: %w", err)
		}
		if err := unix.Fchownat(parent, base, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
		return setTimes(parent, base, ts)
	case unix.S_IFIFO:
		if _, _, err := makeRoom(parent, base, false); err != nil {
			return err
		}
		if err := unix.Mknodat(parent, base, unix.S_IFIFO|0o600, 0); err != nil {
			return fmt.Errorf("mkfifo: %w", err)
		}
		if err := unix.Fchownat(parent, base, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
		if err := unix.Fchmodat(parent, base, st.Mode&0o7777, 0); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
		return setTimes(parent, base, ts)
	}
	return nil // the store holds no other kind
}

// linkEarlier hardlinks base to the copy of an inode this layer already
// copied, reporting whether it did.
func (a *applier) linkEarlier(ino uint64, parent int, base string) bool {
	first, ok := a.links[ino]
	if !ok {
		return false
	}
	fparent, err := a.res.openDir(a.dst, filepath.Dir(first), false)
	if err != nil {
		return false
	}
	defer unix.Close(fparent)
	return unix.Linkat(fparent, filepath.Base(first), parent, base, 0) == nil
}

// copyFile copies the stored file src to a new file base in parent.
func copyFile(src string, parent int, base string, st *syscall.Stat_t) error {
	in, err := os.OpenFile(src, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	fd, err := unix.Openat(parent, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	out := os.NewFile(uintptr(fd), base)
	_, err = io.Copy(out, in)
	if err == nil {
		err = copyAttrs(src, fd, st)
	}
	if cerr := out.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return err
}

// copyAttrs gives fd the owner, mode and allowed xattrs of the stored
// path src (chown first: it clears setuid bits and capabilities).
func copyAttrs(src string, fd int, st *syscall.Stat_t) error {
	if err := unix.Fchown(fd, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	if err := unix.Fchmod(fd, st.Mode&0o7777); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	names, err := listXattrs(src)
	if err != nil {
		return err
	}
	for _, name := range names {
		if !allowedXattr(name) {
			continue
		}
		val, err := getXattr(src, name)
		if err != nil {
			return err
		}
		if err := unix.Fsetxattr(fd, name, val, 0); err != nil {
			return fmt.Errorf("setxattr %s: %w", name, err)
		}
	}
	return nil
}

// isOpaque reports whether the stored directory p is an opaque one.
func isOpaque(p string) bool {
	v, err := getXattr(p, opaqueXattr)
	return err == nil && string(v) == "y"
}

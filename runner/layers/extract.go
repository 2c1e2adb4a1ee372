package layers

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Whiteout names of the OCI image-spec layer format.
const (
	whiteoutPrefix = ".wh."
	// whiteoutMeta prefixes names reserved for whiteout bookkeeping (aufs
	// writes .wh..wh.plnk and .wh..wh.aufs); only opaqueMarker means
	// anything to an OCI layer.
	whiteoutMeta = ".wh..wh."
	opaqueMarker = ".wh..wh..opq"
	// opaqueXattr marks an overlayfs directory opaque: lower layers'
	// entries below it are hidden.
	opaqueXattr = "trusted.overlay.opaque"
)

// extractor writes one layer's tar stream into the directory root, a
// fresh directory private to this unpack. See the package doc for the
// rules it enforces.
type extractor struct {
	root    int // descriptor of the layer tree being filled
	res     resolver
	limits  Limits
	buf     []byte
	entries int
	skipped int
	written int64 // regular-file bytes written, against limits.MaxBytes
	dirs    []dirTime
}

// dirTime holds a directory's times, applied once the whole layer is
// written (creating children changes a directory's mtime).
type dirTime struct {
	name string
	ts   []unix.Timespec
}

// extract reads every entry of tr and writes it below x.root.
func (x *extractor) extract(ctx context.Context, tr *tar.Reader) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("layers: reading tar: %w", err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		x.entries++
		if x.entries > x.limits.MaxEntries {
			return fmt.Errorf("%w: more than %d entries", ErrTooLarge, x.limits.MaxEntries)
		}
		if err := x.entry(hdr, tr); err != nil {
			return fmt.Errorf("layers: entry %q: %w", hdr.Name, err)
		}
	}
	return x.finishDirs()
}

// entry writes one tar entry.
func (x *extractor) entry(hdr *tar.Header, r io.Reader) error {
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if name == "." {
		if hdr.Typeflag == tar.TypeDir {
			return nil // "./": the root, which the store owns.
		}
		return fmt.Errorf("%w: a non-directory entry names the layer root", ErrUnsafeEntry)
	}
	dir, base := path.Dir(name), path.Base(name)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return x.whiteout(dir, base)
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeGNUSparse:
		if hdr.Size > x.limits.MaxBytes-x.written {
			return fmt.Errorf("%w: files hold more than %d bytes", ErrTooLarge, x.limits.MaxBytes)
		}
		x.written += hdr.Size
	case tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeFifo:
	default:
		// Device nodes and unknown types: a container gets its devices
		// from the runtime, never from an image. (A fifo is no device.)
		x.skipped++
		return nil
	}
	if hdr.Uid < 0 || hdr.Gid < 0 || int64(hdr.Uid) > 1<<32-2 || int64(hdr.Gid) > 1<<32-2 {
		return fmt.Errorf("%w: owner %d:%d out of range", ErrUnsafeEntry, hdr.Uid, hdr.Gid)
	}
	parent, err := x.res.openDir(x.root, dir, true)
	if err != nil {
		return resolveError(dir, err)
	}
	defer unix.Close(parent)
	switch hdr.Typeflag {
	case tar.TypeDir:
		return x.mkdir(parent, name, base, hdr)
	case tar.TypeSymlink:
		return x.symlink(parent, base, hdr)
	case tar.TypeLink:
		return x.hardlink(parent, name, base, hdr)
	case tar.TypeFifo:
		return x.fifo(parent, base, hdr)
	default:
		return x.file(parent, base, hdr, r)
	}
}

// cleanName turns a tar entry name into a clean path relative to the
// layer root: an absolute name is taken relative to the root (confined),
// a relative name whose ".." climbs above the root is refused, and "." is
// the root itself.
func cleanName(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("%w: empty name", ErrUnsafeEntry)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: NUL in name", ErrUnsafeEntry)
	}
	if strings.HasPrefix(name, "/") {
		c := path.Clean(name)[1:]
		if c == "" {
			return ".", nil
		}
		return c, nil
	}
	c := path.Clean(name)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("%w: name climbs above the layer root", ErrUnsafeEntry)
	}
	return c, nil
}

// resolveError explains a failure to resolve a directory of the layer:
// a symlink, a non-directory or a mount point in the way means the entry
// is refused.
func resolveError(dir string, err error) error {
	switch {
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("%w: path %q goes through a symlink or a non-directory", ErrUnsafeEntry, dir)
	case errors.Is(err, unix.EXDEV):
		return fmt.Errorf("%w: path %q leaves the layer", ErrUnsafeEntry, dir)
	}
	return pathError("resolving", dir, err)
}

// makeRoom clears the way for a new entry named base in parent: tar
// semantics say a later entry replaces an earlier one, so whatever is there
// is removed (a directory with everything below it, a symlink without
// following it), except a directory when keepDir. It returns what was
// there.
func makeRoom(parent int, base string, keepDir bool) (st unix.Stat_t, existed bool, err error) {
	st, existed, err = lstatAt(parent, base)
	if err != nil || !existed {
		return st, existed, err
	}
	if keepDir && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return st, true, nil
	}
	return st, true, removeAt(parent, base)
}

// mkdir creates (or, if an earlier entry made it, updates) a directory.
func (x *extractor) mkdir(parent int, name, base string, hdr *tar.Header) error {
	st, existed, err := makeRoom(parent, base, true)
	if err != nil {
		return err
	}
	if !existed || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if err := unix.Mkdirat(parent, base, 0o700); err != nil {
			return fmt.Errorf("mkdir: %w", err)
		}
	}
	fd, err := unix.Openat(parent, base, dirOpenFlags, 0)
	if err != nil {
		return fmt.Errorf("open directory: %w", err)
	}
	defer unix.Close(fd)
	if err := setAttrs(fd, hdr); err != nil {
		return err
	}
	if existed && isWhiteout(&st) {
		// The layer whited out this name and then made it a directory:
		// the new directory replaces the lower one, it does not merge.
		if err := setOpaque(fd); err != nil {
			return err
		}
	}
	x.dirs = append(x.dirs, dirTime{name: name, ts: times(hdr)})
	return nil
}

// file writes a regular file. It is always a new inode (O_EXCL after
// makeRoom), so no earlier entry, hardlink or symlink can redirect the
// write.
func (x *extractor) file(parent int, base string, hdr *tar.Header, r io.Reader) error {
	if _, _, err := makeRoom(parent, base, false); err != nil {
		return err
	}
	fd, err := unix.Openat(parent, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	f := os.NewFile(uintptr(fd), base)
	_, err = io.CopyBuffer(writerOnly{f}, r, x.buf)
	if err == nil {
		err = setAttrs(fd, hdr)
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close: %w", cerr)
	}
	if err != nil {
		return err
	}
	return setTimes(parent, base, times(hdr))
}

// symlink creates a symlink with the entry's target as written: it is
// resolved inside the container later, never during extraction.
func (x *extractor) symlink(parent int, base string, hdr *tar.Header) error {
	if hdr.Linkname == "" {
		return fmt.Errorf("%w: symlink without a target", ErrUnsafeEntry)
	}
	if _, _, err := makeRoom(parent, base, false); err != nil {
		return err
	}
	if err := unix.Symlinkat(hdr.Linkname, parent, base); err != nil {
		return fmt.Errorf("symlink: %w", err)
	}
	if err := unix.Fchownat(parent, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	return setTimes(parent, base, times(hdr))
}

// fifo creates a named pipe. It is never opened (that would block): its
// owner, mode and times are set by name, without following symlinks, in a
// directory of the layer no one else writes.
func (x *extractor) fifo(parent int, base string, hdr *tar.Header) error {
	if _, _, err := makeRoom(parent, base, false); err != nil {
		return err
	}
	perm := uint32(hdr.Mode) & 0o7777
	if err := unix.Mknodat(parent, base, unix.S_IFIFO|0o600, 0); err != nil {
		return fmt.Errorf("mkfifo: %w", err)
	}
	if err := unix.Fchownat(parent, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	if err := unix.Fchmodat(parent, base, perm, 0); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	return setTimes(parent, base, times(hdr))
}

// hardlink links name to an earlier non-directory entry of this layer.
// The target name follows the same rules as entry names, is resolved
// without following symlinks, and must exist in the layer's own (fresh)
// directory: nothing outside it can be reached.
func (x *extractor) hardlink(parent int, name, base string, hdr *tar.Header) error {
	target, err := cleanName(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("hardlink target: %w", err)
	}
	if target == "." || target == name {
		return fmt.Errorf("%w: hardlink to %q", ErrUnsafeEntry, hdr.Linkname)
	}
	tdir, tbase := path.Dir(target), path.Base(target)
	tparent, err := x.res.openDir(x.root, tdir, false)
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("%w: hardlink target %q is not an earlier entry of this layer", ErrUnsafeEntry, hdr.Linkname)
	}
	if err != nil {
		return resolveError(tdir, err)
	}
	defer unix.Close(tparent)
	st, ok, err := lstatAt(tparent, tbase)
	if err != nil {
		return pathError("stat", target, err)
	}
	if !ok {
		return fmt.Errorf("%w: hardlink target %q is not an earlier entry of this layer", ErrUnsafeEntry, hdr.Linkname)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("%w: hardlink to directory %q", ErrUnsafeEntry, hdr.Linkname)
	}
	if _, _, err := makeRoom(parent, base, false); err != nil {
		return err
	}
	// Flags 0: a symlink target is linked itself, never followed.
	if err := unix.Linkat(tparent, tbase, parent, base, 0); err != nil {
		return fmt.Errorf("link: %w", err)
	}
	return nil
}

// whiteout turns an OCI whiteout entry into its overlayfs form: the opaque
// marker sets trusted.overlay.opaque=y on its directory, and .wh.NAME
// becomes a 0/0 character device NAME. Both resolve their directory like
// any entry, so a whiteout through a symlink is refused.
func (x *extractor) whiteout(dir, base string) error {
	if base == opaqueMarker {
		fd, err := x.res.openDir(x.root, dir, true)
		if err != nil {
			return resolveError(dir, err)
		}
		defer unix.Close(fd)
		return setOpaque(fd)
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		x.skipped++ // aufs bookkeeping, meaningless here
		return nil
	}
	target := strings.TrimPrefix(base, whiteoutPrefix)
	if target == "" || target == "." || target == ".." {
		return fmt.Errorf("%w: whiteout of %q", ErrUnsafeEntry, target)
	}
	parent, err := x.res.openDir(x.root, dir, true)
	if err != nil {
		return resolveError(dir, err)
	}
	defer unix.Close(parent)
	st, ok, err := lstatAt(parent, target)
	if err != nil {
		return pathError("stat", path.Join(dir, target), err)
	}
	if ok {
		// A whiteout hides lower layers only. An entry of this layer
		// already hides the lower one; a directory of this layer must
		// also stop merging with it.
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return nil
		}
		fd, err := unix.Openat(parent, target, dirOpenFlags, 0)
		if err != nil {
			return fmt.Errorf("open directory: %w", err)
		}
		defer unix.Close(fd)
		return setOpaque(fd)
	}
	if err := unix.Mknodat(parent, target, unix.S_IFCHR, 0); err != nil {
		return fmt.Errorf("mknod whiteout: %w", err)
	}
	return nil
}

// finishDirs sets directory times last.
func (x *extractor) finishDirs() error {
	return setDirTimes(x.res, x.root, x.dirs)
}

// setDirTimes sets the times of the directories dirs below root. A
// directory a later entry replaced (by a file, a symlink) is passed over.
func setDirTimes(res resolver, root int, dirs []dirTime) error {
	for _, d := range dirs {
		fd, err := res.openDir(root, d.name, false)
		if err != nil {
			continue
		}
		err = unix.UtimesNanoAt(fd, ".", d.ts, 0)
		unix.Close(fd)
		if err != nil {
			return pathError("setting times of", d.name, err)
		}
	}
	return nil
}

// setAttrs gives an open file or directory the entry's owner, mode and
// allowed xattrs, in that order: chown clears setuid bits and file
// capabilities, so they come after it.
func setAttrs(fd int, hdr *tar.Header) error {
	if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	if err := unix.Fchmod(fd, uint32(hdr.Mode)&0o7777); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok || !allowedXattr(name) {
			continue
		}
		if err := unix.Fsetxattr(fd, name, []byte(v), 0); err != nil {
			return fmt.Errorf("setxattr %s: %w", name, err)
		}
	}
	return nil
}

// allowedXattr says which extended attributes a layer may carry: user.*
// and file capabilities. trusted.* (overlayfs's own, among others) and
// security labels other than capabilities are dropped.
func allowedXattr(name string) bool {
	return strings.HasPrefix(name, "user.") || name == "security.capability"
}

// setOpaque marks the directory fd opaque for overlayfs.
func setOpaque(fd int) error {
	if err := unix.Fsetxattr(fd, opaqueXattr, []byte("y"), 0); err != nil {
		return fmt.Errorf("setting %s: %w", opaqueXattr, err)
	}
	return nil
}

// times returns the entry's access and modification times.
func times(hdr *tar.Header) []unix.Timespec {
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	return []unix.Timespec{timespec(atime), timespec(hdr.ModTime)}
}

func timespec(t time.Time) unix.Timespec {
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}

// setTimes sets the times of base in parent without following a symlink.
func setTimes(parent int, base string, ts []unix.Timespec) error {
	if err := unix.UtimesNanoAt(parent, base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("utimes: %w", err)
	}
	return nil
}

// writerOnly hides *os.File's ReadFrom so io.CopyBuffer uses the
// extractor's buffer.
type writerOnly struct{ io.Writer }

package layers

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Overlayfs's own extended attributes that WriteUpper reads. The user.*
// forms are those of an overlay mounted with userxattr (in a user
// namespace); berth mounts with the trusted.* forms.
const (
	userOpaqueXattr = "user.overlay.opaque"
	overlayPrefix   = "trusted.overlay."
	userOverlayPfx  = "user.overlay."
	redirectSuffix  = "redirect"
	metacopySuffix  = "metacopy"
	capabilityXattr = "security.capability"
)

// WriteOptions are WriteUpper's and WriteTree's options.
type WriteOptions struct {
	// Owner maps a file's owner as it is on disk to the one the tar
	// entry records: a user-namespaced container's writable layer holds
	// the host ids its ids map to. Nil keeps the owners as they are.
	Owner func(uid, gid int) (int, int)
	// Base, for WriteUpper, is a view of the layers below upper (their
	// overlay mounted read-only, or one layer's directory), "" for none.
	// With it the layer holds only what changed, as docker build's
	// differ writes it: an entry that is no directory and is the same
	// in Base (type, mode, owner, device, security.capability, size and
	// mtime; and target or content when both mtimes lack nanoseconds,
	// as unpacked ones do) is left out, such as a file overlayfs copied
	// up only to hardlink it (whose new link is then written as a file
	// of its own), and so is a whiteout of a name Base does not have.
	// Owners are compared as on disk.
	Base string
	// Clamp, when not zero, is the latest modification time an entry
	// records: a file changed after it is written with Clamp instead
	// (SOURCE_DATE_EPOCH, for reproducible layers).
	Clamp time.Time
}

// WriteUpper writes the overlayfs upper directory upper (a container's
// writable layer) to w as an OCI layer tar stream, and returns how many
// entries it wrote (0: the container changed nothing). The stream ends
// with the tar end-of-archive blocks; w is not closed.
//
// Whiteouts (0/0 character devices) become ".wh.NAME" entries and opaque
// directories (trusted.overlay.opaque=y, or user.overlay.opaque=y) get a
// ".wh..wh..opq" entry after their own. Everything else is written as
// WriteTree writes it. A directory renamed through overlayfs's redirect_dir
// feature or a file copied up metadata-only (metacopy) holds no content of
// its own: the upper directory then fails with ErrUnsupportedTree, since
// its layer would lose files.
func WriteUpper(ctx context.Context, w io.Writer, upper string, opts WriteOptions) (int, error) {
	return writeDir(ctx, w, upper, true, opts)
}

// WriteTree writes the directory tree root (a flattened rootfs, or an
// overlay mount of one) to w as a tar stream and returns how many entries
// it wrote; w is not closed. The root itself has no entry.
//
// Entries are written in a sorted walk (a directory, then its children by
// name), without the access and change times and with the modification
// time truncated to the second, so the same tree gives the same bytes.
// Names are relative ("etc/passwd", "etc/"). Owners, modes (setuid,
// setgid and sticky bits included), symlinks and the extended attributes a
// layer may carry (user.* and security.capability) are kept; a regular
// file with several links in the tree is written once and then as
// hardlink entries to that first name. Character and block devices and
// fifos are written as such (berth's own Unpack skips devices, as it skips
// them in pulled layers); sockets are left out, as docker's archive code
// does. Nothing is ever followed: directories and files are opened
// beneath their parent's descriptor with O_NOFOLLOW, so a tree that
// changes meanwhile cannot make it read outside root; a file that shrinks
// while it is read fails the write.
func WriteTree(ctx context.Context, w io.Writer, root string, opts WriteOptions) (int, error) {
	return writeDir(ctx, w, root, false, opts)
}

// treeWriter is the walker WriteUpper and WriteTree share.
type treeWriter struct {
	ctx   context.Context
	tw    *tar.Writer
	upper bool // an overlay upper directory: whiteouts and opaque dirs
	owner func(uid, gid int) (int, int)
	clamp time.Time            // see WriteOptions.Clamp
	links map[[2]uint64]string // (dev, ino) of a multiply linked file -> its first name
	diff  bool                 // WriteOptions.Base is set: unchanged entries are left out
	buf   []byte
	n     int
	// shape (AddUpper) makes the tree, as it is written, what extracting
	// the stream would make: see shape.go.
	shape   bool
	skipped int  // with shape: device entries written, which extraction skips
	odd     bool // with shape: the tree holds what extraction would read differently
}

func writeDir(ctx context.Context, w io.Writer, root string, upper bool, opts WriteOptions) (int, error) {
	t := newTreeWriter(ctx, w, upper, opts)
	return t.n, t.run(root, opts)
}

func newTreeWriter(ctx context.Context, w io.Writer, upper bool, opts WriteOptions) *treeWriter {
	return &treeWriter{ctx: ctx, tw: tar.NewWriter(w), upper: upper, owner: opts.Owner, clamp: opts.Clamp.UTC().Truncate(time.Second),
		links: map[[2]uint64]string{}, buf: make([]byte, 256<<10)}
}

// run writes the tree root and the end of the archive.
func (t *treeWriter) run(root string, opts WriteOptions) error {
	fd, err := unix.Open(root, dirOpenFlags, 0)
	if err != nil {
		return pathError("opening", root, err)
	}
	base := -1
	if t.upper && opts.Base != "" {
		t.diff = true
		if base, err = unix.Open(opts.Base, dirOpenFlags, 0); err != nil {
			unix.Close(fd)
			return pathError("opening", opts.Base, err)
		}
	}
	if err := t.walk(fd, base, ""); err != nil {
		return err
	}
	if err := t.tw.Close(); err != nil {
		return fmt.Errorf("layers: writing tar: %w", err)
	}
	return nil
}

// walk writes the children of the directory fd (named rel in the tar,
// "" for the root) and closes fd. base is the same directory in
// WriteOptions.Base (-1: none there, or no Base), also closed.
func (t *treeWriter) walk(fd, base int, rel string) error {
	dir := os.NewFile(uintptr(fd), rel)
	defer dir.Close()
	if base >= 0 {
		defer unix.Close(base)
	}
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return pathError("listing", t.display(rel), err)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := t.ctx.Err(); err != nil {
			return err
		}
		if err := t.entry(fd, base, rel, name); err != nil {
			return err
		}
	}
	return nil
}

// display names rel in messages.
func (t *treeWriter) display(rel string) string {
	if rel == "" {
		return "/"
	}
	return "/" + rel
}

// entry writes the child name of the directory fd (rel in the tar); base
// is the directory's counterpart in WriteOptions.Base, or -1.
func (t *treeWriter) entry(fd, base int, rel, name string) error {
	p := path.Join(rel, name)
	if t.shape && strings.HasPrefix(name, whiteoutPrefix) {
		t.odd = true // extraction would read it as a whiteout
	}
	var st unix.Stat_t
	if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil // removed meanwhile
		}
		return pathError("stat", t.display(p), err)
	}
	var below *unix.Stat_t
	if base >= 0 {
		var bst unix.Stat_t
		if unix.Fstatat(base, name, &bst, unix.AT_SYMLINK_NOFOLLOW) == nil {
			below = &bst
		}
	}
	if t.upper && isWhiteout(&st) {
		if t.diff && below == nil {
			return t.leaveOut(fd, name, p) // hides nothing
		}
		// A whiteout may share its inode with others (overlayfs reuses
		// one): never a hardlink entry.
		if err := t.write(&tar.Header{Typeflag: tar.TypeReg, Name: path.Join(rel, whiteoutPrefix+name),
			Mode: 0o644, ModTime: t.mtime(&st), Format: tar.FormatPAX}, nil, p); err != nil {
			return err
		}
		return t.shapeWhiteout(fd, name, p, &st)
	}
	if below != nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
		same, err := sameEntry(fd, base, name, &st, below)
		if err != nil {
			return pathError("comparing", t.display(p), err)
		}
		if same {
			return t.leaveOut(fd, name, p)
		}
	}
	hdr := t.header(&st, p)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		bdir := -1
		if below != nil && below.Mode&unix.S_IFMT == unix.S_IFDIR {
			bdir, _ = unix.Openat(base, name, dirOpenFlags|unix.O_NOFOLLOW, 0)
		}
		return t.dir(fd, bdir, name, p, hdr)
	case unix.S_IFREG:
		return t.file(fd, name, p, &st, hdr)
	case unix.S_IFLNK:
		target, err := readlinkAt(fd, name)
		if err != nil {
			return pathError("readlink", t.display(p), err)
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
		if err := t.write(hdr, nil, p); err != nil {
			return err
		}
		return t.shapeSpecial(fd, name, p, &st, hdr)
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
		if err := t.write(hdr, nil, p); err != nil {
			return err
		}
		if t.shape {
			t.skipped++ // extraction skips device nodes
			return t.leaveOut(fd, name, p)
		}
		return nil
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
		if err := t.write(hdr, nil, p); err != nil {
			return err
		}
		return t.shapeSpecial(fd, name, p, &st, hdr)
	}
	return t.leaveOut(fd, name, p) // a socket: left out, as docker does
}

// header fills the fields every entry type shares.
func (t *treeWriter) header(st *unix.Stat_t, p string) *tar.Header {
	uid, gid := int(st.Uid), int(st.Gid)
	if t.owner != nil {
		uid, gid = t.owner(uid, gid)
	}
	return &tar.Header{Name: p, Mode: int64(st.Mode & 0o7777), Uid: uid, Gid: gid,
		ModTime: t.mtime(st), Format: tar.FormatPAX}
}

// mtime is an entry's modification time, to the second, and at most
// t.clamp when that is set.
func (t *treeWriter) mtime(st *unix.Stat_t) time.Time {
	m := time.Unix(st.Mtim.Sec, 0).UTC()
	if !t.clamp.IsZero() && m.After(t.clamp) {
		return t.clamp
	}
	return m
}

// dir writes a directory entry (and its opaque marker) and walks it; base
// is its counterpart in WriteOptions.Base (-1: none), closed here.
func (t *treeWriter) dir(parent, base int, name, p string, hdr *tar.Header) error {
	fd, err := unix.Openat(parent, name, dirOpenFlags, 0)
	if err != nil {
		if base >= 0 {
			unix.Close(base)
		}
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return pathError("opening", t.display(p), err)
	}
	opaque, err := t.xattrs(fd, p, hdr, true)
	if err == nil && opaque && base >= 0 {
		// Nothing below an opaque directory shows: each entry is new.
		unix.Close(base)
		base = -1
	}
	if err != nil {
		if base >= 0 {
			unix.Close(base)
		}
		unix.Close(fd)
		return err
	}
	if opaque && t.shape {
		err = setOpaque(fd) // the form extraction gives (also for user.overlay.opaque)
	}
	if err != nil {
		if base >= 0 {
			unix.Close(base)
		}
		unix.Close(fd)
		return err
	}
	hdr.Typeflag, hdr.Name = tar.TypeDir, p+"/"
	if err := t.write(hdr, nil, p); err != nil {
		if base >= 0 {
			unix.Close(base)
		}
		unix.Close(fd)
		return err
	}
	if opaque {
		wh := &tar.Header{Typeflag: tar.TypeReg, Name: path.Join(p, opaqueMarker), Mode: 0o644,
			ModTime: hdr.ModTime, Format: tar.FormatPAX}
		if err := t.write(wh, nil, p); err != nil {
			if base >= 0 {
				unix.Close(base)
			}
			unix.Close(fd)
			return err
		}
	}
	if err := t.walk(fd, base, p); err != nil {
		return err
	}
	if t.shape {
		// Last, as extraction sets them: removing what was left out
		// changed the directory's times.
		return t.setTimes(parent, name, p, hdr)
	}
	return nil
}

// file writes a regular file, or a hardlink entry to the first name of its
// inode.
func (t *treeWriter) file(parent int, name, p string, st *unix.Stat_t, hdr *tar.Header) error {
	key := [2]uint64{uint64(st.Dev), st.Ino}
	if st.Nlink > 1 {
		if first, ok := t.links[key]; ok {
			hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
			return t.write(hdr, nil, p)
		}
	}
	// O_NONBLOCK: should the name have become a fifo since the stat,
	// opening it does not hang (and fstat below refuses it).
	fd, err := unix.Openat(parent, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return pathError("opening", t.display(p), err)
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	var now unix.Stat_t
	if err := unix.Fstat(fd, &now); err != nil {
		return pathError("stat", t.display(p), err)
	}
	if now.Mode&unix.S_IFMT != unix.S_IFREG || now.Ino != st.Ino || now.Dev != st.Dev {
		return fmt.Errorf("%w: %s changed while it was read", ErrUnsupportedTree, t.display(p))
	}
	if _, err := t.xattrs(fd, p, hdr, false); err != nil {
		return err
	}
	hdr.Typeflag, hdr.Size = tar.TypeReg, now.Size
	if err := t.write(hdr, f, p); err != nil {
		return err
	}
	if t.shape {
		if err := t.setTimes(parent, name, p, hdr); err != nil {
			return err
		}
	}
	if st.Nlink > 1 {
		t.links[key] = p
	}
	return nil
}

// write writes one entry, and the file's content from r.
func (t *treeWriter) write(hdr *tar.Header, r io.Reader, p string) error {
	if len(hdr.PAXRecords) == 0 {
		// Without records, let the writer pick the plainest format
		// the header fits (USTAR for short names).
		hdr.Format = tar.FormatUnknown
	}
	if err := t.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("layers: writing %s: %w", t.display(p), err)
	}
	t.n++
	if r == nil || hdr.Size == 0 {
		return nil
	}
	n, err := io.CopyBuffer(t.tw, io.LimitReader(r, hdr.Size), t.buf)
	if err != nil {
		return fmt.Errorf("layers: reading %s: %w", t.display(p), err)
	}
	if n != hdr.Size {
		return fmt.Errorf("%w: %s shrank while it was read (%d of %d bytes)", ErrUnsupportedTree, t.display(p), n, hdr.Size)
	}
	return nil
}

// xattrs adds the extended attributes of fd that a layer carries to hdr
// and, for a directory of an upper directory, reports whether it is
// opaque. Overlayfs metadata that means content lives elsewhere (a
// redirected directory, a metacopy file) fails with ErrUnsupportedTree.
func (t *treeWriter) xattrs(fd int, p string, hdr *tar.Header, isDir bool) (opaque bool, err error) {
	names, err := flistXattrs(fd)
	if err != nil {
		return false, pathError("listing xattrs of", t.display(p), err)
	}
	for _, n := range names {
		if t.upper {
			if ov, ok := overlayXattr(n); ok {
				keep := false
				switch ov {
				case "opaque":
					v, err := fgetXattr(fd, n)
					opaque = opaque || (err == nil && string(v) == "y")
					keep = isDir && n == opaqueXattr && err == nil && string(v) == "y"
				case redirectSuffix, metacopySuffix:
					return false, fmt.Errorf("%w: %s is an overlayfs %s entry whose content is in a lower layer",
						ErrUnsupportedTree, t.display(p), ov)
				}
				if err := t.dropXattr(fd, n, p, keep); err != nil {
					return false, err
				}
				continue
			}
		}
		if !allowedXattr(n) || strings.HasPrefix(n, userOverlayPfx) {
			if err := t.dropXattr(fd, n, p, false); err != nil {
				return false, err
			}
			continue
		}
		v, err := fgetXattr(fd, n)
		if err != nil {
			if errors.Is(err, unix.ENODATA) {
				continue
			}
			return false, pathError("reading xattr "+n+" of", t.display(p), err)
		}
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords["SCHILY.xattr."+n] = string(v)
	}
	return opaque && isDir, nil
}

// overlayXattr returns the name of an overlayfs attribute without its
// trusted.overlay. or user.overlay. prefix.
func overlayXattr(n string) (string, bool) {
	if s, ok := strings.CutPrefix(n, overlayPrefix); ok {
		return s, true
	}
	return strings.CutPrefix(n, userOverlayPfx)
}

// readlinkAt reads the target of the symlink name in the directory fd.
func readlinkAt(fd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(fd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// sameEntry reports whether name in the upper directory dir (st) is the
// same as name in the base directory base (below), by WriteOptions.Base's
// rules. Neither is a directory here.
func sameEntry(dir, base int, name string, st, below *unix.Stat_t) (bool, error) {
	if st.Mode != below.Mode || st.Uid != below.Uid || st.Gid != below.Gid || st.Rdev != below.Rdev ||
		st.Size != below.Size || st.Mtim.Sec != below.Mtim.Sec {
		return false, nil
	}
	truncated := st.Mtim.Nsec == 0 && below.Mtim.Nsec == 0
	if !truncated && st.Mtim.Nsec != below.Mtim.Nsec {
		return false, nil
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		if !truncated {
			return true, nil
		}
		a, err := readlinkAt(dir, name)
		if err != nil {
			return false, err
		}
		b, err := readlinkAt(base, name)
		return err == nil && a == b, err
	case unix.S_IFREG:
	default:
		return true, nil
	}
	open := func(d int) (*os.File, error) {
		fd, err := unix.Openat(d, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		return os.NewFile(uintptr(fd), name), nil
	}
	fa, err := open(dir)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := open(base)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	ca, _ := fgetXattr(int(fa.Fd()), capabilityXattr)
	cb, _ := fgetXattr(int(fb.Fd()), capabilityXattr)
	if string(ca) != string(cb) {
		return false, nil
	}
	if !truncated || st.Size == 0 {
		return true, nil
	}
	return sameContent(fa, fb)
}

// sameContent reports whether a and b read the same bytes.
func sameContent(a, b io.Reader) (bool, error) {
	ba, bb := make([]byte, 32<<10), make([]byte, 32<<10)
	for {
		na, ea := io.ReadFull(a, ba)
		nb, eb := io.ReadFull(b, bb)
		if na != nb || string(ba[:na]) != string(bb[:nb]) {
			return false, nil
		}
		doneA := ea == io.EOF || ea == io.ErrUnexpectedEOF
		doneB := eb == io.EOF || eb == io.ErrUnexpectedEOF
		if ea != nil && !doneA {
			return false, ea
		}
		if eb != nil && !doneB {
			return false, eb
		}
		if doneA || doneB {
			return doneA && doneB, nil
		}
	}
}

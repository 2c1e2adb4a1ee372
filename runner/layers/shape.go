package layers

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// AddUpper stores the overlayfs upper directory upper (a build step's
// writable layer, which nothing uses any more) as a new layer without
// extracting it again: it writes upper's layer tar stream to w, as
// WriteUpper does with opts, and meanwhile makes the directory itself
// exactly what Add would unpack from that stream, then moves it into the
// store as the layer's tree. The diff_id is the sha256 of the stream.
//
// Making the directory the extracted form means: entries the stream leaves
// out are removed (unchanged entries and whiteouts hiding nothing, with
// opts.Base; sockets), and so are device nodes, which extraction skips;
// modification and access times become the stream's (whole seconds,
// clamped to opts.Clamp); of extended attributes only those the stream
// carries stay (user.* but user.overlay.*, security.capability, on files
// and directories), with trusted.overlay.opaque=y on opaque directories:
// overlayfs's own bookkeeping (origin, impure, ...) goes; the root becomes
// 0755 root:root without attributes. Owners and modes are already those
// the stream records.
//
// The upper directory is gone afterwards, whatever the result. When it
// cannot be renamed into the store (another filesystem) or opts.Owner maps
// owners, the stream is extracted as Add does (w still gets it). When the
// tree holds names extraction reads differently, AddUpper writes the whole
// stream to w, stores nothing and returns ErrNotMovable (and the stream's
// diff_id in the Layer): the caller extracts what it kept of the stream.
func (s *Store) AddUpper(ctx context.Context, upper string, w io.Writer, opts WriteOptions) (Layer, error) {
	fail := func(err error) (Layer, error) {
		return Layer{}, fmt.Errorf("layers: storing %s: %w", upper, err)
	}
	if opts.Owner != nil {
		return s.addExtracted(ctx, upper, w, opts)
	}
	sl, err := s.reserve()
	if err != nil {
		return Layer{}, err
	}
	defer sl.release()
	if err := os.Mkdir(sl.dir, 0o700); err != nil {
		return fail(err)
	}
	tree := filepath.Join(sl.dir, fsDir)
	if err := os.Rename(upper, tree); err != nil {
		if errors.Is(err, unix.EXDEV) {
			return s.addExtracted(ctx, upper, w, opts)
		}
		return fail(err)
	}
	h := digest.Canonical.Hash()
	cw := &countingWriter{w: io.MultiWriter(h, w)}
	t := newTreeWriter(ctx, cw, true, opts)
	t.shape = true
	if err := t.run(tree, opts); err != nil {
		return fail(err)
	}
	diffID := digest.NewDigest(digest.Canonical, h)
	if cw.n > DefaultMaxBytes || t.n > DefaultMaxEntries {
		return fail(fmt.Errorf("%w: %d bytes, %d entries", ErrTooLarge, cw.n, t.n))
	}
	if t.odd {
		return Layer{DiffID: diffID}, fmt.Errorf("%w: %s", ErrNotMovable, upper)
	}
	rootfd, err := unix.Open(tree, dirOpenFlags, 0)
	if err != nil {
		return fail(pathError("opening", tree, err))
	}
	defer unix.Close(rootfd)
	if err := shapeRoot(rootfd); err != nil {
		return fail(err)
	}
	l, err := s.place(sl, rootfd, Layer{DiffID: diffID, Size: cw.n, Entries: t.n, Skipped: t.skipped, Complete: true})
	if err != nil {
		return fail(err)
	}
	return l, nil
}

// addExtracted is AddUpper's way when upper cannot be moved: its stream,
// teed to w, extracted by Add.
func (s *Store) addExtracted(ctx context.Context, upper string, w io.Writer, opts WriteOptions) (Layer, error) {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, err := WriteUpper(ctx, pw, upper, opts)
		pw.CloseWithError(err)
	}()
	l, err := s.Add(ctx, io.TeeReader(pr, w), Limits{})
	pr.CloseWithError(fmt.Errorf("layers: layer stream abandoned"))
	<-done
	os.RemoveAll(upper)
	return l, err
}

// shapeRoot gives a moved tree's root what extraction's fresh root has:
// 0755, root's, no extended attributes.
func shapeRoot(fd int) error {
	if err := unix.Fchown(fd, 0, 0); err != nil {
		return pathError("chown", "/", err)
	}
	if err := unix.Fchmod(fd, 0o755); err != nil {
		return pathError("chmod", "/", err)
	}
	names, err := flistXattrs(fd)
	if err != nil {
		return pathError("listing xattrs of", "/", err)
	}
	for _, n := range names {
		if err := unix.Fremovexattr(fd, n); err != nil && !errors.Is(err, unix.ENODATA) {
			return pathError("removing xattr "+n+" of", "/", err)
		}
	}
	return nil
}

// leaveOut removes the non-directory name of the directory fd, which the
// stream leaves out, when the tree is being shaped.
func (t *treeWriter) leaveOut(fd int, name, p string) error {
	if !t.shape {
		return nil
	}
	if err := unix.Unlinkat(fd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return pathError("removing", t.display(p), err)
	}
	return nil
}

// shapeWhiteout makes a whiteout that shares its inode (overlayfs links
// one whiteout to many names) one of its own, as extraction makes it.
func (t *treeWriter) shapeWhiteout(fd int, name, p string, st *unix.Stat_t) error {
	if !t.shape || st.Nlink == 1 {
		return nil
	}
	if err := unix.Unlinkat(fd, name, 0); err != nil {
		return pathError("removing", t.display(p), err)
	}
	if err := unix.Mknodat(fd, name, unix.S_IFCHR, 0); err != nil {
		return pathError("making whiteout", t.display(p), err)
	}
	return nil
}

// shapeSpecial shapes a symlink or fifo just written: no extended
// attributes (the stream carries none for them), the stream's times. One
// with several links would be several inodes once extracted.
func (t *treeWriter) shapeSpecial(fd int, name, p string, st *unix.Stat_t, hdr *tar.Header) error {
	if !t.shape {
		return nil
	}
	if st.Nlink > 1 {
		t.odd = true
	}
	pp := procPath(fd, name)
	names, err := listXattrs(pp)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := unix.Lremovexattr(pp, n); err != nil && !errors.Is(err, unix.ENODATA) {
			return pathError("removing xattr "+n+" of", t.display(p), err)
		}
	}
	return t.setTimes(fd, name, p, hdr)
}

// setTimes gives name in the directory fd the access and modification
// times extraction gives the entry hdr describes.
func (t *treeWriter) setTimes(fd int, name, p string, hdr *tar.Header) error {
	if err := unix.UtimesNanoAt(fd, name, times(hdr), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return pathError("setting times of", t.display(p), err)
	}
	return nil
}

// dropXattr removes the extended attribute n of fd, which the stream does
// not carry, when the tree is being shaped (and keep is false).
func (t *treeWriter) dropXattr(fd int, n, p string, keep bool) error {
	if !t.shape || keep {
		return nil
	}
	if err := unix.Fremovexattr(fd, n); err != nil && !errors.Is(err, unix.ENODATA) {
		return pathError("removing xattr "+n+" of", t.display(p), err)
	}
	return nil
}

// procPath names name in the directory fd through /proc, for the calls
// that have no *at form (the l*xattr ones: the final name is not
// followed).
func procPath(fd int, name string) string {
	return "/proc/self/fd/" + strconv.Itoa(fd) + "/" + name
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

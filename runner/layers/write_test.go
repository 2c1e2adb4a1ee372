package layers_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-registry/berth/runner/layers"
)

// changeSetup unpacks a base layer, mounts it writable and makes, through
// the mount, the changes a container makes: a new file (with an xattr and
// a second link), a changed file, a deleted file, a deleted directory, a
// directory replaced by a file, a directory deleted and made again
// (opaque), a symlink, a fifo, a socket and a device node. It returns the
// store, the base layer and the upper directory, unmounted.
func changeSetup(t *testing.T) (*layers.Store, layers.Layer, string) {
	t.Helper()
	s := newStore(t, false)
	if err := s.OverlaySupported(); err != nil {
		t.Skipf("overlayfs: %v", err)
	}
	base := mustUnpack(t, s,
		dir("a/", 0o755), reg("a/x", "ax", 0o644), reg("a/y", "ay", 0o644),
		dir("b/", 0o755), reg("b/z", "bz", 0o644),
		dir("d/", 0o755), reg("d/inner", "inner", 0o644),
		reg("f", "old", 0o644), reg("gone", "gone", 0o644), reg("keep", "keep", 0o600),
	)
	work := t.TempDir()
	upper, wd, merged := filepath.Join(work, "upper"), filepath.Join(work, "work"), filepath.Join(work, "merged")
	for _, d := range []string{upper, wd, merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Two lowers: the base and an empty one, as Mount needs no more.
	if err := s.Mount(context.Background(), []layers.Layer{base}, upper, wd, merged); err != nil {
		t.Fatal(err)
	}
	m := func(p string) string { return filepath.Join(merged, p) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			unix.Unmount(merged, unix.MNT_DETACH)
			t.Fatal(err)
		}
	}
	must(os.WriteFile(m("new"), []byte("fresh"), 0o640))
	must(os.Chown(m("new"), 1000, 1001))
	must(unix.Setxattr(m("new"), "user.note", []byte("kept"), 0))
	must(os.Link(m("new"), m("new2")))
	must(os.WriteFile(m("f"), []byte("replaced"), 0o644))
	must(os.Remove(m("gone")))
	must(os.RemoveAll(m("b")))
	must(os.RemoveAll(m("d")))
	must(os.WriteFile(m("d"), []byte("now a file"), 0o644))
	must(os.RemoveAll(m("a")))
	must(os.Mkdir(m("a"), 0o700))
	must(os.WriteFile(m("a/only"), []byte("only"), 0o644))
	must(os.Symlink("f", m("ln")))
	must(unix.Mkfifo(m("pipe"), 0o600))
	must(unix.Mknod(m("null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	l, err := net.Listen("unix", m("sock"))
	must(err)
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	must(unix.Unmount(merged, 0))
	return s, base, upper
}

// tarEntries reads a tar stream into its headers by name, and the bodies.
func tarEntries(t *testing.T, b []byte) (map[string]*tar.Header, map[string]string, []string) {
	t.Helper()
	hdrs, bodies := map[string]*tar.Header{}, map[string]string{}
	var order []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		hdrs[h.Name], bodies[h.Name] = h, string(body)
		order = append(order, h.Name)
	}
	return hdrs, bodies, order
}

func TestWriteUpper(t *testing.T) {
	s, base, upper := changeSetup(t)
	var buf bytes.Buffer
	n, err := layers.WriteUpper(context.Background(), &buf, upper, layers.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hdrs, bodies, order := tarEntries(t, buf.Bytes())
	if n != len(order) {
		t.Errorf("WriteUpper counted %d entries, the tar has %d", n, len(order))
	}
	t.Logf("entries: %v", order)

	for _, name := range []string{".wh.b", ".wh.gone", "a/.wh..wh..opq"} {
		if h := hdrs[name]; h == nil || h.Typeflag != tar.TypeReg || h.Size != 0 {
			t.Errorf("whiteout %s: %+v", name, h)
		}
	}
	if h := hdrs["a/"]; h == nil || h.Typeflag != tar.TypeDir || h.Mode != 0o700 {
		t.Errorf("opaque directory a/: %+v", h)
	}
	for _, name := range []string{"b/", "b/z", "a/x", ".wh.d", "sock", ".wh.a", "keep"} {
		if hdrs[name] != nil {
			t.Errorf("unexpected entry %s", name)
		}
	}
	if h := hdrs["new"]; h == nil || h.Uid != 1000 || h.Gid != 1001 || h.Mode != 0o640 || bodies["new"] != "fresh" ||
		h.PAXRecords["SCHILY.xattr.user.note"] != "kept" {
		t.Errorf("new: %+v %q", h, bodies["new"])
	}
	if h := hdrs["new2"]; h == nil || h.Typeflag != tar.TypeLink || h.Linkname != "new" {
		t.Errorf("new2 should be a hardlink to new: %+v", h)
	}
	if h := hdrs["ln"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "f" {
		t.Errorf("ln: %+v", h)
	}
	if h := hdrs["pipe"]; h == nil || h.Typeflag != tar.TypeFifo {
		t.Errorf("pipe: %+v", h)
	}
	if h := hdrs["null"]; h == nil || h.Typeflag != tar.TypeChar || h.Devmajor != 1 || h.Devminor != 3 {
		t.Errorf("null: %+v", h)
	}
	if bodies["d"] != "now a file" || bodies["f"] != "replaced" || bodies["a/only"] != "only" {
		t.Errorf("bodies: d=%q f=%q a/only=%q", bodies["d"], bodies["f"], bodies["a/only"])
	}
	for name, h := range hdrs {
		for k := range h.PAXRecords {
			if strings.Contains(k, "trusted.") || strings.Contains(k, "overlay") {
				t.Errorf("%s carries %s", name, k)
			}
		}
	}

	// The same tree gives the same bytes.
	var again bytes.Buffer
	if _, err := layers.WriteUpper(context.Background(), &again, upper, layers.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Error("two writes of one upper directory differ")
	}

	// Round trip: unpacked and mounted over the base, the layer shows
	// the container's view.
	l, err := unpackTar(t, s, buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if l.Skipped != 1 { // the device node
		t.Errorf("unpack skipped %d entries, want 1 (the device)", l.Skipped)
	}
	merged := t.TempDir()
	if err := s.Mount(context.Background(), []layers.Layer{base, l}, "", "", merged); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(merged, unix.MNT_DETACH)
	checkChangedView(t, merged, true)
}

// checkChangedView checks a rootfs with changeSetup's changes; layer says
// it was made from the written layer (which has no socket and keeps the
// hardlink) rather than viewed over the upper directory.
func checkChangedView(t *testing.T, root string, layer bool) {
	t.Helper()
	p := func(s string) string { return filepath.Join(root, s) }
	for _, gone := range []string{"b", "gone", "a/x", "a/y", "d/inner"} {
		if exists(p(gone)) {
			t.Errorf("%s is still there", gone)
		}
	}
	if layer && exists(p("sock")) {
		t.Error("a socket went into the layer")
	}
	for name, want := range map[string]string{"new": "fresh", "new2": "fresh", "f": "replaced", "d": "now a file", "a/only": "only", "keep": "keep"} {
		if got := readFile(t, p(name)); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if a, b := lstat(t, p("new")), lstat(t, p("new2")); layer && a.Ino != b.Ino {
		t.Error("new and new2 are no longer one file")
	}
	if v := make([]byte, 16); true {
		n, err := unix.Lgetxattr(p("new"), "user.note", v)
		if err != nil || string(v[:n]) != "kept" {
			t.Errorf("xattr user.note of new: %q, %v", v[:max(n, 0)], err)
		}
	}
	if target, err := os.Readlink(p("ln")); err != nil || target != "f" {
		t.Errorf("ln -> %q, %v", target, err)
	}
	if st := lstat(t, p("pipe")); st.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Errorf("pipe mode %o", st.Mode)
	}
}

// TestWriteTreeOfView: MountView shows the container's rootfs read-only,
// and WriteTree writes it whole, without whiteouts.
func TestWriteTreeOfView(t *testing.T) {
	s, base, upper := changeSetup(t)
	view := t.TempDir()
	if err := s.MountView(context.Background(), []layers.Layer{base}, upper, view); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(view, unix.MNT_DETACH)
	checkChangedView(t, view, false)
	if err := os.WriteFile(filepath.Join(view, "nope"), nil, 0o644); err == nil {
		t.Error("the view is writable")
	}
	var buf bytes.Buffer
	if _, err := layers.WriteTree(context.Background(), &buf, view, layers.WriteOptions{
		Owner: func(uid, gid int) (int, int) {
			if uid == 1000 {
				return 7, 8
			}
			return uid, gid
		},
	}); err != nil {
		t.Fatal(err)
	}
	hdrs, bodies, order := tarEntries(t, buf.Bytes())
	for _, name := range order {
		if strings.Contains(name, ".wh.") {
			t.Errorf("whiteout %s in a flattened tree", name)
		}
	}
	for _, name := range []string{"b/", "gone", "a/x", "sock"} {
		if hdrs[name] != nil {
			t.Errorf("%s in the tree", name)
		}
	}
	for _, name := range []string{"dev/", "proc/", "sys/", "keep", "a/", "a/only", "null"} {
		if hdrs[name] == nil {
			t.Errorf("%s missing from the tree", name)
		}
	}
	if h := hdrs["new"]; h == nil || h.Uid != 7 || h.Gid != 8 {
		t.Errorf("new's owner not mapped: %+v", h)
	}
	if bodies["keep"] != "keep" || bodies["f"] != "replaced" {
		t.Errorf("bodies: keep=%q f=%q", bodies["keep"], bodies["f"])
	}
}

// TestWriteUpperRefusesRedirect: a directory overlayfs renamed with
// redirect_dir has its content in a lower layer; writing it would lose
// files.
func TestWriteUpperRefusesRedirect(t *testing.T) {
	requireRoot(t)
	upper := t.TempDir()
	d := filepath.Join(upper, "moved")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(d, "trusted.overlay.redirect", []byte("/orig"), 0); err != nil {
		t.Skipf("trusted xattrs: %v", err)
	}
	_, err := layers.WriteUpper(context.Background(), io.Discard, upper, layers.WriteOptions{})
	if !errors.Is(err, layers.ErrUnsupportedTree) || !strings.Contains(err.Error(), "/moved") {
		t.Errorf("err = %v, want ErrUnsupportedTree naming /moved", err)
	}
}

// TestAdd: a layer whose diff_id is not known beforehand is stored under
// its stream's sha256, by the same rules as Unpack.
func TestAdd(t *testing.T) {
	s := newStore(t, false)
	tarball := buildTar(t, dir("etc/", 0o755), reg("etc/hostname", "box", 0o644))
	l, err := s.Add(context.Background(), bytes.NewReader(gzipBytes(t, tarball)), layers.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if l.DiffID != sha(tarball) || readFile(t, filepath.Join(l.Dir, "etc/hostname")) != "box" {
		t.Errorf("Add = %+v, want diff_id %s", l, sha(tarball))
	}
	if got, err := s.Get(sha(tarball)); err != nil || got.DiffID != l.DiffID {
		t.Errorf("Get after Add: %+v, %v", got, err)
	}
	bad := buildTar(t, reg("../escape", "x", 0o644))
	if _, err := s.Add(context.Background(), bytes.NewReader(bad), layers.Limits{}); !errors.Is(err, layers.ErrUnsafeEntry) {
		t.Errorf("Add of a climbing entry: %v, want ErrUnsafeEntry", err)
	}
	assertNothingLeft(t, s, sha(bad))
}

// TestWriteUpperBase: with Base, the layer leaves out what overlayfs
// copied up unchanged (a file hardlinked, whose new link is then a file of
// its own) and whiteouts of names the base never had; a file in an opaque
// directory is written even when it equals the hidden one.
func TestWriteUpperBase(t *testing.T) {
	s := newStore(t, false)
	if err := s.OverlaySupported(); err != nil {
		t.Skipf("overlayfs: %v", err)
	}
	base := mustUnpack(t, s,
		dir("a/", 0o755), reg("a/x", "ax", 0o644),
		reg("keep", "keep", 0o600), reg("f", "old", 0o644),
	)
	work := t.TempDir()
	upper, wd, merged := filepath.Join(work, "upper"), filepath.Join(work, "work"), filepath.Join(work, "merged")
	for _, d := range []string{upper, wd, merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Mount(context.Background(), []layers.Layer{base}, upper, wd, merged); err != nil {
		t.Fatal(err)
	}
	m := func(p string) string { return filepath.Join(merged, p) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			unix.Unmount(merged, unix.MNT_DETACH)
			t.Fatal(err)
		}
	}
	must(os.Link(m("keep"), m("keep2")))
	must(os.WriteFile(m("f"), []byte("new"), 0o644))
	st, err := os.Stat(filepath.Join(base.Dir, "a/x"))
	must(err)
	must(os.RemoveAll(m("a")))
	must(os.Mkdir(m("a"), 0o755))
	must(os.WriteFile(m("a/x"), []byte("ax"), 0o644))
	must(os.Chtimes(m("a/x"), st.ModTime(), st.ModTime()))
	must(unix.Unmount(merged, 0))
	must(unix.Mknod(filepath.Join(upper, "ghost"), unix.S_IFCHR, 0))

	var plain, diff bytes.Buffer
	if _, err := layers.WriteUpper(context.Background(), &plain, upper, layers.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := layers.WriteUpper(context.Background(), &diff, upper, layers.WriteOptions{Base: base.Dir}); err != nil {
		t.Fatal(err)
	}
	hdrs, _, order := tarEntries(t, plain.Bytes())
	t.Logf("without Base: %v", order)
	if hdrs["keep"] == nil || hdrs["keep2"] == nil || hdrs["keep2"].Typeflag != tar.TypeLink || hdrs[".wh.ghost"] == nil {
		t.Errorf("without Base, keep, the link keep2 and .wh.ghost are written: %v", order)
	}
	hdrs, bodies, order := tarEntries(t, diff.Bytes())
	t.Logf("with Base: %v", order)
	if hdrs["keep"] != nil || hdrs[".wh.ghost"] != nil {
		t.Errorf("with Base, the unchanged keep and the whiteout of nothing are left out: %v", order)
	}
	if h := hdrs["keep2"]; h == nil || h.Typeflag != tar.TypeReg || bodies["keep2"] != "keep" || h.Mode != 0o600 {
		t.Errorf("keep2 (its first name left out) must be a file of its own: %+v", h)
	}
	if bodies["f"] != "new" || hdrs["a/x"] == nil || hdrs["a/.wh..wh..opq"] == nil {
		t.Errorf("a changed file and an opaque directory's files are written: %v", order)
	}
}

// TestWriteClamp: with Clamp, times after it are written as Clamp and
// earlier ones kept; owner names stay empty, and the same tree gives the
// same bytes.
func TestWriteClamp(t *testing.T) {
	root := t.TempDir()
	old := time.Unix(1000, 0)
	clamp := time.Unix(2000, 0)
	if err := os.MkdirAll(filepath.Join(root, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"d/new", "old", "a"} {
		if err := os.WriteFile(filepath.Join(root, n), []byte(n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chtimes(filepath.Join(root, "old"), old, old); err != nil {
		t.Fatal(err)
	}
	write := func() []byte {
		var buf bytes.Buffer
		if _, err := layers.WriteTree(context.Background(), &buf, root, layers.WriteOptions{Clamp: clamp}); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	first := write()
	hdrs, _, order := tarEntries(t, first)
	if want := "a d/ d/new old"; strings.Join(order, " ") != want {
		t.Errorf("entries %q, want %q", order, want)
	}
	for _, n := range order {
		h := hdrs[n]
		want := clamp
		if n == "old" {
			want = old
		}
		if !h.ModTime.Equal(want) {
			t.Errorf("%s: mtime %v, want %v", n, h.ModTime, want)
		}
		if h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: owner names %q %q", n, h.Uname, h.Gname)
		}
	}
	// Touching a file past the clamp changes nothing written.
	now := time.Now()
	if err := os.Chtimes(filepath.Join(root, "a"), now, now); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, write()) {
		t.Error("the same tree, clamped, gave other bytes")
	}
}

package filesystem_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/berth-registry/berth/storage"
	"github.com/berth-registry/berth/storage/filesystem"
	"github.com/berth-registry/berth/storage/storagetest"
)

// tmpDir is where the driver keeps temporary files: part of the on-disk
// layout, so spelled out here rather than imported.
const tmpDir = ".berth-tmp"

func newDriver(tb testing.TB, root string) *filesystem.Driver {
	tb.Helper()
	d, err := filesystem.New(root)
	if err != nil {
		tb.Fatalf("New(%q): %v", root, err)
	}
	tb.Cleanup(func() { d.Close() })
	return d
}

func TestDriver(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Driver { return newDriver(t, t.TempDir()) })
}

func BenchmarkDriver(b *testing.B) {
	storagetest.Bench(b, func(b *testing.B) storage.Driver { return newDriver(b, b.TempDir()) })
}

// BenchmarkWriteCommit1GiB writes 1 GiB in 1 MiB writes and commits it, and
// reports apart how long Commit took (commit-ms/op): the fsync that waits for
// whatever writeback has not finished. It is too big for the shared Bench.
// On a VM, run it alone on freshly dropped caches, so that the page cache
// reuses guest memory already touched rather than measuring the hypervisor:
//
//	sync; echo 3 > /proc/sys/vm/drop_caches
//	go test -run '^$' -bench WriteCommit1GiB -benchtime 3x ./storage/filesystem
func BenchmarkWriteCommit1GiB(b *testing.B) {
	const (
		size  = 1 << 30
		chunk = 1 << 20
		p     = "/bench/data"
	)
	ctx := b.Context()
	d := newDriver(b, b.TempDir())
	data := make([]byte, chunk)
	rand.Read(data)
	var commit time.Duration
	b.SetBytes(size)
	for b.Loop() {
		w, err := d.Writer(ctx, p, false)
		if err != nil {
			b.Fatal(err)
		}
		for range size / chunk {
			if _, err := w.Write(data); err != nil {
				b.Fatal(err)
			}
		}
		start := time.Now()
		if err := w.Commit(ctx); err != nil {
			b.Fatal(err)
		}
		commit += time.Since(start)
	}
	b.ReportMetric(float64(commit.Milliseconds())/float64(b.N), "commit-ms/op")
	if err := d.Delete(ctx, "/bench"); err != nil {
		b.Error(err)
	}
}

// TestLayout checks that content lands at <root>/<path> exactly, and that
// files put there by other means are served: the on-disk layout is shared
// with other registries' filesystem drivers.
func TestLayout(t *testing.T) {
	ctx := t.Context()
	root := t.TempDir()
	d := newDriver(t, root)
	const p = "/docker/registry/v2/blobs/sha256/ab/abcdef/data"
	if err := storage.WriteAll(ctx, d, p, []byte("blob")); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(root, "docker/registry/v2/blobs/sha256/ab/abcdef/data")); err != nil || string(got) != "blob" {
		t.Errorf("file on disk = %q, %v; want %q", got, err, "blob")
	}

	// Content left by Close is in place too, for a later append writer.
	w, err := d.Writer(ctx, "/uploads/u1/data", false)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("part"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(root, "uploads/u1/data")); err != nil || string(got) != "part" {
		t.Errorf("closed upload on disk = %q, %v; want %q", got, err, "part")
	}

	if err := os.MkdirAll(filepath.Join(root, "other/dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "other/dir/f"), []byte("put by hand"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := storage.ReadAll(ctx, d, "/other/dir/f"); err != nil || string(got) != "put by hand" {
		t.Errorf("ReadAll of a file put there by hand = %q, %v", got, err)
	}
}

// TestReaderIsFile checks that Reader returns the *os.File itself, so that
// copying it to a connection uses sendfile, positioned at the offset.
func TestReaderIsFile(t *testing.T) {
	ctx := t.Context()
	d := newDriver(t, t.TempDir())
	if err := storage.WriteAll(ctx, d, "/f", []byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	r, err := d.Reader(ctx, "/f", 4)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	f, ok := r.(*os.File)
	if !ok {
		t.Fatalf("Reader returned a %T, want *os.File", r)
	}
	if pos, err := f.Seek(0, 1); err != nil || pos != 4 {
		t.Errorf("file position = %d, %v; want 4", pos, err)
	}
}

// temps returns the names of the temporary files under root.
func temps(t *testing.T, root string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, tmpDir))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestNoTempsLeft checks that every way of ending a writer removes its
// temporary file.
func TestNoTempsLeft(t *testing.T) {
	ctx := t.Context()
	root := t.TempDir()
	d := newDriver(t, root)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	for name, end := range map[string]func(storage.FileWriter) error{
		"Commit":                  func(w storage.FileWriter) error { return w.Commit(ctx) },
		"Close":                   func(w storage.FileWriter) error { return w.Close() },
		"Cancel":                  func(w storage.FileWriter) error { return w.Cancel(ctx) },
		"Commit with ctx done":    func(w storage.FileWriter) error { return w.Commit(cancelled) },
		"Cancel with ctx done":    func(w storage.FileWriter) error { return w.Cancel(cancelled) },
		"Commit onto a directory": nil,
	} {
		p := "/f"
		if end == nil {
			p = "/dir" // fails: /dir/x makes it a directory
			if err := storage.WriteAll(ctx, d, "/dir/x", []byte("x")); err != nil {
				t.Fatal(err)
			}
			end = func(w storage.FileWriter) error {
				if err := w.Commit(ctx); err == nil {
					return errors.New("Commit onto a directory succeeded")
				}
				return nil
			}
		}
		w, err := d.Writer(ctx, p, false)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte("content")); err != nil {
			t.Fatal(err)
		}
		if got := temps(t, root); len(got) != 1 {
			t.Errorf("%s: %d temporary files while writing, want 1", name, len(got))
		}
		if err := end(w); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("%s: %v", name, err)
		}
		if got := temps(t, root); len(got) != 0 {
			t.Errorf("%s: temporary files left: %q", name, got)
		}
	}
}

// TestStaleTemps checks that a temporary file left by a crash is never
// listed, and that New removes it once it is old.
func TestStaleTemps(t *testing.T) {
	ctx := t.Context()
	root := t.TempDir()
	d := newDriver(t, root)
	if err := storage.WriteAll(ctx, d, "/a/f", []byte("x")); err != nil {
		t.Fatal(err)
	}
	stale, fresh := filepath.Join(root, tmpDir, "stale"), filepath.Join(root, tmpDir, "fresh")
	for _, name := range []string{stale, fresh} {
		if err := os.WriteFile(name, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}

	if got, err := d.List(ctx, "/"); err != nil || !slices.Equal(got, []string{"/a"}) {
		t.Errorf(`List("/") = %q, %v; want only "/a"`, got, err)
	}
	var walked []string
	err := d.Walk(ctx, "/", func(fi storage.FileInfo) error {
		walked = append(walked, fi.Path)
		return nil
	})
	if want := []string{"/a", "/a/f"}; err != nil || !slices.Equal(walked, want) {
		t.Errorf(`Walk("/") visited %q, %v; want %q`, walked, err, want)
	}
	for _, p := range []string{"/" + tmpDir, "/" + tmpDir + "/stale"} {
		_, err := d.Stat(ctx, p)
		if !errors.Is(err, storage.ErrInvalidPath) {
			t.Errorf("Stat(%q) = %v, want ErrInvalidPath (reserved)", p, err)
		}
		if err := d.Delete(ctx, p); !errors.Is(err, storage.ErrInvalidPath) {
			t.Errorf("Delete(%q) = %v, want ErrInvalidPath (reserved)", p, err)
		}
	}

	newDriver(t, root)
	if got := temps(t, root); !slices.Equal(got, []string{"fresh"}) {
		t.Errorf("temporary files after New = %q, want only the fresh one", got)
	}
}

// TestPathsStayUnderRoot checks that no path names a file outside root:
// those that would are invalid, and reach nothing.
func TestPathsStayUnderRoot(t *testing.T) {
	ctx := t.Context()
	parent := t.TempDir()
	outside := filepath.Join(parent, "outside")
	if err := os.WriteFile(outside, []byte("outside"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := newDriver(t, filepath.Join(parent, "root"))
	if err := storage.WriteAll(ctx, d, "/a/f", []byte("inside")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		"/../outside", "/a/../../outside", "/./../outside", "//../outside", "../outside", "/..",
		`/..\outside`, `/a\..\..\outside`, "/../outside\x00",
	} {
		if _, err := storage.ReadAll(ctx, d, p); !errors.Is(err, storage.ErrInvalidPath) {
			t.Errorf("ReadAll(%q) = %v, want ErrInvalidPath", p, err)
		}
		if _, err := d.Stat(ctx, p); !errors.Is(err, storage.ErrInvalidPath) {
			t.Errorf("Stat(%q) = %v, want ErrInvalidPath", p, err)
		}
		if _, err := d.List(ctx, p); !errors.Is(err, storage.ErrInvalidPath) {
			t.Errorf("List(%q) = %v, want ErrInvalidPath", p, err)
		}
		if err := storage.WriteAll(ctx, d, p, []byte("overwritten")); !errors.Is(err, storage.ErrInvalidPath) {
			t.Errorf("WriteAll(%q) = %v, want ErrInvalidPath", p, err)
		}
		if w, err := d.Writer(ctx, p, true); !errors.Is(err, storage.ErrInvalidPath) {
			t.Errorf("Writer(%q, append) = %v, want ErrInvalidPath", p, err)
			if err == nil {
				w.Cancel(ctx)
			}
		}
		if err := d.Move(ctx, p, "/stolen"); !errors.Is(err, storage.ErrInvalidPath) {
			t.Errorf("Move(%q, /stolen) = %v, want ErrInvalidPath", p, err)
		}
		if err := d.Move(ctx, "/a/f", p); !errors.Is(err, storage.ErrInvalidPath) {
			t.Errorf("Move(/a/f, %q) = %v, want ErrInvalidPath", p, err)
		}
		if err := d.Delete(ctx, p); !errors.Is(err, storage.ErrInvalidPath) {
			t.Errorf("Delete(%q) = %v, want ErrInvalidPath", p, err)
		}
	}
	if got, err := os.ReadFile(outside); err != nil || string(got) != "outside" {
		t.Errorf("file outside the root now = %q, %v", got, err)
	}
	if entries, err := os.ReadDir(parent); err != nil || len(entries) != 2 {
		t.Errorf("next to the root: %v, %v; want only outside and root", entries, err)
	}
}

// TestSymlinks checks that symbolic links placed under root are followed
// like any path, as the package documents: an operator may link part of the
// tree elsewhere on the same file system.
func TestSymlinks(t *testing.T) {
	ctx := t.Context()
	elsewhere := t.TempDir()
	if err := os.WriteFile(filepath.Join(elsewhere, "f"), []byte("linked"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	d := newDriver(t, root)
	for _, p := range []string{"/d/f", "/d/e/g"} {
		if err := storage.WriteAll(ctx, d, p, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"dir":       elsewhere,
		"file":      filepath.Join(elsewhere, "f"),
		"d/e/loop":  "..", // /d/e/loop is /d: a loop
		"d/e/again": elsewhere,
		"dangling":  "nowhere",
	} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}

	for _, p := range []string{"/dir/f", "/file"} {
		if got, err := storage.ReadAll(ctx, d, p); err != nil || string(got) != "linked" {
			t.Errorf("ReadAll(%q) = %q, %v; want %q", p, got, err, "linked")
		}
	}
	if fi, err := d.Stat(ctx, "/dir"); err != nil || !fi.IsDir {
		t.Errorf(`Stat("/dir") = %+v, %v; want a directory`, fi, err)
	}
	if got, err := d.List(ctx, "/"); err != nil || !slices.Equal(got, []string{"/d", "/dir", "/file"}) {
		t.Errorf(`List("/") = %q, %v; want /d, /dir, /file (a dangling link left out)`, got, err)
	}
	var walked []string
	err := d.Walk(ctx, "/", func(fi storage.FileInfo) error {
		walked = append(walked, fi.Path)
		return nil
	})
	// The loop is reported but not entered; both links to elsewhere are.
	want := []string{
		"/d", "/d/e", "/d/e/again", "/d/e/again/f", "/d/e/g", "/d/e/loop", "/d/f", "/dir", "/dir/f", "/file",
	}
	if err != nil || !slices.Equal(walked, want) {
		t.Errorf("Walk(\"/\") visited %q, %v; want %q", walked, err, want)
	}

	// Writing goes through a link to a directory; Delete and pruning never
	// remove a link's target, and Move does not move a link.
	if err := storage.WriteAll(ctx, d, "/dir/new", []byte("new")); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(elsewhere, "new")); err != nil || string(got) != "new" {
		t.Errorf("file written through the link = %q, %v", got, err)
	}
	if err := d.Delete(ctx, "/dir/new"); err != nil {
		t.Fatal(err)
	}
	if err := d.Move(ctx, "/file", "/moved"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Move of a link = %v, want ErrNotFound", err)
	}
	if err := d.Delete(ctx, "/dir"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Stat(ctx, "/dir"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Stat of a deleted link = %v, want ErrNotFound", err)
	}
	if got, err := os.ReadFile(filepath.Join(elsewhere, "f")); err != nil || string(got) != "linked" {
		t.Errorf("file behind the deleted link = %q, %v", got, err)
	}
}

// TestWritebackChunks writes across several writeback chunks, with an
// append writer starting off a chunk boundary, and reads everything back.
func TestWritebackChunks(t *testing.T) {
	ctx := t.Context()
	d := newDriver(t, t.TempDir())
	data := make([]byte, 21<<20+12345)
	rand.Read(data)
	const p = "/big/data"
	cuts := []int{5<<20 + 3, 17<<20 + 1, len(data)}
	pos := 0
	for i, cut := range cuts {
		w, err := d.Writer(ctx, p, i > 0)
		if err != nil {
			t.Fatal(err)
		}
		for pos < cut {
			n := min(3<<20+1, cut-pos)
			if _, err := w.Write(data[pos : pos+n]); err != nil {
				t.Fatal(err)
			}
			pos += n
		}
		end := w.Close
		if i == len(cuts)-1 {
			end = func() error { return w.Commit(ctx) }
		}
		if err := end(); err != nil {
			t.Fatal(err)
		}
	}
	got, err := storage.ReadAll(ctx, d, p)
	if err != nil || !slices.Equal(got, data) {
		t.Errorf("read back %d bytes, %v; want the %d bytes written", len(got), err, len(data))
	}
	if err := d.Delete(ctx, "/big"); err != nil {
		t.Fatal(err)
	}
}

// TestBackgroundSyncs writes enough for background syncs to run, then ends
// the writer each way it can end, and checks what is left.
func TestBackgroundSyncs(t *testing.T) {
	data := make([]byte, 50<<20+7)
	rand.Read(data)
	write := func(t *testing.T, d *filesystem.Driver, p string, appending bool) storage.FileWriter {
		w, err := d.Writer(t.Context(), p, appending)
		if err != nil {
			t.Fatal(err)
		}
		for pos := 0; pos < len(data); pos += 1 << 20 {
			if _, err := w.Write(data[pos:min(pos+1<<20, len(data))]); err != nil {
				t.Fatal(err)
			}
		}
		return w
	}
	t.Run("commit", func(t *testing.T) {
		d := newDriver(t, t.TempDir())
		if err := write(t, d, "/a/data", false).Commit(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := write(t, d, "/a/data", true).Close(); err != nil {
			t.Fatal(err)
		}
		got, err := storage.ReadAll(t.Context(), d, "/a/data")
		if err != nil || !slices.Equal(got, append(slices.Clone(data), data...)) {
			t.Errorf("read back %d bytes, %v; want the %d bytes written", len(got), err, 2*len(data))
		}
	})
	t.Run("cancel", func(t *testing.T) {
		root := t.TempDir()
		d := newDriver(t, root)
		if err := write(t, d, "/a/data", false).Cancel(t.Context()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		w := write(t, d, "/a/data", false)
		cancel()
		if err := w.Commit(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Commit with a done context: %v", err)
		}
		if _, err := d.Stat(t.Context(), "/a/data"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Stat after Cancel and a failed Commit: %v, want ErrNotFound", err)
		}
		if left, _ := os.ReadDir(filepath.Join(root, tmpDir)); len(left) != 0 {
			t.Errorf("temporary files left: %v", left)
		}
	})
}

// TestVersions: a file's version stays while it is unchanged, is that of
// what ReadVersion read, and changes when the file is replaced, even with
// the same content.
func TestVersions(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("versions are supported on Linux only")
	}
	ctx := t.Context()
	d := newDriver(t, t.TempDir())
	const p = "/a/link"
	content := []byte("sha256:0123")
	if err := storage.WriteAll(ctx, d, p, content); err != nil {
		t.Fatal(err)
	}
	v1, err := d.Version(ctx, p)
	if err != nil || v1 == (storage.Version{}) {
		t.Fatalf("Version: %v, %v", v1, err)
	}
	b, v, err := d.ReadVersion(ctx, p)
	if err != nil || string(b) != string(content) || v != v1 {
		t.Fatalf("ReadVersion: %q, %v, %v; want %q and the version %v", b, v, err, content, v1)
	}
	if v, err := d.Version(ctx, p); err != nil || v != v1 {
		t.Fatalf("Version of the unchanged file: %v, %v; want %v", v, err, v1)
	}
	for range 3 {
		if err := storage.WriteAll(ctx, d, p, content); err != nil {
			t.Fatal(err)
		}
		v2, err := d.Version(ctx, p)
		if err != nil || v2 == v1 {
			t.Fatalf("Version after the file was replaced: %v, %v; want another than %v", v2, err, v1)
		}
		v1 = v2
	}
	for _, q := range []string{"/a", "/a/none", "/a/link/x"} {
		if _, err := d.Version(ctx, q); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Version(%q): %v, want ErrNotFound", q, err)
		}
		if _, _, err := d.ReadVersion(ctx, q); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("ReadVersion(%q): %v, want ErrNotFound", q, err)
		}
	}
	if err := d.Delete(ctx, "/a"); err != nil {
		t.Fatal(err)
	}
}

// TestLazySync: a writer opened with storage.WithLazySync writes and
// commits the same content as any other (only when its bytes go to disk
// changes), appending included.
func TestLazySync(t *testing.T) {
	d := newDriver(t, t.TempDir())
	ctx := storage.WithLazySync(t.Context())
	if !storage.LazySync(ctx) || storage.LazySync(t.Context()) {
		t.Fatal("LazySync does not report WithLazySync's mark")
	}
	content := bytes.Repeat([]byte("0123456789abcdef"), 3<<20) // 48 MiB: several writeback chunks
	w, err := d.Writer(ctx, "/lazy/file", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(content[:len(content)/2]); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w, err = d.Writer(ctx, "/lazy/file", true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(content[len(content)/2:]); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := storage.ReadAll(t.Context(), d, "/lazy/file")
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("read back %d bytes (%v), want the %d written", len(got), err, len(content))
	}
}

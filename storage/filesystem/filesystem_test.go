package filesystem_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
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

// TestConfinedToRoot checks that symbolic links placed under root cannot
// make the driver read, write or delete outside it.
func TestConfinedToRoot(t *testing.T) {
	ctx := t.Context()
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	d := newDriver(t, root)
	rel, err := filepath.Rel(root, outside)
	if err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"abs": outside, "rel": rel, "file": secret} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}

	for _, p := range []string{"/abs/secret", "/rel/secret", "/file"} {
		if got, err := storage.ReadAll(ctx, d, p); err == nil {
			t.Errorf("ReadAll(%q) read %q outside the root", p, got)
		}
		if _, err := d.Stat(ctx, p); err == nil {
			t.Errorf("Stat(%q) reached outside the root", p)
		}
		if w, err := d.Writer(ctx, p, true); err == nil {
			w.Write([]byte("!"))
			w.Commit(ctx)
			t.Errorf("Writer(%q, append) opened a file outside the root", p)
		}
		_ = storage.WriteAll(ctx, d, p, []byte("overwritten"))
		_ = d.Move(ctx, p, "/stolen")
	}
	_ = storage.WriteAll(ctx, d, "/abs/new", []byte("planted"))
	_ = d.Delete(ctx, "/abs/secret")

	if got, err := os.ReadFile(secret); err != nil || string(got) != "secret" {
		t.Errorf("file outside the root now = %q, %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(outside, "new")); err == nil {
		t.Errorf("a file was created outside the root")
	}
	var walked []string
	err = d.Walk(ctx, "/", func(fi storage.FileInfo) error {
		walked = append(walked, fi.Path)
		return nil
	})
	if err != nil {
		t.Errorf("Walk: %v", err)
	}
	for _, p := range walked {
		if strings.HasPrefix(p, "/abs") || strings.HasPrefix(p, "/rel") {
			t.Errorf("Walk followed a symbolic link to %s", p)
		}
	}
}

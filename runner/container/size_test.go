package container_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-registry/berth/runner/container"
)

func TestWritableSize(t *testing.T) {
	s, err := container.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.New(container.State{})
	if err != nil {
		t.Fatal(err)
	}
	up := c.Upper()
	write := func(name string, n int) {
		t.Helper()
		p := filepath.Join(up, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(strings.Repeat("x", n)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := c.WritableSize(t.Context(), false); err != nil || n != 0 {
		t.Fatalf("empty upper: %d, %v", n, err)
	}
	write("a/b/c/big", 1<<20)
	write("small", 100)
	write("empty", 0)
	// A hard link is counted once; a symlink by its target's length;
	// directories not at all.
	if err := os.Link(filepath.Join(up, "small"), filepath.Join(up, "a", "hard")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a/b/c/big", filepath.Join(up, "link")); err != nil {
		t.Fatal(err)
	}
	want := int64(1<<20 + 100 + len("a/b/c/big"))
	if n, err := c.WritableSize(t.Context(), false); err != nil || n != want {
		t.Errorf("WritableSize = %d, %v; want %d", n, err, want)
	}
	// Flattened: the rootfs is the writable layer.
	if err := os.WriteFile(filepath.Join(c.Rootfs(), "f"), make([]byte, 7), 0o644); err != nil {
		t.Fatal(err)
	}
	if n, err := c.WritableSize(t.Context(), true); err != nil || n != 7 {
		t.Errorf("WritableSize of a flattened rootfs = %d, %v; want 7", n, err)
	}
	os.RemoveAll(c.Dir)
	if _, err := c.WritableSize(t.Context(), false); err == nil {
		t.Error("WritableSize of a removed container: no error")
	}
}

package spec

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOpenNoSymlinks covers the fallback for kernels without openat2: any
// symlink on the way is refused.
func TestOpenNoSymlinks(t *testing.T) {
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "passwd"), []byte("evil:x:1:1::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "group"), []byte("g:x:1:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(host, "passwd"), filepath.Join(root, "etc", "passwd")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(host, filepath.Join(root, "linked")); err != nil {
		t.Fatal(err)
	}
	dfd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)
	for name, want := range map[string]error{
		"etc/group":     nil,
		"etc/passwd":    unix.ELOOP,
		"linked/passwd": unix.ENOTDIR,
		"../etc/group":  unix.EINVAL,
		"etc/missing":   unix.ENOENT,
	} {
		fd, err := openNoSymlinks(dfd, name, unix.O_RDONLY)
		if err == nil {
			unix.Close(fd)
		}
		if want == nil && err != nil || want != nil && !errors.Is(err, want) {
			t.Errorf("openNoSymlinks(%q) = %v, want %v", name, err, want)
		}
	}
}

package layers_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-registry/berth/runner/layers"
)

// TestAddUpperEqualsExtracted: a layer AddUpper moves into the store is the
// same tree, entry for entry (type, mode, owner, size, content, link
// target, device, every xattr, times, links), as the one Add extracts from
// the stream WriteUpper writes of the same upper directory, and its
// diff_id and stream are the same; overlayfs's own xattrs, device nodes,
// sockets and what Base leaves out are gone.
func TestAddUpperEqualsExtracted(t *testing.T) {
	for _, tc := range []struct {
		name  string
		base  bool
		clamp time.Time
	}{{"base", true, time.Time{}}, {"plain", false, time.Time{}}, {"clamp", true, time.Now().Add(-time.Hour)}} {
		t.Run(tc.name, func(t *testing.T) {
			s, base, upper := changeSetup(t)
			shapeSetup(t, s, base, upper)
			// A copy for the extraction path (cp -a keeps owners, modes,
			// times, xattrs, hardlinks and the whiteout devices).
			upper2 := filepath.Join(t.TempDir(), "upper")
			if out, err := exec.Command("cp", "-a", upper, upper2).CombinedOutput(); err != nil {
				t.Fatalf("cp -a: %v: %s", err, out)
			}
			opts := layers.WriteOptions{Clamp: tc.clamp}
			if tc.base {
				opts.Base = base.Dir
			}
			var want bytes.Buffer
			if _, err := layers.WriteUpper(context.Background(), &want, upper2, opts); err != nil {
				t.Fatal(err)
			}
			extracted, err := newStore(t, false).Add(context.Background(), bytes.NewReader(want.Bytes()), layers.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			moved, err := s.AddUpper(context.Background(), upper, &got, opts)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				t.Errorf("AddUpper's stream differs from WriteUpper's")
			}
			if moved.DiffID != extracted.DiffID || moved.Size != extracted.Size || moved.Entries != extracted.Entries || moved.Skipped != extracted.Skipped {
				t.Errorf("AddUpper = %+v, Add = %+v", moved, extracted)
			}
			if exists(upper) {
				t.Errorf("the upper directory is still there")
			}
			if l, err := s.Get(moved.DiffID); err != nil || l.Dir != moved.Dir {
				t.Errorf("Get(%s) = %+v, %v", moved.DiffID, l, err)
			}
			a, b := describeTree(t, extracted.Dir), describeTree(t, moved.Dir)
			for _, k := range slices.Sorted(keysOf(a, b)) {
				if a[k] != b[k] {
					t.Errorf("%s:\n extracted %q\n moved     %q", k, a[k], b[k])
				}
			}
			for _, k := range []string{"/null", "/sock", "/origin-file"} {
				if b[k] != "" && !strings.Contains(b[k], "trusted") && k != "/origin-file" {
					t.Errorf("%s is in the moved layer: %s", k, b[k])
				}
			}
			if strings.Contains(b["/a"], "trusted.overlay.opaque=y") == false {
				t.Errorf("the opaque directory lost its mark: %s", b["/a"])
			}
		})
	}
}

// shapeSetup adds to changeSetup's upper directory what only a kernel's
// overlayfs (or a hostile step) puts there: overlayfs bookkeeping xattrs on
// a file, a directory and a symlink, a user.overlay.* xattr, a whiteout
// hiding nothing, a file copied up only for a new link, and a root with
// another mode.
func shapeSetup(t *testing.T, s *layers.Store, base layers.Layer, upper string) {
	t.Helper()
	u := func(p string) string { return filepath.Join(upper, p) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// keep (unchanged) copied up beside its new link keep2.
	if out, err := exec.Command("cp", "-a", filepath.Join(base.Dir, "keep"), u("keep")).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v: %s", err, out)
	}
	must(os.Link(u("keep"), u("keep2")))
	must(os.WriteFile(u("origin-file"), []byte("o"), 0o644))
	must(unix.Lsetxattr(u("origin-file"), "trusted.overlay.origin", []byte("handle"), 0))
	must(unix.Lsetxattr(u("origin-file"), "user.overlay.impure", []byte("y"), 0))
	must(unix.Lsetxattr(u("origin-file"), "security.capability", capV2(), 0))
	must(unix.Lsetxattr(u("a"), "trusted.overlay.impure", []byte("y"), 0))
	must(unix.Lsetxattr(u("ln"), "trusted.overlay.origin", []byte("handle"), 0))
	must(unix.Lsetxattr(upper, "trusted.overlay.impure", []byte("y"), 0))
	must(unix.Mknod(u("ghost"), unix.S_IFCHR, 0))
	must(os.Chmod(upper, 0o700))
	// Times with nanoseconds, as a kernel writes them.
	ts := time.Unix(1_600_000_000, 123456789)
	must(os.Chtimes(u("origin-file"), ts, ts))
}

// capV2 is a security.capability value (v2) granting cap_net_bind_service.
func capV2() []byte {
	return []byte{0, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
}

func keysOf(ms ...map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		seen := map[string]bool{}
		for _, m := range ms {
			for k := range m {
				if !seen[k] {
					seen[k] = true
					if !yield(k) {
						return
					}
				}
			}
		}
	}
}

// describeTree describes every entry below root: type and mode, owner,
// size, device, link count, modification and access times (not for
// whiteouts, made when they were made), every xattr, link target and
// content.
func describeTree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	// Times first: reading a file's content may change its access time.
	stats := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		whiteout := st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
		if p != root && !whiteout {
			stats[p] = fmt.Sprintf(" mtime=%d.%09d atime=%d.%09d", st.Mtim.Sec, st.Mtim.Nsec, st.Atim.Sec, st.Atim.Nsec)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := "/" + strings.TrimPrefix(strings.TrimPrefix(p, root), "/")
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		s := fmt.Sprintf("mode=%o uid=%d gid=%d rdev=%d", st.Mode, st.Uid, st.Gid, st.Rdev)
		s += stats[p]
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			s += fmt.Sprintf(" size=%d nlink=%d", st.Size, st.Nlink)
		}
		buf := make([]byte, 4096)
		n, err := unix.Llistxattr(p, buf)
		if err != nil {
			return err
		}
		names := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00")
		slices.Sort(names)
		for _, x := range names {
			if x == "" {
				continue
			}
			v := make([]byte, 4096)
			vn, err := unix.Lgetxattr(p, x, v)
			if err != nil {
				return err
			}
			s += fmt.Sprintf(" %s=%s", x, v[:vn])
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			s += " -> " + target
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s += fmt.Sprintf(" content=%q", b)
		}
		out[rel] = s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestAddUpperNotMovable: a file named like a whiteout is read as one by
// extraction, so AddUpper writes the stream, stores nothing and says so,
// with the stream's diff_id; Add of that stream then stores the layer.
func TestAddUpperNotMovable(t *testing.T) {
	s := newStore(t, false)
	upper := filepath.Join(t.TempDir(), "upper")
	if err := os.MkdirAll(filepath.Join(upper, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(upper, "etc/.wh.passwd"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var stream bytes.Buffer
	l, err := s.AddUpper(context.Background(), upper, &stream, layers.WriteOptions{})
	if !errors.Is(err, layers.ErrNotMovable) {
		t.Fatalf("AddUpper = %+v, %v; want ErrNotMovable", l, err)
	}
	if l.DiffID != sha(stream.Bytes()) {
		t.Errorf("diff_id %s, stream %s", l.DiffID, sha(stream.Bytes()))
	}
	if _, err := s.Get(l.DiffID); !errors.Is(err, layers.ErrNotFound) {
		t.Errorf("a layer was stored: %v", err)
	}
	if ls, _ := s.List(); len(ls) != 0 {
		t.Errorf("layers stored: %v", ls)
	}
	added, err := s.Add(context.Background(), bytes.NewReader(stream.Bytes()), layers.Limits{})
	if err != nil || added.DiffID != l.DiffID {
		t.Errorf("Add of the stream = %+v, %v", added, err)
	}
}

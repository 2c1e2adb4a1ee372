package layers_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berth-registry/berth/runner/layers"
)

// mergeLayers returns three layers (base first) whose merged view
// mergedWant describes.
func mergeLayers() [][]ent {
	base := [][]ent{{
		dir("a/", 0o755), reg("a/f", "f1", 0o644), reg("a/g", "g1", 0o644),
		dir("b/", 0o755), reg("b/x", "x1", 0o644), dir("b/sub/", 0o755), reg("b/sub/deep", "deep", 0o644),
		reg("c", "c1", 0o644),
		dir("d/", 0o755), reg("d/old", "old", 0o644),
		reg("e", "e1", 0o644),
		dir("k/", 0o755), reg("k/kept", "kept", 0o644),
		symlink("l", "a"),
		dir("s/", 0o755), reg("s/old", "old", 0o644),
		reg("hard1", "linked", 0o644), hardlink("hard2", "hard1"),
		reg("usr/bin/su", "su", 0o4755),
	}}
	middle := []ent{
		dir("a/", 0o755), whiteout("a/.wh.f"), reg("a/g", "g2", 0o600),
		whiteout(".wh.c"),
		dir("b/", 0o711), whiteout("b/.wh..wh..opq"), reg("b/y", "y2", 0o644),
		whiteout(".wh.d"), dir("d/", 0o755), reg("d/new", "new", 0o644), // whiteout then directory: replaces
		dir("e/", 0o755), reg("e/inner", "inner", 0o644), // a directory over a file
		dir("k/", 0o755), reg("k/added", "added", 0o644), // plain merge
		dir("s/", 0o755), reg("s/new", "new", 0o644), whiteout(".wh.s"), // directory then whiteout: replaces too
		whiteout(".wh.never-existed"),
	}
	top := []ent{
		reg("c", "c3", 0o644), // back after its whiteout
		dir("a/", 0o755), whiteout("a/.wh.g"),
		symlink("k/link", "../a"),
	}
	return append(base, middle, top)
}

// checkMerged checks the merged view of mergeLayers at root.
func checkMerged(t *testing.T, root string) {
	t.Helper()
	files := map[string]string{
		"b/y": "y2", "c": "c3", "d/new": "new", "e/inner": "inner",
		"k/kept": "kept", "k/added": "added", "s/new": "new", "hard1": "linked", "hard2": "linked",
		"usr/bin/su": "su",
	}
	for p, want := range files {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", p, b, err, want)
		}
	}
	for _, p := range []string{"a/f", "a/g", "b/x", "b/sub", "d/old", "s/old", "never-existed"} {
		if _, err := os.Lstat(filepath.Join(root, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: %v; want it whited out", p, err)
		}
	}
	if got, err := os.Readlink(filepath.Join(root, "l")); err != nil || got != "a" {
		t.Errorf("l -> %q, %v", got, err)
	}
	if got, err := os.Readlink(filepath.Join(root, "k/link")); err != nil || got != "../a" {
		t.Errorf("k/link -> %q, %v", got, err)
	}
	if st := lstat(t, filepath.Join(root, "b")); st.Mode != unix.S_IFDIR|0o711 {
		t.Errorf("b mode %o, want the upper layer's 0711", st.Mode)
	}
	if st := lstat(t, filepath.Join(root, "usr/bin/su")); st.Mode != unix.S_IFREG|0o4755 {
		t.Errorf("su mode %o, want setuid kept", st.Mode)
	}
	if st := lstat(t, filepath.Join(root, "c")); st.Mtim.Sec != epoch.Unix() {
		t.Errorf("c mtime %d, want %d", st.Mtim.Sec, epoch.Unix())
	}
}

func unpackMergeLayers(t *testing.T, s *layers.Store) []layers.Layer {
	t.Helper()
	var ls []layers.Layer
	for _, ents := range mergeLayers() {
		ls = append(ls, mustUnpack(t, s, ents...))
	}
	return ls
}

// TestWhiteoutsOnDisk checks the overlayfs form of the middle layer.
func TestWhiteoutsOnDisk(t *testing.T) {
	s := newStore(t, false)
	mid := mustUnpack(t, s, mergeLayers()[1]...)
	for _, p := range []string{"a/f", "c", "never-existed"} {
		st := lstat(t, filepath.Join(mid.Dir, p))
		if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
			t.Errorf("%s: mode %o rdev %d, want a 0/0 character device", p, st.Mode, st.Rdev)
		}
	}
	for _, p := range []string{"b", "d", "s"} {
		buf := make([]byte, 8)
		n, err := unix.Lgetxattr(filepath.Join(mid.Dir, p), "trusted.overlay.opaque", buf)
		if err != nil || string(buf[:n]) != "y" {
			t.Errorf("%s: opaque xattr %q, %v; want y", p, buf[:n], err)
		}
	}
	if _, err := unix.Lgetxattr(filepath.Join(mid.Dir, "k"), "trusted.overlay.opaque", make([]byte, 8)); err == nil {
		t.Errorf("k is opaque; it only merges")
	}
	for _, p := range []string{"a/.wh.f", ".wh.c", "b/.wh..wh..opq"} {
		if exists(filepath.Join(mid.Dir, p)) {
			t.Errorf("%s: the OCI whiteout file itself was written", p)
		}
	}
}

// writableMountSetup makes a store with the merge layers unpacked, and
// empty upper, work and mount point directories; it skips the test
// without overlayfs.
func writableMountSetup(t *testing.T) (s *layers.Store, ls []layers.Layer, upper, wd, merged string) {
	t.Helper()
	s = newStore(t, false)
	if err := s.OverlaySupported(); err != nil {
		t.Skipf("overlayfs: %v", err)
	}
	ls = unpackMergeLayers(t, s)
	work := t.TempDir()
	upper, wd, merged = filepath.Join(work, "upper"), filepath.Join(work, "work"), filepath.Join(work, "merged")
	for _, d := range []string{upper, wd, merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return s, ls, upper, wd, merged
}

func TestMountOverlay(t *testing.T) {
	s, ls, upper, wd, merged := writableMountSetup(t)
	if err := s.Mount(context.Background(), ls, upper, wd, merged); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(merged, unix.MNT_DETACH) })
	checkMerged(t, merged)

	// The mount-point layer gives the container its mount points without
	// a write to upper.
	for _, d := range layers.Mountpoints {
		if st, err := os.Stat(filepath.Join(merged, d)); err != nil || !st.IsDir() || st.Mode().Perm() != 0o755 {
			t.Errorf("mount point /%s: %v, %v; want a 0755 directory", d, st, err)
		}
	}
	if ents, err := os.ReadDir(upper); err != nil || len(ents) != 0 {
		t.Errorf("upper after mounting: %v, %v; want it empty", ents, err)
	}

	// Writes land in upper, never in the shared layers.
	if err := os.WriteFile(filepath.Join(merged, "k/kept"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(merged, "b/y")); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(ls[0].Dir, "k/kept")); got != "kept" {
		t.Errorf("a write through the mount changed the stored layer: %q", got)
	}
	if !exists(filepath.Join(ls[1].Dir, "b/y")) {
		t.Errorf("a delete through the mount removed a stored file")
	}
}

// TestMountRepeatedLayer: a layer listed twice (two steps that changed
// nothing) mounts, as the view of the layers with it once at its top
// position, where overlayfs alone refuses the same lower twice.
func TestMountRepeatedLayer(t *testing.T) {
	s, ls, upper, wd, merged := writableMountSetup(t)
	twice := append(append([]layers.Layer(nil), ls...), ls[len(ls)-1])
	if err := s.Mount(context.Background(), twice, upper, wd, merged); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(merged, unix.MNT_DETACH) })
	checkMerged(t, merged)
}

// TestMountNoMountpoints: without the mount-point layer, the mount points
// a runtime makes land in upper (a build's RUN layer holds them).
func TestMountNoMountpoints(t *testing.T) {
	s, ls, upper, wd, merged := writableMountSetup(t)
	err := s.MountWith(context.Background(), ls, upper, wd, merged, layers.MountOptions{NoMountpoints: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(merged, unix.MNT_DETACH) })
	checkMerged(t, merged)
	for _, d := range layers.Mountpoints {
		if exists(filepath.Join(merged, d)) {
			t.Errorf("/%s is there: the mount got the mount-point layer", d)
		}
	}
	if err := os.Mkdir(filepath.Join(merged, "proc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if !exists(filepath.Join(upper, "proc")) {
		t.Errorf("a mount point made in the mount is not in upper")
	}
}

// TestMountVolatile: a volatile mount (a --rm container's) works like a
// writable one and is marked volatile, so that unmounting it does not sync
// the upper filesystem.
func TestMountVolatile(t *testing.T) {
	s, ls, upper, wd, merged := writableMountSetup(t)
	if err := s.MountVolatile(context.Background(), ls, "", "", merged); !errors.Is(err, layers.ErrInvalid) {
		t.Errorf("MountVolatile without an upper dir: %v, want ErrInvalid", err)
	}
	if err := s.MountVolatile(context.Background(), ls, upper, wd, merged); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(merged, unix.MNT_DETACH) })
	checkMerged(t, merged)
	if err := os.WriteFile(filepath.Join(merged, "new"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(upper, "new")); got != "x" {
		t.Errorf("upper/new = %q, want x", got)
	}
	var uts unix.Utsname
	unix.Uname(&uts)
	var major, minor int
	fmt.Sscanf(unix.ByteSliceToString(uts.Release[:]), "%d.%d", &major, &minor)
	if major > 5 || major == 5 && minor >= 10 { // volatile is Linux 5.10+
		if !exists(filepath.Join(wd, "work", "incompat", "volatile")) {
			t.Errorf("Linux %d.%d: no work/incompat/volatile: the mount is not volatile", major, minor)
		}
	}
}

func TestMountReadOnly(t *testing.T) {
	s := newStore(t, false)
	if err := s.OverlaySupported(); err != nil {
		t.Skipf("overlayfs: %v", err)
	}
	ls := unpackMergeLayers(t, s)
	merged := t.TempDir()
	if err := s.Mount(context.Background(), ls, "", "", merged); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(merged, unix.MNT_DETACH) })
	checkMerged(t, merged)
	if err := os.WriteFile(filepath.Join(merged, "new"), nil, 0o644); err == nil {
		t.Errorf("wrote to a read-only mount")
	}
	if exists(filepath.Join(merged, "proc")) {
		t.Errorf("a read-only mount (no container) got the mount-point layer")
	}
}

// TestMountManyLayers mounts more layers than mount(2)'s one-page option
// string holds with these paths.
func TestMountManyLayers(t *testing.T) {
	s := newStore(t, false)
	if err := s.OverlaySupported(); err != nil {
		t.Skipf("overlayfs: %v", err)
	}
	var ls []layers.Layer
	for i := range 60 {
		ls = append(ls, mustUnpack(t, s, reg("top", string(rune('A'+i)), 0o644), reg(string(rune('A'+i)), "x", 0o644)))
	}
	work := t.TempDir()
	upper, wd, merged := filepath.Join(work, "upper"), filepath.Join(work, "work"), filepath.Join(work, "merged")
	for _, d := range []string{upper, wd, merged} {
		os.Mkdir(d, 0o755)
	}
	err := s.Mount(context.Background(), ls, upper, wd, merged)
	if errors.Is(err, layers.ErrInvalid) {
		t.Skipf("kernel without lowerdir+: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(merged, unix.MNT_DETACH) })
	if got := readFile(t, filepath.Join(merged, "top")); got != string(rune('A'+59)) {
		t.Errorf("top = %q: layer order wrong", got)
	}
	for i := range 60 {
		if !exists(filepath.Join(merged, string(rune('A'+i)))) {
			t.Errorf("layer %d missing from the mount", i)
		}
	}
}

func TestMountInvalid(t *testing.T) {
	s := newStore(t, false)
	l := mustUnpack(t, s, reg("f", "x", 0o644))
	dir := t.TempDir()
	for name, c := range map[string]struct {
		ls          []layers.Layer
		upper, work string
	}{
		"no layers read-only": {nil, "", ""},
		"upper without work":  {[]layers.Layer{l}, dir, ""},
		"read-only one layer": {[]layers.Layer{l}, "", ""},
	} {
		if err := s.Mount(context.Background(), c.ls, c.upper, c.work, dir); !errors.Is(err, layers.ErrInvalid) {
			t.Errorf("%s: Mount = %v, want ErrInvalid", name, err)
		}
	}
	missing := layers.Layer{DiffID: sha([]byte("not stored"))}
	if err := s.Mount(context.Background(), []layers.Layer{l, missing}, "", "", dir); !errors.Is(err, layers.ErrNotFound) {
		t.Errorf("Mount of a missing layer = %v, want ErrNotFound", err)
	}
}

func TestFlatten(t *testing.T) {
	for _, walk := range []bool{false, true} {
		s := newStore(t, walk)
		ls := unpackMergeLayers(t, s)
		target := filepath.Join(t.TempDir(), "rootfs")
		if err := s.Flatten(context.Background(), ls, target); err != nil {
			t.Fatal(err)
		}
		checkMerged(t, target)
		if h1, h2 := lstat(t, filepath.Join(target, "hard1")), lstat(t, filepath.Join(target, "hard2")); h1.Ino != h2.Ino {
			t.Errorf("hardlinked files were copied apart")
		}
		// A copy, not a link into the store.
		if st, orig := lstat(t, filepath.Join(target, "k/kept")), lstat(t, filepath.Join(ls[0].Dir, "k/kept")); st.Ino == orig.Ino {
			t.Errorf("k/kept shares its inode with the stored layer")
		}
		if st := lstat(t, filepath.Join(target, "c")); st.Mode&unix.S_IFMT != unix.S_IFREG {
			t.Errorf("c mode %o", st.Mode)
		}
		for _, p := range []string{"b", "d"} {
			if _, err := unix.Lgetxattr(filepath.Join(target, p), "trusted.overlay.opaque", make([]byte, 8)); err == nil {
				t.Errorf("%s: the opaque marker was copied into the flat rootfs", p)
			}
		}
	}
}

// TestFlattenDoesNotFollowTargetSymlinks: a lower layer's symlink to the
// host, then an upper layer with a directory of that name; Flatten
// replaces the symlink and writes nothing on the host.
func TestFlattenDoesNotFollowTargetSymlinks(t *testing.T) {
	s := newStore(t, false)
	h := newSentinel(t)
	l1 := mustUnpack(t, s, symlink("evil", h.dir), symlink("file", h.file), reg("gone", "x", 0o644))
	l2 := mustUnpack(t, s, dir("evil/", 0o755), reg("evil/sentinel", "pwned", 0o644), reg("evil/planted", "pwned", 0o644),
		reg("file", "pwned", 0o644))
	l3 := mustUnpack(t, s, whiteout("evil/.wh.sentinel"))
	target := filepath.Join(t.TempDir(), "rootfs")
	if err := s.Flatten(context.Background(), []layers.Layer{l1, l2, l3}, target); err != nil {
		t.Fatal(err)
	}
	h.check(t)
	if got := readFile(t, filepath.Join(target, "evil/planted")); got != "pwned" {
		t.Errorf("evil/planted = %q", got)
	}
	if exists(filepath.Join(target, "evil/sentinel")) {
		t.Errorf("evil/sentinel survived its whiteout")
	}
}

// TestMountIDMapped mounts the layers idmapped through a user namespace
// whose root is host uid and gid 100000: the merge is the same, the
// layers' files (root's in the image) show up owned by 100000, as a
// container of such a namespace sees them owned by its root, and writes
// still go to the upper directory.
func TestMountIDMapped(t *testing.T) {
	s, ls, upper, wd, merged := writableMountSetup(t)
	holder := exec.Command("sleep", "60")
	holder.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", holder.Process.Pid))
	holder.Process.Kill()
	holder.Wait()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()

	if err := s.MountWith(context.Background(), ls, upper, wd, merged, layers.MountOptions{UserNS: ns, Volatile: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(merged, unix.MNT_DETACH) })
	checkMerged(t, merged)
	for _, p := range []string{"c", "usr/bin/su", "b", "k/link", "proc"} {
		if st := lstat(t, filepath.Join(merged, p)); st.Uid != 100000 || st.Gid != 100000 {
			t.Errorf("%s is owned by %d:%d, want 100000:100000", p, st.Uid, st.Gid)
		}
	}
	if err := os.WriteFile(filepath.Join(merged, "new"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(upper, "new")); got != "x" {
		t.Errorf("upper/new = %q, want x", got)
	}
}

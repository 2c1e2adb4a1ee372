package build

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berth-registry/berth/runner/build/dockerfile"
)

// TestCopyDirectoryDestination: a directory's contents are copied into the
// destination, which takes neither the source directory's mode nor its
// owner (a stage's 0700 directory owned by 1000 gives a 0755 root one),
// keeps its own when it exists, and takes --chmod and --chown when new.
func TestCopyDirectoryDestination(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("copying sets owners: needs root")
	}
	stage := t.TempDir()
	must(t, os.Mkdir(filepath.Join(stage, "out"), 0o700))
	must(t, os.WriteFile(filepath.Join(stage, "out", "f"), []byte("f"), 0o640))
	must(t, os.Mkdir(filepath.Join(stage, "out", "sub"), 0o710))
	must(t, os.Chmod(filepath.Join(stage, "out"), 0o700))
	must(t, os.Chown(filepath.Join(stage, "out"), 1000, 1000))
	r, err := openRoot(stage, nil, false)
	must(t, err)
	defer r.close()

	rootfs := t.TempDir()
	must(t, os.Mkdir(filepath.Join(rootfs, "existing"), 0o750))
	must(t, os.Chmod(filepath.Join(rootfs, "existing"), 0o750))
	for _, tc := range []struct {
		dest     string
		chmod    uint32
		chown    string
		mode     uint32
		uid, gid uint32
	}{
		{"/new", 0, "", 0o755, 0, 0},
		{"/existing", 0, "", 0o750, 0, 0},
		{"/existing", 0o600, "1:2", 0o750, 0, 0},
		{"/chmodded", 0o600, "", 0o600, 0, 0},
		{"/chowned", 0, "7:8", 0o755, 7, 8},
	} {
		cs := &dockerfile.CopySpec{FromStage: 0, Sources: []string{"out"}, Dest: tc.dest, Chmod: tc.chmod, Chown: tc.chown}
		must(t, copyInto(context.Background(), rootfs, r, cs, t.TempDir()))
		var st unix.Stat_t
		must(t, unix.Lstat(filepath.Join(rootfs, tc.dest), &st))
		if st.Mode&0o7777 != tc.mode || st.Uid != tc.uid || st.Gid != tc.gid {
			t.Errorf("COPY --chmod=%o --chown=%s out %s: %s is %o %d:%d, want %o %d:%d",
				tc.chmod, tc.chown, tc.dest, tc.dest, st.Mode&0o7777, st.Uid, st.Gid, tc.mode, tc.uid, tc.gid)
		}
		// What the directory holds keeps the source's metadata.
		must(t, unix.Lstat(filepath.Join(rootfs, tc.dest, "sub"), &st))
		want := uint32(0o710)
		if tc.chmod != 0 {
			want = tc.chmod
		}
		if st.Mode&0o7777 != want {
			t.Errorf("%s/sub: mode %o, want %o", tc.dest, st.Mode&0o7777, want)
		}
	}
}

package spec_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berth-registry/berth/runner/spec"
)

const testPasswd = `root:x:0:0:root:/root:/bin/sh
# a comment
app:x:1000:1000:app:/home/app:/bin/sh
+nis-entry
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
nohome:x:1500:1500:nohome::/bin/sh
`

const testGroup = `root:x:0:
users:x:100:app
app:x:1000:
wheel:x:10:other, app
appdup:x:1000:app
nogroup:x:65534:
`

// fakeRootfs makes a rootfs holding only etc/passwd and etc/group.
func fakeRootfs(t *testing.T, passwd, group string) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if passwd != "" {
		writeFile(t, filepath.Join(root, "etc", "passwd"), passwd)
	}
	if group != "" {
		writeFile(t, filepath.Join(root, "etc", "group"), group)
	}
	return root
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestResolveUser(t *testing.T) {
	root := fakeRootfs(t, testPasswd, testGroup)
	for _, tc := range []struct {
		spec    string
		want    spec.User
		wantErr error
	}{
		{spec: "", want: spec.User{UID: 0, GID: 0, Home: "/root"}},
		{spec: "root", want: spec.User{UID: 0, GID: 0, Home: "/root"}},
		// By name without a group: primary group and memberships (users,
		// wheel), not the duplicate of the primary gid.
		{spec: "app", want: spec.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{100, 10}, Home: "/home/app"}},
		// A number takes the listed user's primary group and home but no
		// memberships (image-spec: numeric users keep additionalGids alone).
		{spec: "1000", want: spec.User{UID: 1000, GID: 1000, Home: "/home/app"}},
		{spec: "1000:100", want: spec.User{UID: 1000, GID: 100, Home: "/home/app"}},
		{spec: "app:users", want: spec.User{UID: 1000, GID: 100, Home: "/home/app"}},
		{spec: "app:0", want: spec.User{UID: 1000, GID: 0, Home: "/home/app"}},
		{spec: "1000:wheel", want: spec.User{UID: 1000, GID: 10, Home: "/home/app"}},
		{spec: "4242", want: spec.User{UID: 4242, GID: 0, Home: "/"}},
		{spec: "4242:4243", want: spec.User{UID: 4242, GID: 4243, Home: "/"}},
		{spec: "nobody", want: spec.User{UID: 65534, GID: 65534, Home: "/nonexistent"}},
		{spec: "nohome", want: spec.User{UID: 1500, GID: 1500, Home: "/"}},
		{spec: "4294967294", want: spec.User{UID: 4294967294, Home: "/"}},
		{spec: "ghost", wantErr: spec.ErrUnknownUser},
		{spec: "ghost:0", wantErr: spec.ErrUnknownUser},
		{spec: "nis-entry", wantErr: spec.ErrUnknownUser},
		{spec: "app:ghosts", wantErr: spec.ErrUnknownGroup},
		{spec: "0:ghosts", wantErr: spec.ErrUnknownGroup},
		{spec: "root:", wantErr: spec.ErrInvalid},
		{spec: ":0", wantErr: spec.ErrInvalid},
		{spec: "a:b:c", wantErr: spec.ErrInvalid},
		{spec: "4294967295", wantErr: spec.ErrInvalid},
		{spec: "99999999999", wantErr: spec.ErrInvalid},
		{spec: "12ab", wantErr: spec.ErrInvalid},
		{spec: "0:-1", wantErr: spec.ErrUnknownGroup},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			got, err := spec.ResolveUser(root, tc.spec)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("ResolveUser(%q) = %+v, %v; want error %v", tc.spec, got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ResolveUser(%q): %v", tc.spec, err)
			}
			if got.UID != tc.want.UID || got.GID != tc.want.GID || got.Home != tc.want.Home || !slices.Equal(got.AdditionalGids, tc.want.AdditionalGids) {
				t.Errorf("ResolveUser(%q) = %+v, want %+v", tc.spec, got, tc.want)
			}
		})
	}
}

func TestResolveUserWithoutFiles(t *testing.T) {
	root := t.TempDir() // no etc at all
	got, err := spec.ResolveUser(root, "1000:1000")
	if err != nil || got.UID != 1000 || got.GID != 1000 || got.Home != "/" {
		t.Errorf("numeric user without /etc/passwd = %+v, %v; want 1000:1000 home /", got, err)
	}
	if got, err := spec.ResolveUser(root, ""); err != nil || got.UID != 0 || got.GID != 0 {
		t.Errorf("default user without /etc/passwd = %+v, %v; want 0:0", got, err)
	}
	if _, err := spec.ResolveUser(root, "app"); !errors.Is(err, spec.ErrUnknownUser) {
		t.Errorf("named user without /etc/passwd: %v, want ErrUnknownUser", err)
	}
	if _, err := spec.ResolveUser(root, "0:wheel"); !errors.Is(err, spec.ErrUnknownGroup) {
		t.Errorf("named group without /etc/group: %v, want ErrUnknownGroup", err)
	}
}

// TestResolveUserSymlinks: the image's /etc/passwd is read as the container
// sees it. A symlink pointing at a host path resolves inside the rootfs,
// never to the host file.
func TestResolveUserSymlinks(t *testing.T) {
	host := t.TempDir()
	hostPasswd := filepath.Join(host, "passwd")
	writeFile(t, hostPasswd, "evil:x:4444:4444:evil:/evil:/bin/sh\n")

	t.Run("absolute link to a host file", func(t *testing.T) {
		root := fakeRootfs(t, "", "")
		if err := os.Symlink(hostPasswd, filepath.Join(root, "etc", "passwd")); err != nil {
			t.Fatal(err)
		}
		if u, err := spec.ResolveUser(root, "evil"); !errors.Is(err, spec.ErrUnknownUser) {
			t.Fatalf("ResolveUser through a link to the host's file = %+v, %v; want ErrUnknownUser", u, err)
		}
		// The same path inside the rootfs is what the link means.
		writeFile(t, filepath.Join(root, hostPasswd), "evil:x:5555:5555:inside:/inside:/bin/sh\n")
		u, err := spec.ResolveUser(root, "evil")
		if err != nil || u.UID != 5555 || u.Home != "/inside" {
			t.Fatalf("ResolveUser = %+v, %v; want uid 5555 from the rootfs's own %s", u, err, hostPasswd)
		}
	})
	t.Run("relative link climbing out", func(t *testing.T) {
		root := fakeRootfs(t, "", "")
		rel, err := filepath.Rel(filepath.Join(root, "etc"), hostPasswd)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(rel, filepath.Join(root, "etc", "passwd")); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(root, "etc", "passwd")); err != nil {
			t.Fatalf("the link should reach the host file from the host: %v", err)
		}
		if u, err := spec.ResolveUser(root, "evil"); !errors.Is(err, spec.ErrUnknownUser) {
			t.Fatalf("ResolveUser through %s = %+v, %v; want ErrUnknownUser", rel, u, err)
		}
	})
	t.Run("linked etc directory", func(t *testing.T) {
		root := t.TempDir()
		if err := os.Symlink(host, filepath.Join(root, "etc")); err != nil {
			t.Fatal(err)
		}
		if u, err := spec.ResolveUser(root, "evil"); !errors.Is(err, spec.ErrUnknownUser) {
			t.Fatalf("ResolveUser through etc -> %s = %+v, %v; want ErrUnknownUser", host, u, err)
		}
	})
	t.Run("link inside the image", func(t *testing.T) {
		root := fakeRootfs(t, "", "")
		writeFile(t, filepath.Join(root, "usr", "lib", "passwd"), "app:x:1000:1000::/home/app:/bin/sh\n")
		if err := os.Symlink("/usr/lib/passwd", filepath.Join(root, "etc", "passwd")); err != nil {
			t.Fatal(err)
		}
		u, err := spec.ResolveUser(root, "app")
		if err != nil || u.UID != 1000 {
			t.Fatalf("ResolveUser through an in-image link = %+v, %v; want uid 1000", u, err)
		}
	})
	t.Run("fifo", func(t *testing.T) {
		root := fakeRootfs(t, "", "")
		if err := unix.Mkfifo(filepath.Join(root, "etc", "passwd"), 0o644); err != nil {
			t.Fatal(err)
		}
		// Must fail at once, not block waiting for a writer.
		if _, err := spec.ResolveUser(root, "app"); !errors.Is(err, spec.ErrInvalid) {
			t.Fatalf("ResolveUser with a fifo /etc/passwd: %v, want ErrInvalid", err)
		}
	})
}

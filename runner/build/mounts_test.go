package build

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/runner/build/dockerfile"
)

func TestParseSecret(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tok")
	must(t, os.WriteFile(file, []byte("s3cr3t"), 0o600))
	env := map[string]string{"TOKEN": "from-env", "tok": "env-named-id"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	for _, c := range []struct {
		in, id, val string
		err         error
	}{
		{"id=a,src=" + file, "a", "s3cr3t", nil},
		{"id=a,source=" + file, "a", "s3cr3t", nil},
		{"src=" + file, "tok", "s3cr3t", nil},
		{"id=a,env=TOKEN", "a", "from-env", nil},
		{"type=env,id=a,src=TOKEN", "a", "from-env", nil},
		{"id=tok", "tok", "env-named-id", nil}, // the environment first
		{"id=a,env=UNSET", "", "", ErrNotFound},
		{"id=a,src=" + filepath.Join(dir, "missing"), "", "", ErrNotFound},
		{"id=a,type=ssh", "", "", ErrInvalid},
		{"id=a,bogus=1", "", "", ErrInvalid},
		{"id", "", "", ErrInvalid},
		{"type=file", "", "", ErrInvalid},
	} {
		id, val, err := ParseSecret(c.in, lookup)
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("%q: err %v, want %v", c.in, err, c.err)
			}
			continue
		}
		if err != nil || id != c.id || string(val) != c.val {
			t.Errorf("%q: %q %q %v, want %q %q", c.in, id, val, err, c.id, c.val)
		}
	}
	big := filepath.Join(dir, "big")
	must(t, os.WriteFile(big, make([]byte, maxSecretSize+1), 0o600))
	if _, _, err := ParseSecret("id=b,src="+big, lookup); !errors.Is(err, ErrInvalid) {
		t.Errorf("a secret over the limit: %v", err)
	}
}

func TestRemoteName(t *testing.T) {
	for in, want := range map[string]string{
		"http://h/a/file.txt":     "file.txt",
		"http://h/a/file.txt?x=1": "file.txt",
		"http://h/":               "__unnamed__",
		"http://h":                "__unnamed__",
		"https://h/dir/":          "dir",
	} {
		if got := remoteName(in); got != want {
			t.Errorf("remoteName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRemoteFetch(t *testing.T) {
	body := "content v1"
	var gets, notModified atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gets.Add(1)
		etag := `"` + digest.FromString(body).Encoded()[:12] + `"`
		if r.Header.Get("If-None-Match") == etag {
			notModified.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		w.Header().Set("Last-Modified", "Mon, 02 Jan 2006 15:04:05 GMT")
		w.Write([]byte(body))
	}))
	defer srv.Close()
	r := &remote{dir: t.TempDir(), client: srv.Client()}
	ctx := context.Background()
	u := srv.URL + "/f.txt"

	m, err := r.fetch(ctx, u, "")
	if err != nil || m.Digest != digest.FromString(body) || m.LastModified == "" {
		t.Fatalf("first fetch: %+v %v", m, err)
	}
	// Revalidated with the ETag: the server answers 304.
	if m2, err := r.fetch(ctx, u, ""); err != nil || !reflect.DeepEqual(m2, m) || notModified.Load() != 1 {
		t.Fatalf("revalidation: %+v %v (304s: %d)", m2, err, notModified.Load())
	}
	// With the right checksum, the cached download is used unasked.
	n := gets.Load()
	if _, err := r.fetch(ctx, u, digest.FromString(body)); err != nil || gets.Load() != n {
		t.Fatalf("checksum hit: %v (requests %d -> %d)", err, n, gets.Load())
	}
	// A changed content is fetched again; a wrong checksum names the URL
	// and keeps nothing.
	body = "content v2"
	wrong := digest.FromString("something else")
	if _, err := r.fetch(ctx, u, wrong); !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), u) {
		t.Fatalf("wrong checksum: %v", err)
	}
	if c, ok := r.cached(u); !ok || c.Digest != digest.FromString("content v1") {
		t.Fatalf("after a mismatch the cache holds %+v %v, want v1", c, ok)
	}
	if m3, err := r.fetch(ctx, u, ""); err != nil || m3.Digest != digest.FromString(body) {
		t.Fatalf("changed content: %+v %v", m3, err)
	}
	if _, err := r.fetch(ctx, srv.URL+"/../missing\x00", ""); err == nil {
		t.Fatal("a bad URL fetched")
	}
}

func TestRemoteFetchStatus(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	r := &remote{dir: t.TempDir(), client: srv.Client()}
	_, err := r.fetch(context.Background(), srv.URL+"/nope", "")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "/nope") {
		t.Fatalf("404: %v", err)
	}
}

func TestMountStubs(t *testing.T) {
	root := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(root, "var"), 0o755))
	must(t, os.Symlink("/var", filepath.Join(root, "link")))
	stubs := missingPaths(root, "/var/cache/x")
	if want := []string{"var/cache/x", "var/cache"}; !reflect.DeepEqual(stubs, want) {
		t.Fatalf("missingPaths = %q, want %q", stubs, want)
	}
	if got := missingPaths(root, "/link/new"); !reflect.DeepEqual(got, []string{"link/new"}) {
		t.Fatalf("through a symlink: %q", got)
	}
	// The step made the mount points; one got a file left in it.
	must(t, os.MkdirAll(filepath.Join(root, "var", "cache", "x"), 0o755))
	removeStubs(root, stubs)
	if _, err := os.Lstat(filepath.Join(root, "var", "cache")); !os.IsNotExist(err) {
		t.Errorf("empty stubs left: %v", err)
	}
	must(t, os.MkdirAll(filepath.Join(root, "var", "cache", "x"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "var", "cache", "kept"), []byte("k"), 0o644))
	removeStubs(root, stubs)
	if _, err := os.Lstat(filepath.Join(root, "var", "cache", "x")); !os.IsNotExist(err) {
		t.Errorf("empty stub x left: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(root, "var", "cache", "kept")); err != nil {
		t.Errorf("a file the step wrote was removed: %v", err)
	}
	// A file stub is removed only while empty.
	fstubs := missingPaths(root, "/etc/token")
	must(t, os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "etc", "token"), []byte("written"), 0o644))
	removeStubs(root, fstubs)
	if _, err := os.Lstat(filepath.Join(root, "etc", "token")); err != nil {
		t.Errorf("a written file was removed: %v", err)
	}
}

// tarBz2 is a bzip2-compressed tar holding dir/inside.txt ("from
// bzip2\n", mode 0640), made with Python's tarfile and bz2.
const tarBz2 = "QlpoOTFBWSZTWTTTbwMAAHF7gMqQAIBAAf8AEAB3I95QCAggAFRGpGjQ00NMQBpjUElENADQAAB91ONQgjhQhD+Yox80DkCGA9ptpJW65iHMAUKgT62xzTsy1QcvyHZy6NM1PRFEp0Nc6NNwAIvxdyRThQkDTTbwMA=="

func TestAddBzip2Tar(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("copying sets owners: needs root")
	}
	ctxDir, rootfs := t.TempDir(), t.TempDir()
	raw, err := base64.StdEncoding.DecodeString(tarBz2)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(ctxDir, "a.tar.bz2"), raw, 0o644))
	// Not a tar inside: copied as it is.
	must(t, os.WriteFile(filepath.Join(ctxDir, "plain.bz2"), []byte("BZh91AY&SY not really"), 0o644))
	r, err := openRoot(ctxDir, nil, true)
	must(t, err)
	defer r.close()
	cs := &dockerfile.CopySpec{Add: true, FromStage: -1, Sources: []string{"a.tar.bz2", "plain.bz2"}, Dest: "/out/"}
	must(t, copyInto(context.Background(), rootfs, r, cs, t.TempDir()))
	b, err := os.ReadFile(filepath.Join(rootfs, "out", "dir", "inside.txt"))
	if err != nil || string(b) != "from bzip2\n" {
		t.Fatalf("unpacked file: %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(rootfs, "out", "a.tar.bz2")); !os.IsNotExist(err) {
		t.Errorf("the archive itself was copied: %v", err)
	}
	if _, err := os.Stat(filepath.Join(rootfs, "out", "plain.bz2")); err != nil {
		t.Errorf("a bzip2 file that is no tar was not copied: %v", err)
	}
}

package layers_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/berth-registry/berth/runner/layers"
)

// epoch is the mtime the test layers carry.
var epoch = time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)

// ent is one tar entry to build.
type ent struct {
	hdr  tar.Header
	body string
}

func reg(name, body string, mode int64) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body)), ModTime: epoch}, body: body}
}

func dir(name string, mode int64) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: epoch}}
}

func symlink(name, target string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: epoch}}
}

func hardlink(name, target string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, ModTime: epoch}}
}

// whiteout is an OCI whiteout entry: an empty regular file.
func whiteout(name string) ent { return reg(name, "", 0o644) }

// buildTar writes the entries as a PAX tar stream.
func buildTar(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := e.hdr
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %q: %v", h.Name, err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// compression is how a test blob is compressed, with the OCI media type
// that says so.
type compression struct {
	name      string
	mediaType string
	compress  func(testing.TB, []byte) []byte
}

var compressions = []compression{
	{"tar", v1.MediaTypeImageLayer, func(_ testing.TB, b []byte) []byte { return b }},
	{"gzip", v1.MediaTypeImageLayerGzip, gzipBytes},
	{"zstd", v1.MediaTypeImageLayerZstd, zstdBytes},
}

func gzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstdBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	zw, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		t.Fatal(err)
	}
	defer zw.Close()
	return zw.EncodeAll(b, nil)
}

func sha(b []byte) digest.Digest { return digest.FromBytes(b) }

// requireRoot skips a test that needs root (chown, mknod, trusted xattrs,
// mounts) when not run as root.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the layer store chowns, makes whiteout devices and sets trusted xattrs")
	}
}

// newStore opens a store in a fresh temp dir; walk selects the
// component-by-component resolver instead of openat2.
func newStore(t testing.TB, walk bool) *layers.Store {
	t.Helper()
	requireRoot(t)
	s, err := layers.Open(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	if walk {
		layers.UseWalkResolver(s)
	}
	return s
}

// unpackTar unpacks an uncompressed tar whose diff_id is its own hash.
func unpackTar(t testing.TB, s *layers.Store, tarball []byte) (layers.Layer, error) {
	t.Helper()
	return s.Unpack(context.Background(), bytes.NewReader(tarball), v1.MediaTypeImageLayer, sha(tarball), layers.Limits{})
}

func mustUnpack(t testing.TB, s *layers.Store, ents ...ent) layers.Layer {
	t.Helper()
	l, err := unpackTar(t, s, buildTar(t, ents...))
	if err != nil {
		t.Fatalf("unpack: %v", err)
	}
	return l
}

// hostSentinel is a directory outside the store holding one file the
// attacks aim at.
type hostSentinel struct {
	dir, file string
	ino       uint64
}

const sentinelBody = "host data, not to be touched\n"

func newSentinel(t *testing.T) hostSentinel {
	t.Helper()
	d := t.TempDir()
	f := filepath.Join(d, "sentinel")
	if err := os.WriteFile(f, []byte(sentinelBody), 0o644); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(f, &st); err != nil {
		t.Fatal(err)
	}
	return hostSentinel{dir: d, file: f, ino: st.Ino}
}

// check fails the test if anything about the sentinel changed: its
// content, mode, owner, inode, link count, or anything added beside it or
// set on its directory.
func (h hostSentinel) check(t *testing.T) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(h.file, &st); err != nil {
		t.Fatalf("sentinel: %v", err)
	}
	if st.Mode != unix.S_IFREG|0o644 || st.Uid != 0 || st.Gid != 0 || st.Nlink != 1 || st.Ino != h.ino {
		t.Errorf("sentinel changed: mode %o uid %d gid %d nlink %d ino %d (was %d)", st.Mode, st.Uid, st.Gid, st.Nlink, st.Ino, h.ino)
	}
	if b, _ := os.ReadFile(h.file); string(b) != sentinelBody {
		t.Errorf("sentinel content changed: %q", b)
	}
	ents, err := os.ReadDir(h.dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("sentinel directory holds %v, want only sentinel", names)
	}
	if _, err := unix.Lgetxattr(h.dir, "trusted.overlay.opaque", make([]byte, 8)); err == nil {
		t.Errorf("sentinel directory was made opaque")
	}
}

// assertNothingLeft fails if the store holds any trace of diffID or any
// unpack in progress.
func assertNothingLeft(t *testing.T, s *layers.Store, diffID digest.Digest) {
	t.Helper()
	if _, err := s.Get(diffID); !errors.Is(err, layers.ErrNotFound) {
		t.Errorf("Get after a failed unpack: %v, want ErrNotFound", err)
	}
	if _, err := os.Lstat(filepath.Join(s.Root(), "layers", diffID.Algorithm().String(), diffID.Encoded())); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("layer directory exists after a failed unpack (%v)", err)
	}
	ents, err := os.ReadDir(filepath.Join(s.Root(), "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("partial unpack left in tmp: %s", e.Name())
	}
}

// lstat is unix.Lstat or a test failure.
func lstat(t *testing.T, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat: %v", err)
	}
	return st
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

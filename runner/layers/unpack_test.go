package layers_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/berth-registry/berth/runner/layers"
)

// normalLayer exercises every kind of entry a real layer has.
func normalLayer() []ent {
	su := reg("usr/bin/su", "su binary", 0o4755)
	wall := reg("usr/bin/wall", "wall binary", 0o2755)
	wall.hdr.Gid = 5
	home := reg("home/user/notes", "notes", 0o640) // parents not in the tar
	home.hdr.Uid, home.hdr.Gid = 1000, 1001
	tagged := reg("etc/tagged", "x", 0o644)
	tagged.hdr.PAXRecords = map[string]string{
		"SCHILY.xattr.user.berth":               "kept",
		"SCHILY.xattr.trusted.overlay.redirect": "/elsewhere",
		"SCHILY.xattr.security.selinux":         "system_u:object_r:etc_t:s0",
	}
	forged := dir("forged/", 0o755)
	forged.hdr.PAXRecords = map[string]string{"SCHILY.xattr.trusted.overlay.opaque": "y"}
	return []ent{
		dir("./", 0o755),
		dir("./etc/", 0o755),
		reg("./etc/hostname", "berth\n", 0o644),
		dir("usr/", 0o755),
		dir("usr/bin/", 0o755),
		su, wall,
		hardlink("usr/bin/su-again", "usr/bin/su"),
		dir("tmp/", 0o1777),
		home,
		symlink("usr/lib64", "/lib"),
		symlink("dangling", "../../../nowhere"),
		reg("replaced", "first", 0o644),
		hardlink("replaced-link", "replaced"),
		reg("replaced-link", "second", 0o600), // replaces the link, not the file it shared
		tagged,
		forged,
	}
}

func TestUnpackNormalLayer(t *testing.T) {
	for _, c := range compressions {
		t.Run(c.name, func(t *testing.T) {
			s := newStore(t, false)
			tarball := buildTar(t, normalLayer()...)
			blob := c.compress(t, tarball)
			l, err := s.Unpack(context.Background(), bytes.NewReader(blob), c.mediaType, sha(tarball), layers.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if l.DiffID != sha(tarball) || l.Size != int64(len(tarball)) || l.Entries != len(normalLayer()) || l.Skipped != 0 || !l.Complete {
				t.Errorf("layer = %+v, want diff_id %s, size %d, %d entries", l, sha(tarball), len(tarball), len(normalLayer()))
			}
			checkNormalLayer(t, l.Dir)

			got, err := s.Get(l.DiffID)
			if err != nil || got != l {
				t.Errorf("Get = %+v, %v; want %+v", got, err, l)
			}
			if st := lstat(t, s.Root()); st.Mode&0o7777 != 0o700 {
				t.Errorf("store root mode %o, want 0700", st.Mode&0o7777)
			}
		})
	}
}

func checkNormalLayer(t *testing.T, root string) {
	t.Helper()
	p := func(name string) string { return filepath.Join(root, name) }
	for name, want := range map[string]struct {
		mode     uint32
		uid, gid uint32
	}{
		"usr/bin/su":      {unix.S_IFREG | 0o4755, 0, 0},
		"usr/bin/wall":    {unix.S_IFREG | 0o2755, 0, 5},
		"tmp":             {unix.S_IFDIR | 0o1777, 0, 0},
		"home/user/notes": {unix.S_IFREG | 0o640, 1000, 1001},
		"home/user":       {unix.S_IFDIR | 0o755, 0, 0},
		"etc/hostname":    {unix.S_IFREG | 0o644, 0, 0},
		"replaced-link":   {unix.S_IFREG | 0o600, 0, 0},
	} {
		st := lstat(t, p(name))
		if st.Mode != want.mode || st.Uid != want.uid || st.Gid != want.gid {
			t.Errorf("%s: mode %o uid %d gid %d, want %o %d %d", name, st.Mode, st.Uid, st.Gid, want.mode, want.uid, want.gid)
		}
	}
	for _, name := range []string{"usr/bin/su", "etc", "usr/bin"} {
		if st := lstat(t, p(name)); st.Mtim.Sec != epoch.Unix() {
			t.Errorf("%s: mtime %d, want %d", name, st.Mtim.Sec, epoch.Unix())
		}
	}
	if su, again := lstat(t, p("usr/bin/su")), lstat(t, p("usr/bin/su-again")); su.Ino != again.Ino || su.Nlink != 2 {
		t.Errorf("hardlink: inodes %d and %d, nlink %d", su.Ino, again.Ino, su.Nlink)
	}
	for link, want := range map[string]string{"usr/lib64": "/lib", "dangling": "../../../nowhere"} {
		if got, err := os.Readlink(p(link)); err != nil || got != want {
			t.Errorf("symlink %s -> %q, %v; want %q", link, got, err, want)
		}
	}
	if got := readFile(t, p("replaced")); got != "first" {
		t.Errorf("replaced = %q: a later entry wrote through a hardlink", got)
	}
	if got := readFile(t, p("replaced-link")); got != "second" {
		t.Errorf("replaced-link = %q", got)
	}
	buf := make([]byte, 64)
	if n, err := unix.Lgetxattr(p("etc/tagged"), "user.berth", buf); err != nil || string(buf[:n]) != "kept" {
		t.Errorf("user.berth xattr: %q, %v", buf[:n], err)
	}
	for _, x := range []struct{ path, name string }{
		{"etc/tagged", "trusted.overlay.redirect"}, {"forged", "trusted.overlay.opaque"},
	} {
		if _, err := unix.Lgetxattr(p(x.path), x.name, buf); err == nil {
			t.Errorf("%s: the layer set %s", x.path, x.name)
		}
	}
}

func TestUnpackMediaTypes(t *testing.T) {
	s := newStore(t, false)
	tarball := buildTar(t, reg("f", "data", 0o644))
	for _, c := range []struct {
		mediaType string
		blob      []byte
		ok        bool
	}{
		{layers.MediaTypeDockerLayer, gzipBytes(t, tarball), true},
		{layers.MediaTypeDockerLayerTar, tarball, true},
		{layers.MediaTypeDockerLayer, zstdBytes(t, tarball), true}, // zstd under Docker's gzip type, as seen in the wild
		{v1.MediaTypeImageLayerGzip, gzipBytes(t, tarball), true},
		{layers.MediaTypeDockerForeignLayer, gzipBytes(t, tarball), false},
		{"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", gzipBytes(t, tarball), false},
		{"application/vnd.oci.image.config.v1+json", tarball, false},
		{"application/vnd.oci.image.layer.v1.tar+bzip2", tarball, false},
		{"", tarball, false},
	} {
		t.Run(c.mediaType, func(t *testing.T) {
			defer s.Remove(sha(tarball))
			r := &countingReader{r: bytes.NewReader(c.blob)}
			_, err := s.Unpack(context.Background(), r, c.mediaType, sha(tarball), layers.Limits{})
			if c.ok && err != nil {
				t.Fatalf("Unpack: %v", err)
			}
			if !c.ok {
				if !errors.Is(err, layers.ErrUnsupportedMediaType) {
					t.Fatalf("Unpack = %v, want ErrUnsupportedMediaType", err)
				}
				if r.n.Load() != 0 {
					t.Errorf("a refused layer's blob was read")
				}
			}
		})
	}
}

func TestUnpackRefusesXZ(t *testing.T) {
	s := newStore(t, false)
	blob := append([]byte{0xfd, '7', 'z', 'X', 'Z', 0}, make([]byte, 100)...)
	_, err := s.Unpack(context.Background(), bytes.NewReader(blob), v1.MediaTypeImageLayerGzip, sha(blob), layers.Limits{})
	if !errors.Is(err, layers.ErrUnsupportedMediaType) {
		t.Fatalf("Unpack = %v, want ErrUnsupportedMediaType", err)
	}
	assertNothingLeft(t, s, sha(blob))
}

func TestUnpackInvalidDiffID(t *testing.T) {
	s := newStore(t, false)
	for _, d := range []digest.Digest{"", "sha256:../../etc", "sha256:abc", "md5:d41d8cd98f00b204e9800998ecf8427e"} {
		if _, err := s.Unpack(context.Background(), strings.NewReader(""), v1.MediaTypeImageLayer, d, layers.Limits{}); !errors.Is(err, layers.ErrInvalid) {
			t.Errorf("Unpack with diff_id %q = %v, want ErrInvalid", d, err)
		}
	}
}

type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func TestUnpackSameLayerConcurrentlyOnce(t *testing.T) {
	s := newStore(t, false)
	tarball := buildTar(t, normalLayer()...)
	blob := gzipBytes(t, tarball)
	const n = 8
	readers := make([]*countingReader, n)
	results := make([]layers.Layer, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		readers[i] = &countingReader{r: bytes.NewReader(blob)}
		wg.Go(func() {
			results[i], errs[i] = s.Unpack(context.Background(), readers[i], v1.MediaTypeImageLayerGzip, sha(tarball), layers.Limits{})
		})
	}
	wg.Wait()
	read := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Unpack %d: %v", i, errs[i])
		}
		if results[i] != results[0] {
			t.Errorf("Unpack %d = %+v, Unpack 0 = %+v", i, results[i], results[0])
		}
		if readers[i].n.Load() > 0 {
			read++
		}
	}
	if read != 1 {
		t.Errorf("%d blobs were read for one layer, want 1", read)
	}
	// Stored now: a later Unpack does not read its blob either.
	r := &countingReader{r: bytes.NewReader(blob)}
	if _, err := s.Unpack(context.Background(), r, v1.MediaTypeImageLayerGzip, sha(tarball), layers.Limits{}); err != nil || r.n.Load() != 0 {
		t.Errorf("Unpack of a stored layer: %v, read %d bytes", err, r.n.Load())
	}
	ls, err := s.List()
	if err != nil || len(ls) != 1 {
		t.Errorf("List = %v, %v; want one layer", ls, err)
	}
}

// blockingReader signals its first Read, then waits for release and fails.
type blockingReader struct {
	started chan struct{}
	release chan struct{}
	once    sync.Once
}

func (b *blockingReader) Read([]byte) (int, error) {
	b.once.Do(func() { close(b.started) })
	<-b.release
	return 0, errors.New("network gone")
}

func TestUnpackWaiterRetriesAfterLeaderFails(t *testing.T) {
	s := newStore(t, false)
	tarball := buildTar(t, reg("f", "data", 0o644))
	bad := &blockingReader{started: make(chan struct{}), release: make(chan struct{})}
	var leaderErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		_, leaderErr = s.Unpack(context.Background(), bad, v1.MediaTypeImageLayer, sha(tarball), layers.Limits{})
	})
	<-bad.started
	good := &countingReader{r: bytes.NewReader(tarball)}
	var l layers.Layer
	var err error
	wg.Go(func() {
		l, err = s.Unpack(context.Background(), good, v1.MediaTypeImageLayer, sha(tarball), layers.Limits{})
	})
	close(bad.release)
	wg.Wait()
	if leaderErr == nil || !strings.Contains(leaderErr.Error(), "network gone") {
		t.Errorf("leader: %v, want its reader's error", leaderErr)
	}
	if err != nil || l.DiffID != sha(tarball) || good.n.Load() == 0 {
		t.Errorf("waiter: %+v, %v (read %d bytes); want the layer from its own blob", l, err, good.n.Load())
	}
}

func TestUnpackAll(t *testing.T) {
	s := newStore(t, false)
	var tarballs [][]byte
	for _, body := range []string{"one", "two", "three"} {
		tarballs = append(tarballs, buildTar(t, reg(body, body, 0o644)))
	}
	mustUnpack(t, s, reg("three", "three", 0o644)) // stored already
	opens := make(map[digest.Digest]int)
	var mu sync.Mutex
	src := func(tarball []byte) layers.Source {
		return layers.Source{DiffID: sha(tarball), MediaType: v1.MediaTypeImageLayerZstd, Open: func(context.Context) (io.ReadCloser, error) {
			mu.Lock()
			opens[sha(tarball)]++
			mu.Unlock()
			return io.NopCloser(bytes.NewReader(zstdBytes(t, tarball))), nil
		}}
	}
	srcs := []layers.Source{src(tarballs[0]), src(tarballs[1]), src(tarballs[0]), src(tarballs[2])}
	got, err := s.UnpackAll(context.Background(), srcs, layers.Limits{}, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{0, 1, 0, 2} {
		if got[i].DiffID != sha(tarballs[want]) || !exists(filepath.Join(got[i].Dir, []string{"one", "two", "three"}[want])) {
			t.Errorf("layer %d = %+v, want %s", i, got[i], sha(tarballs[want]))
		}
	}
	if opens[sha(tarballs[0])] != 1 || opens[sha(tarballs[1])] != 1 || opens[sha(tarballs[2])] != 0 {
		t.Errorf("opens = %v: want each missing layer opened once, the stored one never", opens)
	}

	// A bad layer fails the whole call, names the layer, leaves nothing.
	bad := buildTar(t, reg("bad", "bad", 0o644))
	wrong := sha([]byte("not the diff_id"))
	srcs = []layers.Source{src(tarballs[0]), {DiffID: wrong, MediaType: v1.MediaTypeImageLayer, Open: func(context.Context) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(bad)), nil
	}}}
	if _, err := s.UnpackAll(context.Background(), srcs, layers.Limits{}, 0); !errors.Is(err, layers.ErrDigestMismatch) || !strings.Contains(err.Error(), "layer 1") {
		t.Errorf("UnpackAll with a bad layer = %v, want ErrDigestMismatch naming layer 1", err)
	}
	assertNothingLeft(t, s, wrong)
}

func TestListRemoveUsage(t *testing.T) {
	s := newStore(t, false)
	ctx := context.Background()
	empty, err := s.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a := mustUnpack(t, s, reg("a", strings.Repeat("a", 1<<20), 0o644))
	b := mustUnpack(t, s, reg("b", "b", 0o644), hardlink("b2", "b"))
	ls, err := s.List()
	if err != nil || len(ls) != 2 {
		t.Fatalf("List = %v, %v", ls, err)
	}
	for _, l := range ls {
		if l != a && l != b {
			t.Errorf("List has %+v", l)
		}
	}
	used, err := s.Usage(ctx)
	if err != nil || used < empty+1<<20 {
		t.Errorf("Usage = %d, %v; want at least %d", used, err, empty+1<<20)
	}
	if err := s.Remove(a.DiffID); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(a.DiffID); !errors.Is(err, layers.ErrNotFound) {
		t.Errorf("second Remove = %v, want ErrNotFound", err)
	}
	if _, err := s.Get(a.DiffID); !errors.Is(err, layers.ErrNotFound) {
		t.Errorf("Get after Remove = %v", err)
	}
	if exists(a.Dir) {
		t.Errorf("%s still exists", a.Dir)
	}
	if after, _ := s.Usage(ctx); after >= used-1<<20 {
		t.Errorf("Usage after Remove = %d, before %d", after, used)
	}
	if ls, _ := s.List(); len(ls) != 1 || ls[0] != b {
		t.Errorf("List after Remove = %v", ls)
	}
	assertNothingLeft(t, s, a.DiffID)
}

func TestOpenCleansCrashLeftovers(t *testing.T) {
	requireRoot(t)
	root := filepath.Join(t.TempDir(), "store")
	if _, err := layers.Open(root); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(root, "tmp")
	mk := func(p string) {
		if err := os.MkdirAll(filepath.Join(tmp, p), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	touch := func(p string) {
		if err := os.WriteFile(filepath.Join(tmp, p), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	mk("dead/fs/etc")
	touch("dead.lock") // nobody holds it: a crashed unpack
	mk("orphan/fs")    // no lock at all
	mk("live/fs")      // another process's unpack in progress
	touch("live.lock")
	fd, err := unix.Open(filepath.Join(tmp, "live.lock"), unix.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	// A hostile half-unpacked layer: removal must not follow its symlink.
	h := newSentinel(t)
	if err := os.Symlink(h.dir, filepath.Join(tmp, "dead/fs/escape")); err != nil {
		t.Fatal(err)
	}

	if _, err := layers.Open(root); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"dead", "dead.lock", "orphan"} {
		if exists(filepath.Join(tmp, p)) {
			t.Errorf("%s survived Open", p)
		}
	}
	for _, p := range []string{"live/fs", "live.lock"} {
		if !exists(filepath.Join(tmp, p)) {
			t.Errorf("Open removed %s, which a live process holds", p)
		}
	}
	h.check(t)
}

func TestVerifyReader(t *testing.T) {
	data := []byte("compressed blob bytes")
	for _, c := range []struct {
		name string
		d    digest.Digest
		size int64
		want error
	}{
		{"ok", sha(data), int64(len(data)), nil},
		{"ok unknown size", sha(data), -1, nil},
		{"wrong digest", sha([]byte("other")), int64(len(data)), layers.ErrDigestMismatch},
		{"short", sha(data), int64(len(data)) + 1, layers.ErrDigestMismatch},
		{"long", sha(data), int64(len(data)) - 1, layers.ErrDigestMismatch},
		{"malformed", "sha256:xyz", -1, layers.ErrInvalid},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := io.ReadAll(layers.VerifyReader(bytes.NewReader(data), c.d, c.size))
			if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Errorf("read = %v, want %v", err, c.want)
			}
		})
	}
}

func TestUnpackIgnoresUmask(t *testing.T) {
	s := newStore(t, false)
	old := unix.Umask(0o077)
	defer unix.Umask(old)
	l := mustUnpack(t, s, reg("implicit/parent/f", "x", 0o644))
	for _, p := range []string{"", "implicit", "implicit/parent"} {
		if st := lstat(t, filepath.Join(l.Dir, p)); st.Mode != unix.S_IFDIR|0o755 {
			t.Errorf("%q: mode %o, want 0755 whatever the umask", p, st.Mode)
		}
	}
	target := filepath.Join(t.TempDir(), "rootfs")
	if err := s.Flatten(context.Background(), []layers.Layer{l}, target); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"", "implicit", "implicit/parent"} {
		if st := lstat(t, filepath.Join(target, p)); st.Mode != unix.S_IFDIR|0o755 {
			t.Errorf("flattened %q: mode %o, want 0755", p, st.Mode)
		}
	}
}

func TestUnpackReplacesDamagedLayer(t *testing.T) {
	s := newStore(t, false)
	tarball := buildTar(t, reg("f", "x", 0o644))
	l := mustUnpack(t, s, reg("f", "x", 0o644))
	if err := os.Remove(filepath.Join(filepath.Dir(l.Dir), "layer.json")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(l.DiffID); !errors.Is(err, layers.ErrNotFound) {
		t.Fatalf("Get of a layer without metadata = %v, want ErrNotFound", err)
	}
	again, err := unpackTar(t, s, tarball)
	if err != nil || again != l {
		t.Fatalf("Unpack over a damaged layer = %+v, %v; want %+v", again, err, l)
	}
}

// TestTwoStoresOneRoot stands in for two processes sharing a root: each
// unpacks the same layer on its own, one rename wins, both get the layer,
// and no copy is left behind.
func TestTwoStoresOneRoot(t *testing.T) {
	a := newStore(t, false)
	b, err := layers.Open(a.Root())
	if err != nil {
		t.Fatal(err)
	}
	tarball := buildTar(t, normalLayer()...)
	var la, lb layers.Layer
	var ea, eb error
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() { la, ea = unpackTar(t, a, tarball) })
		wg.Go(func() { lb, eb = unpackTar(t, b, tarball) })
		wg.Wait()
		if ea != nil || eb != nil || la != lb {
			t.Fatalf("a: %+v, %v; b: %+v, %v", la, ea, lb, eb)
		}
		checkNormalLayer(t, la.Dir)
		if err := a.Remove(la.DiffID); err != nil {
			t.Fatal(err)
		}
	}
	assertNothingLeft(t, a, sha(tarball))
}

package push_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	specsv "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/registry"
	"github.com/berth-registry/berth/runner/image"
	"github.com/berth-registry/berth/runner/pull"
	"github.com/berth-registry/berth/runner/push"
	"github.com/berth-registry/berth/storage/inmemory"
	"github.com/berth-registry/berth/storage/store"
)

// needRoot skips t unless it runs as root: the images to push are pulled into a
// layer store, which chowns and sets trusted xattrs.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the image to push is pulled into the layer store")
	}
}

// testRegistry is Berth's own registry over in-memory storage on a loopback
// httptest server, with a log of the requests it answered and a hook that may
// answer (or break) a request instead.
type testRegistry struct {
	t    *testing.T
	srv  *httptest.Server
	Host string

	mu   sync.Mutex
	log  []served
	hook func(w http.ResponseWriter, r *http.Request, inner http.Handler) bool
}

// served is one request the registry saw: the bytes of its body the registry
// read, and its status (0 when the hook broke the connection).
type served struct {
	method, path, query, contentRange string
	status                            int
	in                                int64
}

func newTestRegistry(t *testing.T) *testRegistry {
	t.Helper()
	reg, err := registry.New(registry.Options{Store: store.New(inmemory.New(), store.Options{})})
	if err != nil {
		t.Fatal(err)
	}
	r := &testRegistry{t: t}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body := &countingBody{ReadCloser: req.Body}
		req.Body = body
		rec := &statusWriter{ResponseWriter: w}
		r.mu.Lock()
		hook := r.hook
		r.mu.Unlock()
		if hook == nil || !hook(rec, req, reg) {
			reg.ServeHTTP(rec, req)
		}
		r.mu.Lock()
		r.log = append(r.log, served{method: req.Method, path: req.URL.Path, query: req.URL.RawQuery,
			contentRange: req.Header.Get("Content-Range"), status: rec.status, in: body.n})
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	r.Host = strings.TrimPrefix(r.srv.URL, "http://")
	return r
}

// setHook installs h (nil: none).
func (r *testRegistry) setHook(h func(w http.ResponseWriter, r *http.Request, inner http.Handler) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hook = h
}

// requests returns the log since the last reset, and resets it.
func (r *testRegistry) requests() []served {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.log
	r.log = nil
	return out
}

// count is how many requests of log match method and contain pathPart.
func count(log []served, method, pathPart string) int {
	n := 0
	for _, s := range log {
		if s.method == method && strings.Contains(s.path, pathPart) {
			n++
		}
	}
	return n
}

type countingBody struct {
	io.ReadCloser
	n int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n += int64(n)
	return n, err
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// hangUp closes the client's connection without an answer.
func hangUp(t *testing.T, w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		t.Errorf("hijack: %v", err)
		return
	}
	conn.Close()
}

// ociError answers status with an OCI error envelope.
func ociError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"message":%q}]}`, code, message)
}

// upload puts blob b into repo with one POST ?digest=.
func (r *testRegistry) upload(repo string, b []byte) ocispec.Descriptor {
	r.t.Helper()
	d := digest.FromBytes(b)
	resp, err := http.Post(fmt.Sprintf("%s/v2/%s/blobs/uploads/?digest=%s", r.srv.URL, repo, d), "application/octet-stream", bytes.NewReader(b))
	if err != nil {
		r.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		r.t.Fatalf("upload %s: %s", d, resp.Status)
	}
	return ocispec.Descriptor{Digest: d, Size: int64(len(b))}
}

// get returns the body of GET path on the registry, failing t unless 200.
func (r *testRegistry) get(path string) []byte {
	r.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, r.srv.URL+path, nil)
	req.Header.Set("Accept", ocispec.MediaTypeImageManifest)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		r.t.Fatalf("GET %s: %s", path, resp.Status)
	}
	return b
}

// testImage is an image put into a registry: its manifest and blobs.
type testImage struct {
	manifest []byte
	digest   digest.Digest
	blobs    map[digest.Digest][]byte // config and layers
	layers   []digest.Digest
}

// layer returns a gzipped tar holding one file of n random bytes, and its diff_id.
func layer(t *testing.T, seed uint64, n int) ([]byte, digest.Digest) {
	t.Helper()
	data := make([]byte, n)
	rng := rand.NewChaCha8([32]byte{byte(seed)})
	rng.Read(data)
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("file%d", seed), Mode: 0o644, Size: int64(n), ModTime: time.Unix(1700000000, 0)})
	tw.Write(data)
	tw.Close()
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.NoCompression) // random bytes do not compress anyway
	zw.Write(raw.Bytes())
	zw.Close()
	return gz.Bytes(), digest.FromBytes(raw.Bytes())
}

// putImage puts an image of layers of the given sizes into repo:tag.
func (r *testRegistry) putImage(repo, tag string, seed uint64, sizes ...int) testImage {
	r.t.Helper()
	return r.putPlatformImage(repo, tag, "amd64", seed, sizes...)
}

// putPlatformImage puts an image for linux/arch into repo:tag ("": by digest).
func (r *testRegistry) putPlatformImage(repo, tag, arch string, seed uint64, sizes ...int) testImage {
	r.t.Helper()
	img := testImage{blobs: map[digest.Digest][]byte{}}
	cfg := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: arch}, RootFS: ocispec.RootFS{Type: "layers"}}
	m := ocispec.Manifest{Versioned: specsv.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest}
	for i, n := range sizes {
		b, diffID := layer(r.t, seed*100+uint64(i), n)
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, diffID)
		d := r.upload(repo, b)
		d.MediaType = ocispec.MediaTypeImageLayerGzip
		m.Layers = append(m.Layers, d)
		img.blobs[d.Digest] = b
		img.layers = append(img.layers, d.Digest)
	}
	cb, _ := json.Marshal(cfg)
	m.Config = r.upload(repo, cb)
	m.Config.MediaType = ocispec.MediaTypeImageConfig
	img.blobs[m.Config.Digest] = cb
	img.manifest, _ = json.MarshalIndent(m, "", "   ") // not how push would write it: its bytes must travel as they are
	img.digest = digest.FromBytes(img.manifest)
	if tag == "" {
		tag = img.digest.String()
	}
	r.putManifest(repo, tag, ocispec.MediaTypeImageManifest, img.manifest)
	return img
}

// putManifest puts manifest b into repo:ref; the request log starts after it.
func (r *testRegistry) putManifest(repo, ref, mediaType string, b []byte) {
	r.t.Helper()
	req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("%s/v2/%s/manifests/%s", r.srv.URL, repo, ref), bytes.NewReader(b))
	req.Header.Set("Content-Type", mediaType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		r.t.Fatalf("put manifest: %s", resp.Status)
	}
	r.requests() // the log starts after the setup
}

// putIndex puts an image per architecture (linux) and an index of them into
// repo:tag; it returns the index (manifest and digest) and the images by
// architecture.
func (r *testRegistry) putIndex(repo, tag string, seed uint64, archs ...string) (testImage, map[string]testImage) {
	r.t.Helper()
	idx := ocispec.Index{Versioned: specsv.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	imgs := map[string]testImage{}
	for i, arch := range archs {
		img := r.putPlatformImage(repo, "", arch, seed*10+uint64(i), 2000, 300<<10)
		imgs[arch] = img
		idx.Manifests = append(idx.Manifests, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: img.digest,
			Size: int64(len(img.manifest)), Platform: &ocispec.Platform{OS: "linux", Architecture: arch}})
	}
	b, _ := json.MarshalIndent(idx, "", "  ")
	r.putManifest(repo, tag, ocispec.MediaTypeImageIndex, b)
	return testImage{manifest: b, digest: digest.FromBytes(b)}, imgs
}

// otherArch is an architecture that is not the host's.
func otherArch() string {
	if pull.HostPlatform().Architecture == "s390x" {
		return "ppc64le"
	}
	return "s390x"
}

// pulled returns a store holding ref, pulled anonymously.
func pulled(t *testing.T, ref string) *image.Store {
	t.Helper()
	return pulledWith(t, ref, false)
}

// pulledWith is pulled, with every platform of an index when all is true.
func pulledWith(t *testing.T, ref string, all bool) *image.Store {
	t.Helper()
	needRoot(t)
	s, err := image.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := t.TempDir() + "/config.json"
	if err := os.WriteFile(cfg, []byte(`{"auths":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(t.Context(), ref, image.PullOptions{DockerConfig: cfg, AllPlatforms: all}); err != nil {
		t.Fatal(err)
	}
	return s
}

// testClient is an anonymous client that retries without waiting long.
func testClient() *pull.Client {
	return pull.NewClient(pull.ClientOptions{Backoff: func(int) time.Duration { return time.Millisecond }})
}

// small upload limits, so that the tests' layers of a few MiB are chunked.
var smallOpts = push.Options{MonolithicMax: 1 << 20, ChunkSize: 512 << 10}

// events records a push's events.
type events struct {
	mu  sync.Mutex
	all []push.Event
}

func (e *events) Update(ev push.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, ev)
}

func (e *events) kinds(k push.EventKind) []push.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []push.Event
	for _, ev := range e.all {
		if ev.Kind == k {
			out = append(out, ev)
		}
	}
	return out
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

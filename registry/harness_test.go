package registry_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/berth-registry/berth/registry"
	"github.com/berth-registry/berth/storage"
	"github.com/berth-registry/berth/storage/inmemory"
	"github.com/berth-registry/berth/storage/store"
)

// env is a registry served over HTTP on an in-memory driver.
type env struct {
	t       *testing.T
	driver  storage.Driver
	srv     *httptest.Server
	reg     *registry.Registry
	metrics *prometheus.Registry
	logs    *lockedBuffer // the registry's log, JSON lines
}

// envOption changes the options the registry and its store are made with.
type envOption func(*registry.Options, *store.Options)

func withDeletes(o *registry.Options, _ *store.Options)   { o.DeleteEnabled = true }
func withMetrics(o *registry.Options, _ *store.Options)   { o.Metrics = prometheus.NewRegistry() }
func withAccessLog(o *registry.Options, _ *store.Options) { o.AccessLog = true }
func withSparse(_ *registry.Options, o *store.Options)    { o.SparseManifests = true }

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	return newEnvOn(t, inmemory.New(), opts...)
}

// newEnvOn builds a fresh Store and Registry over d, as a restarted process would.
func newEnvOn(t *testing.T, d storage.Driver, opts ...envOption) *env {
	t.Helper()
	logs := &lockedBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	o := registry.Options{Logger: logger}
	so := store.Options{Logger: logger}
	for _, f := range opts {
		f(&o, &so)
	}
	o.Store = store.New(d, so)
	reg, err := registry.New(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg)
	t.Cleanup(srv.Close)
	return &env{t: t, driver: d, srv: srv, reg: reg, metrics: o.Metrics, logs: logs}
}

// lockedBuffer is a log sink safe for the server's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// req is one raw HTTP request. path is sent exactly as written (no
// cleaning, no escaping), query included.
type req struct {
	method string
	path   string
	header map[string]string
	body   io.Reader // nil: no body
}

// resp is what came back.
type resp struct {
	status int
	header http.Header
	body   []byte
}

func (e *env) do(r req) resp {
	e.t.Helper()
	hr, err := http.NewRequest(r.method, e.srv.URL, r.body)
	if err != nil {
		e.t.Fatal(err)
	}
	p, q, _ := strings.Cut(r.path, "?")
	hr.URL.Opaque = p
	hr.URL.RawQuery = q
	for k, v := range r.header {
		if k == "Content-Length" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				e.t.Fatal(err)
			}
			hr.ContentLength = n
			continue
		}
		hr.Header.Set(k, v)
	}
	res, err := http.DefaultTransport.RoundTrip(hr)
	if err != nil {
		e.t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatalf("%s %s: reading body: %v", r.method, r.path, err)
	}
	if got := res.Header.Get("Docker-Distribution-API-Version"); got != "registry/2.0" {
		e.t.Errorf("%s %s: Docker-Distribution-API-Version = %q", r.method, r.path, got)
	}
	return resp{status: res.StatusCode, header: res.Header, body: body}
}

func (e *env) get(path string) resp  { e.t.Helper(); return e.do(req{method: "GET", path: path}) }
func (e *env) head(path string) resp { e.t.Helper(); return e.do(req{method: "HEAD", path: path}) }

// ociError decodes an error envelope and returns its first code.
func ociError(t *testing.T, r resp) string {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type = %q, want application/json", ct)
	}
	var env struct {
		Errors []struct {
			Code    string          `json:"code"`
			Message string          `json:"message"`
			Detail  json.RawMessage `json:"detail"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(r.body, &env); err != nil || len(env.Errors) == 0 {
		t.Fatalf("body %q is not an OCI error envelope (%v)", r.body, err)
	}
	if env.Errors[0].Message == "" {
		t.Errorf("error %s has no message", env.Errors[0].Code)
	}
	// Clients print the code's text first (docker: "manifest unknown: "):
	// the message must not say it again.
	codeText := strings.ToLower(strings.ReplaceAll(env.Errors[0].Code, "_", " "))
	if m := strings.ToLower(env.Errors[0].Message); strings.HasPrefix(m, codeText+":") {
		t.Errorf("error %s repeats its code's text: %q", env.Errors[0].Code, env.Errors[0].Message)
	}
	return env.Errors[0].Code
}

// wantError checks status and OCI code (code "" for HEAD, which has no body).
func wantError(t *testing.T, r resp, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d (body %.300q)", r.status, status, r.body)
	}
	if code == "" {
		return
	}
	if got := ociError(t, r); got != code {
		t.Errorf("code %s, want %s (body %s)", got, code, r.body)
	}
}

func wantStatus(t *testing.T, r resp, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d (body %.300q)", r.status, status, r.body)
	}
}

// snapshot is everything the driver holds: path -> hash of content ("dir" for directories).
type snapshot map[string]string

func (e *env) snapshot() snapshot {
	e.t.Helper()
	return snapshotOf(e.t, e.driver)
}

func snapshotOf(t *testing.T, d storage.Driver) snapshot {
	t.Helper()
	ctx := context.Background()
	s := snapshot{}
	err := d.Walk(ctx, "/", func(fi storage.FileInfo) error {
		if fi.IsDir {
			s[fi.Path] = "dir"
			return nil
		}
		b, err := storage.ReadAll(ctx, d, fi.Path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		s[fi.Path] = hex.EncodeToString(sum[:])
		return nil
	})
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		t.Fatal(err)
	}
	return s
}

// diff describes how b differs from a, "" if not at all.
func (a snapshot) diff(b snapshot) string {
	var out []string
	for p, h := range b {
		if a[p] != h {
			out = append(out, "wrote "+p)
		}
	}
	for p := range a {
		if _, ok := b[p]; !ok {
			out = append(out, "removed "+p)
		}
	}
	return strings.Join(out, "; ")
}

// blob is test content with its digest.
type blob struct {
	data   []byte
	digest digest.Digest
}

func newBlob(data []byte) blob { return blob{data: data, digest: digest.FromBytes(data)} }

func randomBlob(seed uint64, n int) blob {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return newBlob(b)
}

func (b blob) desc(mediaType string) v1.Descriptor {
	return v1.Descriptor{MediaType: mediaType, Digest: b.digest, Size: int64(len(b.data))}
}

// pushBlob uploads b to repo monolithically.
func (e *env) pushBlob(repo string, b blob) {
	e.t.Helper()
	r := e.do(req{method: "POST", path: "/v2/" + repo + "/blobs/uploads/?digest=" + b.digest.String(), body: bytes.NewReader(b.data)})
	if r.status != http.StatusCreated {
		e.t.Fatalf("pushing blob %s to %s: %d %s", b.digest, repo, r.status, r.body)
	}
}

// pushManifest PUTs body to repo under ref and returns the response.
func (e *env) pushManifest(repo, ref, mediaType string, body []byte) resp {
	e.t.Helper()
	return e.do(req{method: "PUT", path: "/v2/" + repo + "/manifests/" + ref,
		header: map[string]string{"Content-Type": mediaType}, body: bytes.NewReader(body)})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const configType = "application/vnd.oci.image.config.v1+json"
const layerType = "application/vnd.oci.image.layer.v1.tar+gzip"

// image is a pushed image: config, layer and manifest.
type image struct {
	config, layer blob
	manifest      blob
}

// imageManifest builds an OCI image manifest over config and layers.
func imageManifest(t *testing.T, config blob, subject *v1.Descriptor, artifactType string, layers ...blob) blob {
	t.Helper()
	m := v1.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    v1.MediaTypeImageManifest,
		ArtifactType: artifactType,
		Config:       config.desc(configType),
		Layers:       []v1.Descriptor{},
		Subject:      subject,
	}
	for _, l := range layers {
		m.Layers = append(m.Layers, l.desc(layerType))
	}
	return newBlob(mustJSON(t, m))
}

// pushImage pushes a config, a layer and a manifest tagged tag (by digest if tag is "").
func (e *env) pushImage(repo, tag string, seed uint64) image {
	e.t.Helper()
	img := image{config: newBlob([]byte(`{"architecture":"amd64","os":"linux","seed":` + strconv.FormatUint(seed, 10) + `}`)),
		layer: randomBlob(seed, 1000)}
	img.manifest = imageManifest(e.t, img.config, nil, "", img.layer)
	e.pushBlob(repo, img.config)
	e.pushBlob(repo, img.layer)
	ref := tag
	if ref == "" {
		ref = img.manifest.digest.String()
	}
	if r := e.pushManifest(repo, ref, v1.MediaTypeImageManifest, img.manifest.data); r.status != http.StatusCreated {
		e.t.Fatalf("pushing manifest to %s:%s: %d %s", repo, ref, r.status, r.body)
	}
	return img
}

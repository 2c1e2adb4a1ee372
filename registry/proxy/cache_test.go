package proxy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/berth-registry/berth/manifest"
	"github.com/berth-registry/berth/registry"
	"github.com/berth-registry/berth/registry/proxy"
	"github.com/berth-registry/berth/storage"
	"github.com/berth-registry/berth/storage/inmemory"
	"github.com/berth-registry/berth/storage/store"
)

// The cache end to end in one process: an upstream registry (registry.New
// over an in-memory store, behind httptest) and a mirror registry with a
// proxy.Cache over another in-memory store, talked to with raw HTTP.

const prefix = "up.test" // the prefix the mirror serves the upstream under

// agedDriver is an in-memory driver whose files can be made to look older
// than they are: Stat reports the ModTime of a path containing one of the
// aged substrings that much earlier, as if storage's clock had run on. It
// stands in for time passing (tag freshness, stale claims) without waiting.
//
// It also counts the Stats of each path, each followed by a signal on
// statted, so that a test can see a request get somewhere (waitStats).
type agedDriver struct {
	*inmemory.Driver
	mu    sync.Mutex
	age   map[string]time.Duration
	stats map[string]int64

	statted chan struct{} // buffered: a signal after each Stat
}

func newAgedDriver() *agedDriver {
	return &agedDriver{Driver: inmemory.New(), age: map[string]time.Duration{}, stats: map[string]int64{},
		statted: make(chan struct{}, 1)}
}

// statCount returns how many Stats were of paths containing sub.
func (a *agedDriver) statCount(sub string) int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	var n int64
	for p, c := range a.stats {
		if strings.Contains(p, sub) {
			n += c
		}
	}
	return n
}

// waitStats returns once n Stats of paths containing sub were made, or
// fails t if done (a request's end) comes first.
func (a *agedDriver) waitStats(t *testing.T, sub string, n int64, done <-chan response) {
	t.Helper()
	for a.statCount(sub) < n {
		select {
		case <-a.statted:
		case r := <-done:
			t.Fatalf("the request ended (status %d, %s) before it reached %d Stats of %s", r.status, r.body, n, sub)
		}
	}
}

// setAge makes the files whose path contains sub look older by d (0: as
// they are).
func (a *agedDriver) setAge(sub string, d time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if d == 0 {
		delete(a.age, sub)
		return
	}
	a.age[sub] = d
}

func (a *agedDriver) Stat(ctx context.Context, p string) (storage.FileInfo, error) {
	fi, err := a.Driver.Stat(ctx, p)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stats[p]++
	select {
	case a.statted <- struct{}{}:
	default:
	}
	for sub, d := range a.age {
		if strings.Contains(p, sub) {
			fi.ModTime = fi.ModTime.Add(-d)
		}
	}
	return fi, err
}

// upstreamServer is the upstream registry, with a count of the requests
// it received and an optional interceptor that answers in its place.
type upstreamServer struct {
	*httptest.Server
	store *store.Store

	mu        sync.Mutex
	requests  map[string]int // "METHOD path"
	intercept func(w http.ResponseWriter, r *http.Request) bool
}

func newUpstreamServer(t *testing.T) *upstreamServer {
	t.Helper()
	st := store.New(inmemory.New(), store.Options{Logger: discard})
	reg, err := registry.New(registry.Options{Store: st, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	u := &upstreamServer{store: st, requests: map[string]int{}}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.requests[r.Method+" "+r.URL.Path]++
		f := u.intercept
		u.mu.Unlock()
		if f != nil && f(w, r) {
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

// count returns how many method requests for path the upstream received.
func (u *upstreamServer) count(method, path string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.requests[method+" "+path]
}

func (u *upstreamServer) setIntercept(f func(w http.ResponseWriter, r *http.Request) bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.intercept = f
}

// host is the upstream's host:port.
func (u *upstreamServer) host() string { return strings.TrimPrefix(u.URL, "http://") }

var discard = slog.New(slog.DiscardHandler)

// mirrorServer is the mirror registry and its cache.
type mirrorServer struct {
	*httptest.Server
	store   *store.Store
	driver  *agedDriver
	logs    *lockedBuffer
	metrics *prometheus.Registry
}

// requests returns berth_proxy_requests_total of kind and result.
func (m *mirrorServer) requests(t *testing.T, kind, result string) float64 {
	t.Helper()
	mfs, err := m.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "berth_proxy_requests_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range mt.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["kind"] == kind && labels["result"] == result {
				n += mt.GetCounter().GetValue()
			}
		}
	}
	return n
}

// newMirror starts a mirror of upstream URL under prefix; change edits
// the upstream's settings.
func newMirror(t *testing.T, upstreamURL string, change func(*proxy.Upstream)) *mirrorServer {
	t.Helper()
	d := newAgedDriver()
	logs := &lockedBuffer{wrote: make(chan struct{}, 1)}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	st := store.New(d, store.Options{Logger: logger})
	u := proxy.Upstream{Name: "up", URL: upstreamURL, Prefix: prefix, TagFreshness: time.Hour}
	if change != nil {
		change(&u)
	}
	metrics := prometheus.NewRegistry()
	c, err := proxy.New(proxy.Options{Store: st, Upstreams: []proxy.Upstream{u}, Logger: logger, Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(registry.Options{Store: st, Logger: logger, AccessLog: true, Cache: c})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg)
	t.Cleanup(srv.Close)
	return &mirrorServer{Server: srv, store: st, driver: d, logs: logs, metrics: metrics}
}

// lockedBuffer is a log sink safe for the servers' goroutines.
type lockedBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	wrote chan struct{} // buffered: a signal after each write
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case b.wrote <- struct{}{}:
	default:
	}
	return b.buf.Write(p)
}

// waitAccessLog returns the access log lines of route once there are at
// least n: a request is logged once its handler has returned, after the
// client may have read the whole response.
func (m *mirrorServer) waitAccessLog(t *testing.T, route string, n int) []map[string]any {
	t.Helper()
	for {
		if l := m.accessLog(t, route); len(l) >= n {
			return l
		}
		<-m.logs.wrote
	}
}

// accessLog returns the mirror's access log lines (JSON) for requests of
// route.
func (m *mirrorServer) accessLog(t *testing.T, route string) []map[string]any {
	t.Helper()
	m.logs.mu.Lock()
	defer m.logs.mu.Unlock()
	var out []map[string]any
	for line := range strings.SplitSeq(m.logs.buf.String(), "\n") {
		if line == "" {
			continue
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if v["msg"] == "request" && v["route"] == route {
			out = append(out, v)
		}
	}
	return out
}

// image is an image pushed to the upstream.
type image struct {
	config, layer []byte
	body          []byte
	digest        digest.Digest
}

const (
	dockerConfig = "application/vnd.docker.container.image.v1+json"
	dockerLayer  = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// pushImage stores a Docker image with a random layer of layerSize bytes
// in the upstream's repo under tag.
func pushImage(t *testing.T, u *upstreamServer, repo, tag string, layerSize int) image {
	t.Helper()
	ctx := t.Context()
	img := image{config: fmt.Appendf(nil, `{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"nonce":%q}`, rand.Text()),
		layer: randomBytes(layerSize)}
	desc := func(mt string, b []byte) map[string]any {
		return map[string]any{"mediaType": mt, "digest": digest.FromBytes(b), "size": len(b)}
	}
	body, err := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": manifest.MediaTypeDockerManifest,
		"config": desc(dockerConfig, img.config), "layers": []any{desc(dockerLayer, img.layer)},
	})
	if err != nil {
		t.Fatal(err)
	}
	img.body, img.digest = body, digest.FromBytes(body)
	for _, b := range [][]byte{img.config, img.layer} {
		if _, err := u.store.PutBlob(ctx, repo, bytes.NewReader(b), digest.FromBytes(b)); err != nil {
			t.Fatal(err)
		}
	}
	var tags []string
	if tag != "" {
		tags = []string{tag}
	}
	if _, err := u.store.PutManifest(ctx, repo, tags, img.digest, manifest.MediaTypeDockerManifest, body); err != nil {
		t.Fatal(err)
	}
	return img
}

type response struct {
	status int
	header http.Header
	body   []byte
	err    error // reading the body
}

func do(t *testing.T, method, u string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", strings.Join([]string{manifest.MediaTypeOCIManifest, manifest.MediaTypeDockerManifest}, ", "))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: body, err: err}
}

// wantBody fails t unless r is a 200 whose body is want.
func wantBody(t *testing.T, what string, r response, want []byte) {
	t.Helper()
	if r.err != nil || r.status != http.StatusOK || !bytes.Equal(r.body, want) {
		t.Fatalf("%s: status %d, %d bytes (digest %s), error %v; want 200 and %d bytes (%s)",
			what, r.status, len(r.body), digest.FromBytes(r.body), r.err, len(want), digest.FromBytes(want))
	}
}

// wantError fails t unless r is an OCI error with status and code; it
// returns the error's message.
func wantError(t *testing.T, what string, r response, status int, code string) string {
	t.Helper()
	var env struct {
		Errors []struct{ Code, Message string }
	}
	if r.status != status {
		t.Fatalf("%s: status %d, want %d: %s", what, r.status, status, r.body)
	}
	if err := json.Unmarshal(r.body, &env); err != nil || len(env.Errors) == 0 {
		t.Fatalf("%s: body %q is not an OCI error (%v)", what, r.body, err)
	}
	if env.Errors[0].Code != code {
		t.Fatalf("%s: code %s, want %s: %s", what, env.Errors[0].Code, code, r.body)
	}
	return env.Errors[0].Message
}

func TestResolve(t *testing.T) {
	c, err := proxy.New(proxy.Options{
		Store: store.New(inmemory.New(), store.Options{}),
		Upstreams: []proxy.Upstream{
			{Name: "hub", URL: "https://registry-1.docker.io", Prefix: "docker.io"},
			{Name: "ghcr", URL: "https://ghcr.io", Prefix: "ghcr.io", Include: []string{"org/**"}, Exclude: []string{"org/secret"}},
			{Name: "team", URL: "http://registry.example:5000", Prefix: "mirror/team"},
		},
		Logger: discard,
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, ns         string
		repo, remote, up string // repo "": a local repository
		err              error
	}{
		// Path prefixes.
		{name: "docker.io/nginx", repo: "docker.io/library/nginx", remote: "library/nginx", up: "hub"},
		{name: "docker.io/library/nginx", repo: "docker.io/library/nginx", remote: "library/nginx", up: "hub"},
		{name: "docker.io/bitnami/redis", repo: "docker.io/bitnami/redis", remote: "bitnami/redis", up: "hub"},
		{name: "ghcr.io/org/app", repo: "ghcr.io/org/app", remote: "org/app", up: "ghcr"},
		{name: "mirror/team/app", repo: "mirror/team/app", remote: "app", up: "team"},
		// containerd's ?ns=, by prefix, by Docker Hub's host names, by host:port.
		{name: "library/nginx", ns: "docker.io", repo: "docker.io/library/nginx", remote: "library/nginx", up: "hub"},
		{name: "nginx", ns: "docker.io", repo: "docker.io/library/nginx", remote: "library/nginx", up: "hub"},
		{name: "library/nginx", ns: "registry-1.docker.io", repo: "docker.io/library/nginx", remote: "library/nginx", up: "hub"},
		{name: "library/nginx", ns: "index.docker.io", repo: "docker.io/library/nginx", remote: "library/nginx", up: "hub"},
		{name: "library/nginx", ns: "Docker.IO", repo: "docker.io/library/nginx", remote: "library/nginx", up: "hub"},
		{name: "org/app", ns: "ghcr.io", repo: "ghcr.io/org/app", remote: "org/app", up: "ghcr"},
		{name: "app", ns: "registry.example:5000", repo: "mirror/team/app", remote: "app", up: "team"},
		{name: "app", ns: "mirror/team", repo: "mirror/team/app", remote: "app", up: "team"},
		// Only docker.io puts one-component names under library/.
		{name: "app", ns: "ghcr.io", repo: "ghcr.io/app", err: proxy.ErrNotMirrored},
		// Include and exclude.
		{name: "ghcr.io/other/app", err: proxy.ErrNotMirrored},
		{name: "ghcr.io/org/secret", err: proxy.ErrNotMirrored},
		{name: "other/app", ns: "ghcr.io", err: proxy.ErrNotMirrored},
		// Local: no prefix, an ns naming no upstream (a mirror entry for
		// Berth itself), a name that only starts like a prefix.
		{name: "team/app"},
		{name: "team/app", ns: "quay.io"},
		{name: "team/app", ns: "registry.example:5001"},
		{name: "team/app", ns: "registry.example"},
		{name: "docker.iox/nginx"},
		{name: "mirror/teamx/app"},
	}
	for _, tt := range tests {
		got, err := c.Resolve(tt.name, tt.ns)
		what := fmt.Sprintf("Resolve(%q, ns %q)", tt.name, tt.ns)
		switch {
		case tt.err != nil:
			if !errors.Is(err, tt.err) || got != nil {
				t.Errorf("%s = %+v, %v; want %v", what, got, err, tt.err)
			}
		case err != nil:
			t.Errorf("%s: %v", what, err)
		case tt.repo == "":
			if got != nil {
				t.Errorf("%s = %s from %s; want a local repository", what, got.Repo, got.Upstream())
			}
		case got == nil:
			t.Errorf("%s: local; want %s from %s", what, tt.repo, tt.up)
		case got.Repo != tt.repo || got.Remote != tt.remote || got.Upstream() != tt.up:
			t.Errorf("%s = repo %s, remote %s, upstream %s; want %s, %s, %s", what, got.Repo, got.Remote, got.Upstream(), tt.repo, tt.remote, tt.up)
		}
	}

	// A name that the mapping makes too long is invalid, not local.
	long := strings.Repeat("a", 250)
	if got, err := c.Resolve(long, "docker.io"); !errors.Is(err, manifest.ErrNameInvalid) {
		t.Errorf("Resolve of a %d-byte name with ns docker.io = %v, %v; want ErrNameInvalid", len(long), got, err)
	}

	// Without upstreams there is no cache, and a nil cache caches nothing.
	none, err := proxy.New(proxy.Options{})
	if err != nil || none != nil {
		t.Fatalf("New without upstreams = %v, %v; want nil, nil", none, err)
	}
	if got, err := none.Resolve("docker.io/nginx", "docker.io"); got != nil || err != nil {
		t.Errorf("nil Cache: Resolve = %v, %v; want nil, nil", got, err)
	}
}

func TestManifestByTagThenDigest(t *testing.T) {
	up := newUpstreamServer(t)
	img := pushImage(t, up, "team/app", "v1", 64<<10)
	m := newMirror(t, up.URL, nil)
	tagPath := "/v2/team/app/manifests/v1"

	r := do(t, http.MethodGet, m.URL+"/v2/"+prefix+"/team/app/manifests/v1")
	wantBody(t, "GET by tag", r, img.body)
	if got := r.header.Get("Content-Type"); got != manifest.MediaTypeDockerManifest {
		t.Errorf("GET by tag: Content-Type %q, want the upstream's %s", got, manifest.MediaTypeDockerManifest)
	}
	if got := r.header.Get("Docker-Content-Digest"); got != img.digest.String() {
		t.Errorf("GET by tag: Docker-Content-Digest %q, want %s", got, img.digest)
	}
	if n := up.count(http.MethodGet, tagPath); n != 1 {
		t.Fatalf("upstream GETs of the tag: %d, want 1", n)
	}

	// By digest, under either name: the cache has it, the upstream is not
	// asked.
	for _, u := range []string{
		m.URL + "/v2/" + prefix + "/team/app/manifests/" + img.digest.String(),
		m.URL + "/v2/team/app/manifests/" + img.digest.String() + "?ns=" + prefix,
		m.URL + "/v2/team/app/manifests/" + img.digest.String() + "?ns=" + url.QueryEscape(up.host()),
	} {
		wantBody(t, "GET "+u, do(t, http.MethodGet, u), img.body)
	}
	if n := up.count(http.MethodGet, "/v2/team/app/manifests/"+img.digest.String()); n != 0 {
		t.Errorf("upstream GETs of the cached digest: %d, want 0", n)
	}
	// The tag again, fresh: no upstream request at all.
	wantBody(t, "GET by tag again", do(t, http.MethodGet, m.URL+"/v2/"+prefix+"/team/app/manifests/v1"), img.body)
	if n, h := up.count(http.MethodGet, tagPath), up.count(http.MethodHead, tagPath); n != 1 || h != 0 {
		t.Errorf("upstream requests of the fresh tag: %d GET, %d HEAD; want 1, 0", n, h)
	}
	results := []string{}
	for _, l := range m.waitAccessLog(t, "/v2/{name}/manifests/{reference}", 5) {
		results = append(results, fmt.Sprint(l["cache"]))
		if l["upstream"] != "up" || l["repository"] != prefix+"/team/app" {
			t.Errorf("access log: upstream %v, repository %v; want up, %s/team/app", l["upstream"], l["repository"], prefix)
		}
	}
	if got := strings.Join(results, " "); got != "miss hit hit hit hit" {
		t.Errorf("access log cache results: %s, want miss hit hit hit hit", got)
	}

	// A digest never cached is fetched by digest, and then kept.
	other := pushImage(t, up, "team/app", "", 1<<10)
	for range 2 {
		wantBody(t, "GET an uncached digest", do(t, http.MethodGet, m.URL+"/v2/"+prefix+"/team/app/manifests/"+other.digest.String()), other.body)
	}
	if n := up.count(http.MethodGet, "/v2/team/app/manifests/"+other.digest.String()); n != 1 {
		t.Errorf("upstream GETs of a digest pulled twice: %d, want 1", n)
	}

	// The blobs, through the cache: fetched once.
	for _, b := range [][]byte{img.config, img.layer} {
		p := "/blobs/" + digest.FromBytes(b).String()
		for range 2 {
			wantBody(t, "GET blob", do(t, http.MethodGet, m.URL+"/v2/"+prefix+"/team/app"+p), b)
		}
		if n := up.count(http.MethodGet, "/v2/team/app"+p); n != 1 {
			t.Errorf("upstream GETs of a blob pulled twice: %d, want 1", n)
		}
	}
	results = results[:0]
	for _, l := range m.waitAccessLog(t, "/v2/{name}/blobs/{digest}", 4) {
		results = append(results, fmt.Sprint(l["cache"]))
	}
	if got := strings.Join(results, " "); got != "miss hit miss hit" {
		t.Errorf("blob access log cache results: %s, want miss hit miss hit", got)
	}
	for _, c := range []struct {
		kind, result string
		want         float64
	}{{"blob", "miss", 2}, {"blob", "hit", 2}, {"manifest", "miss", 2}, {"manifest", "hit", 5}} {
		if got := m.requests(t, c.kind, c.result); got != c.want {
			t.Errorf("berth_proxy_requests_total{kind=%s,result=%s} = %v, want %v", c.kind, c.result, got, c.want)
		}
	}
}

func TestTagFreshness(t *testing.T) {
	up := newUpstreamServer(t)
	first := pushImage(t, up, "team/app", "v1", 1<<10)
	m := newMirror(t, up.URL, nil) // freshness 1h
	tagURL := m.URL + "/v2/" + prefix + "/team/app/manifests/v1"
	tagPath := "/v2/team/app/manifests/v1"
	wantBody(t, "first GET", do(t, http.MethodGet, tagURL), first.body)

	// The tag moves upstream; within the freshness period the mirror
	// serves what it has, asking nothing.
	second := pushImage(t, up, "team/app", "v1", 1<<10)
	wantBody(t, "GET while fresh", do(t, http.MethodGet, tagURL), first.body)
	if g, h := up.count(http.MethodGet, tagPath), up.count(http.MethodHead, tagPath); g != 1 || h != 0 {
		t.Fatalf("upstream requests for a fresh tag: %d GET, %d HEAD; want 1 GET, 0 HEAD", g, h)
	}

	// Past the period: a HEAD finds the new digest, which is fetched.
	m.driver.setAge("/_manifests/tags/v1/current/", 2*time.Hour)
	wantBody(t, "GET after the freshness period", do(t, http.MethodGet, tagURL), second.body)
	m.driver.setAge("/_manifests/tags/v1/current/", 0)
	if g, h := up.count(http.MethodGet, tagPath), up.count(http.MethodHead, tagPath); g != 2 || h != 1 {
		t.Errorf("upstream requests for a moved tag past freshness: %d GET, %d HEAD; want 2 GET, 1 HEAD", g, h)
	}
	wantBody(t, "GET once refreshed", do(t, http.MethodGet, tagURL), second.body)

	// Past the period again, unmoved: the HEAD confirms it, no GET.
	m.driver.setAge("/_manifests/tags/v1/current/", 2*time.Hour)
	wantBody(t, "GET of an unmoved tag past freshness", do(t, http.MethodGet, tagURL), second.body)
	m.driver.setAge("/_manifests/tags/v1/current/", 0)
	if g, h := up.count(http.MethodGet, tagPath), up.count(http.MethodHead, tagPath); g != 2 || h != 2 {
		t.Errorf("upstream requests for an unmoved tag past freshness: %d GET, %d HEAD; want 2 GET, 2 HEAD", g, h)
	}

	// Past the period with the upstream gone: served stale, with a warning.
	m.driver.setAge("/_manifests/tags/v1/current/", 2*time.Hour)
	up.Close()
	r := do(t, http.MethodGet, tagURL)
	wantBody(t, "GET of a stale tag, upstream down", r, second.body)
	if w := r.header.Get("Warning"); !strings.HasPrefix(w, "110 ") {
		t.Errorf("stale tag: Warning %q, want a 110 warning", w)
	}
	logs := m.waitAccessLog(t, "/v2/{name}/manifests/{reference}", 6)
	if got := logs[len(logs)-1]["cache"]; got != "stale" {
		t.Errorf("stale tag: access log cache=%v, want stale", got)
	}
}

// TestConcurrentBlobOneDownload sends one process many requests for an
// uncached blob at once: the upstream is asked once. The upstream holds its
// answer until every request has reached the mirror, so that they overlap.
func TestConcurrentBlobOneDownload(t *testing.T) {
	const clients = 12
	up := newUpstreamServer(t)
	img := pushImage(t, up, "team/app", "v1", 4<<20)
	d := digest.FromBytes(img.layer)
	m := newMirror(t, up.URL, nil)

	var arrived atomic.Int32
	all := make(chan struct{})
	inner := m.Config.Handler
	m.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/blobs/"+d.String()) && arrived.Add(1) == clients {
			close(all)
		}
		inner.ServeHTTP(w, r)
	})
	up.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+d.String()) {
			select {
			case <-all:
			case <-r.Context().Done():
			}
		}
		return false
	})

	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Go(func() {
			// Half by path prefix, half by ?ns=: one cache.
			u := m.URL + "/v2/" + prefix + "/team/app/blobs/" + d.String()
			if i%2 == 1 {
				u = m.URL + "/v2/team/app/blobs/" + d.String() + "?ns=" + prefix
			}
			resp, err := http.Get(u)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, img.layer) {
				errs <- fmt.Errorf("client %d: %s, %d bytes (%s), %v: %.300s", i, resp.Status, len(body), digest.FromBytes(body), err, body)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := up.count(http.MethodGet, "/v2/team/app/blobs/"+d.String()); n != 1 {
		t.Errorf("%d concurrent requests made %d upstream GETs, want 1", clients, n)
	}
	counts := map[any]int{}
	for _, l := range m.waitAccessLog(t, "/v2/{name}/blobs/{digest}", clients) {
		counts[l["cache"]]++
	}
	if counts["miss"] != 1 || counts["hit"] != clients-1 {
		t.Errorf("access log cache results: %v, want 1 miss and %d hits", counts, clients-1)
	}
	if _, held, err := m.store.ReadClaim(t.Context(), d); held || err != nil {
		t.Errorf("after the download: claim held %v, %v; want none left", held, err)
	}
}

// TestDigestMismatchStoresNothing: an upstream that sends other bytes than
// the digest's fails the client's pull, leaves nothing stored, and the
// next pull tries again.
func TestDigestMismatchStoresNothing(t *testing.T) {
	up := newUpstreamServer(t)
	img := pushImage(t, up, "team/app", "v1", 1<<20)
	d := digest.FromBytes(img.layer)
	m := newMirror(t, up.URL, nil)
	blobURL := m.URL + "/v2/" + prefix + "/team/app/blobs/" + d.String()
	corrupt := bytes.Clone(img.layer)
	corrupt[len(corrupt)/2] ^= 0x01
	up.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+d.String()) {
			return false
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(corrupt)))
		w.Header().Set("Docker-Content-Digest", d.String())
		_, _ = w.Write(corrupt)
		return true
	})
	r := do(t, http.MethodGet, blobURL)
	if r.err == nil && r.status == http.StatusOK && bytes.Equal(r.body, corrupt) {
		t.Fatalf("GET of a corrupted blob: the client received all %d corrupted bytes without an error", len(r.body))
	}
	if r.err == nil && r.status == http.StatusOK && digest.FromBytes(r.body) == d {
		t.Fatalf("GET of a corrupted blob: the client received the right bytes, which the upstream never sent")
	}
	t.Logf("GET of a corrupted blob: status %d, %d of %d bytes, error %v", r.status, len(r.body), len(corrupt), r.err)
	m.waitAccessLog(t, "/v2/{name}/blobs/{digest}", 1)
	if have, err := m.store.HasBlobData(t.Context(), d); have || err != nil {
		t.Fatalf("after a corrupted download: blob data stored %v (%v), want none", have, err)
	}
	if _, err := m.store.BlobSize(t.Context(), prefix+"/team/app", d); !errors.Is(err, store.ErrBlobUnknown) {
		t.Fatalf("after a corrupted download: BlobSize = %v, want ErrBlobUnknown", err)
	}
	if _, held, _ := m.store.ReadClaim(t.Context(), d); held {
		t.Errorf("after a corrupted download: the claim is left")
	}

	// The upstream mends: the next pull fetches it again.
	up.setIntercept(nil)
	wantBody(t, "GET after the upstream mended", do(t, http.MethodGet, blobURL), img.layer)
	if n := up.count(http.MethodGet, "/v2/team/app/blobs/"+d.String()); n != 2 {
		t.Errorf("upstream blob GETs: %d, want 2 (the corrupted one and the retry)", n)
	}
}

func TestUpstreamErrors(t *testing.T) {
	up := newUpstreamServer(t)
	img := pushImage(t, up, "team/app", "v1", 1<<10)
	m := newMirror(t, up.URL, nil)
	base := m.URL + "/v2/" + prefix + "/team/app"
	unknownBlob := digest.FromString("not upstream").String()

	// The upstream's 404: the image does not exist, said the OCI way.
	wantError(t, "GET of a tag the upstream lacks", do(t, http.MethodGet, base+"/manifests/nope"), http.StatusNotFound, "MANIFEST_UNKNOWN")
	wantError(t, "GET of a digest the upstream lacks", do(t, http.MethodGet, base+"/manifests/"+unknownBlob), http.StatusNotFound, "MANIFEST_UNKNOWN")
	wantError(t, "GET of a blob the upstream lacks", do(t, http.MethodGet, base+"/blobs/"+unknownBlob), http.StatusNotFound, "BLOB_UNKNOWN")
	if r := do(t, http.MethodHead, base+"/blobs/"+unknownBlob); r.status != http.StatusNotFound {
		t.Errorf("HEAD of a blob the upstream lacks: status %d, want 404", r.status)
	}

	// 429: 503 TOOMANYREQUESTS with the upstream's Retry-After.
	up.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == "/v2/" {
			return false
		}
		w.Header().Set("Retry-After", "7")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, `{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}`)
		return true
	})
	for _, c := range []struct{ what, method, url string }{
		{"GET of an uncached tag", http.MethodGet, base + "/manifests/v1"},
		{"GET of an uncached digest", http.MethodGet, base + "/manifests/" + img.digest.String()},
		{"GET of an uncached blob", http.MethodGet, base + "/blobs/" + digest.FromBytes(img.layer).String()},
	} {
		r := do(t, c.method, c.url)
		msg := wantError(t, c.what+" (upstream 429)", r, http.StatusServiceUnavailable, "TOOMANYREQUESTS")
		if got := r.header.Get("Retry-After"); got != "7" {
			t.Errorf("%s (upstream 429): Retry-After %q, want the upstream's 7", c.what, got)
		}
		if !strings.Contains(msg, "up") {
			t.Errorf("%s (upstream 429): message %q does not name the upstream", c.what, msg)
		}
	}
	r := do(t, http.MethodHead, base+"/blobs/"+digest.FromBytes(img.layer).String())
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "7" {
		t.Errorf("HEAD of an uncached blob (upstream 429): status %d, Retry-After %q; want 503, 7", r.status, r.header.Get("Retry-After"))
	}
	if have, _ := m.store.HasBlobData(t.Context(), digest.FromBytes(img.layer)); have {
		t.Errorf("a throttled blob GET stored the blob")
	}

	// Unreachable: 502 UNAVAILABLE naming the upstream, never a 404.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + l.Addr().String()
	l.Close()
	dead := newMirror(t, deadURL, nil)
	dbase := dead.URL + "/v2/" + prefix + "/team/app"
	for _, c := range []struct{ what, url string }{
		{"GET of an uncached tag", dbase + "/manifests/v1"},
		{"GET of an uncached digest", dbase + "/manifests/" + img.digest.String()},
		{"GET of an uncached blob", dbase + "/blobs/" + digest.FromBytes(img.layer).String()},
	} {
		msg := wantError(t, c.what+" (upstream unreachable)", do(t, http.MethodGet, c.url), http.StatusBadGateway, "UNAVAILABLE")
		if !strings.Contains(msg, "upstream up") {
			t.Errorf("%s (upstream unreachable): message %q does not name the upstream", c.what, msg)
		}
	}
	if r := do(t, http.MethodHead, dbase+"/blobs/"+digest.FromBytes(img.layer).String()); r.status != http.StatusBadGateway {
		t.Errorf("HEAD of an uncached blob (upstream unreachable): status %d, want 502", r.status)
	}
}

// TestStaleClaimTakenOver: a claim on a blob download whose owner died (not
// renewed for longer than the stale period) is taken over; a live claim
// makes the mirror wait for the blob instead of downloading it. Storage's
// clock is moved with agedDriver, so nothing here waits for the period.
func TestStaleClaimTakenOver(t *testing.T) {
	up := newUpstreamServer(t)
	img := pushImage(t, up, "team/app", "v1", 256<<10)
	d := digest.FromBytes(img.layer)
	upPath := "/v2/team/app/blobs/" + d.String()
	m := newMirror(t, up.URL, nil)
	claims := "/_berth/proxy/claims/"

	// A live claim of another process: the mirror waits, and serves the
	// blob that process stores, without downloading it.
	if err := m.store.WriteClaim(t.Context(), d, "other-process"); err != nil {
		t.Fatal(err)
	}
	before := m.driver.statCount(claims)
	done := make(chan response, 1)
	go func() {
		done <- do(t, http.MethodGet, m.URL+"/v2/"+prefix+"/team/app/blobs/"+d.String())
	}()
	// Wait until the mirror has found the claim held and looked again: it
	// is waiting. Until the other process finishes, it must not have gone
	// upstream.
	m.driver.waitStats(t, claims, before+2, done)
	if n := up.count(http.MethodGet, upPath); n != 0 {
		t.Fatalf("with a live claim of another process the mirror downloaded the blob (%d upstream GETs)", n)
	}
	if _, err := m.store.PutBlob(t.Context(), "elsewhere/repo", bytes.NewReader(img.layer), d); err != nil {
		t.Fatal(err)
	}
	if err := m.store.DropClaim(t.Context(), d, "other-process"); err != nil {
		t.Fatal(err)
	}
	wantBody(t, "GET while another process downloaded", <-done, img.layer)
	if n := up.count(http.MethodGet, upPath); n != 0 {
		t.Errorf("upstream GETs of a blob another process stored: %d, want 0", n)
	}

	// A dead owner's claim: old on storage's clock. It is taken over and
	// the blob downloaded once.
	img2 := pushImage(t, up, "team/app", "v2", 256<<10)
	d2 := digest.FromBytes(img2.layer)
	if err := m.store.WriteClaim(t.Context(), d2, "dead-process"); err != nil {
		t.Fatal(err)
	}
	m.driver.setAge(claims, time.Hour)
	defer m.driver.setAge(claims, 0)
	wantBody(t, "GET over a dead owner's claim", do(t, http.MethodGet, m.URL+"/v2/"+prefix+"/team/app/blobs/"+d2.String()), img2.layer)
	m.waitAccessLog(t, "/v2/{name}/blobs/{digest}", 2)
	if n := up.count(http.MethodGet, "/v2/team/app/blobs/"+d2.String()); n != 1 {
		t.Errorf("upstream GETs after taking over a stale claim: %d, want 1", n)
	}
	if _, held, err := m.store.ReadClaim(t.Context(), d2); held || err != nil {
		t.Errorf("after the takeover: claim held %v, %v; want none left", held, err)
	}
}

// TestLeaderGoneOthersServed: the request of this process that waits for
// another process's download ends (its client went away); a request that
// was waiting behind it still gets the blob.
func TestLeaderGoneOthersServed(t *testing.T) {
	up := newUpstreamServer(t)
	img := pushImage(t, up, "team/app", "v1", 64<<10)
	d := digest.FromBytes(img.layer)
	m := newMirror(t, up.URL, nil)
	blobURL := m.URL + "/v2/" + prefix + "/team/app/blobs/" + d.String()
	const claims = "/_berth/proxy/claims/"
	link := "/repositories/" + prefix + "/team/app/_layers/sha256/" + d.Encoded() + "/link"
	if err := m.store.WriteClaim(t.Context(), d, "other-process"); err != nil {
		t.Fatal(err)
	}

	// A leads: it polls the other process's claim.
	actx, cancelA := context.WithCancel(t.Context())
	defer cancelA()
	aDone := make(chan response, 1)
	go func() {
		req, _ := http.NewRequestWithContext(actx, http.MethodGet, blobURL, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			aDone <- response{status: resp.StatusCode}
			return
		}
		aDone <- response{err: err}
	}()
	m.driver.waitStats(t, claims, m.driver.statCount(claims)+2, aDone)

	// B comes, finds A's download under way and waits for it (its second
	// look at the repository's link is the cache's, just before it joins).
	bDone := make(chan response, 1)
	before := m.driver.statCount(link)
	go func() { bDone <- do(t, http.MethodGet, blobURL) }()
	m.driver.waitStats(t, link, before+2, bDone)

	// A's client goes away; the other process then stores the blob.
	cancelA()
	if r := <-aDone; r.err == nil {
		t.Fatalf("A's request was not cut: status %d", r.status)
	}
	if _, err := m.store.PutBlob(t.Context(), "elsewhere/repo", bytes.NewReader(img.layer), d); err != nil {
		t.Fatal(err)
	}
	if err := m.store.DropClaim(t.Context(), d, "other-process"); err != nil {
		t.Fatal(err)
	}
	wantBody(t, "B's GET after A's client went away", <-bDone, img.layer)
	if n := up.count(http.MethodGet, "/v2/team/app/blobs/"+d.String()); n != 0 {
		t.Errorf("upstream GETs of a blob another process stored: %d, want 0", n)
	}
}

// TestReferrersFetchedWithManifest: a manifest fetched through the cache
// brings its referrers along where the upstream has the referrers API, so
// that a signature is there once the upstream is down.
func TestReferrersFetchedWithManifest(t *testing.T) {
	up := newUpstreamServer(t)
	m := newMirror(t, up.URL, nil)
	ctx := t.Context()
	img := pushImage(t, up, "lib/app", "v1", 1024)

	empty := []byte("{}")
	if _, err := up.store.PutBlob(ctx, "lib/app", bytes.NewReader(empty), digest.FromBytes(empty)); err != nil {
		t.Fatal(err)
	}
	sig, err := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": manifest.MediaTypeOCIManifest,
		"artifactType": "application/vnd.example.signature",
		"config":       map[string]any{"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest.FromBytes(empty), "size": 2},
		"layers":       []any{map[string]any{"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest.FromBytes(empty), "size": 2}},
		"subject":      map[string]any{"mediaType": manifest.MediaTypeDockerManifest, "digest": img.digest, "size": len(img.body)},
	})
	if err != nil {
		t.Fatal(err)
	}
	sigDigest := digest.FromBytes(sig)
	if _, err := up.store.PutManifest(ctx, "lib/app", nil, sigDigest, manifest.MediaTypeOCIManifest, sig); err != nil {
		t.Fatal(err)
	}

	wantBody(t, "manifest by tag", do(t, http.MethodGet, m.URL+"/v2/"+prefix+"/lib/app/manifests/v1"), img.body)
	// The referrer arrives in the background: wait for it (the test's
	// own timeout bounds the wait).
	for {
		if _, err := m.store.GetManifest(ctx, prefix+"/lib/app", sigDigest); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}

	up.Close() // the upstream is gone
	r := do(t, http.MethodGet, m.URL+"/v2/"+prefix+"/lib/app/referrers/"+img.digest.String())
	if r.status != http.StatusOK {
		t.Fatalf("referrers with the upstream down: %d %s", r.status, r.body)
	}
	var index struct {
		Manifests []struct {
			Digest       digest.Digest `json:"digest"`
			ArtifactType string        `json:"artifactType"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(r.body, &index); err != nil {
		t.Fatal(err)
	}
	if len(index.Manifests) != 1 || index.Manifests[0].Digest != sigDigest || index.Manifests[0].ArtifactType != "application/vnd.example.signature" {
		t.Errorf("referrers with the upstream down: %s, want the signature %s", r.body, sigDigest)
	}
	wantBody(t, "the signature by digest, upstream down", do(t, http.MethodGet, m.URL+"/v2/"+prefix+"/lib/app/manifests/"+sigDigest.String()), sig)
}

// TestStalledUpstream: an upstream that sends part of a blob and then
// nothing fails the client's GET once the read timeout passes (the client
// never gets the whole length), leaves no blob and no upload behind, and
// the next GET fetches the blob again.
func TestStalledUpstream(t *testing.T) {
	up := newUpstreamServer(t)
	img := pushImage(t, up, "team/app", "v1", 1<<20)
	d := digest.FromBytes(img.layer)
	m := newMirror(t, up.URL, func(u *proxy.Upstream) { u.ReadTimeout = 200 * time.Millisecond })
	blobURL := m.URL + "/v2/" + prefix + "/team/app/blobs/" + d.String()
	release := make(chan struct{})
	defer close(release)
	up.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+d.String()) {
			return false
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(img.layer)))
		_, _ = w.Write(img.layer[:len(img.layer)/2])
		w.(http.Flusher).Flush()
		select { // stall until the mirror gives up, or the test ends
		case <-r.Context().Done():
		case <-release:
		}
		return true
	})
	r := do(t, http.MethodGet, blobURL)
	if r.err == nil && r.status == http.StatusOK && len(r.body) == len(img.layer) {
		t.Fatalf("GET through a stalled upstream: the client received all %d bytes without an error", len(r.body))
	}
	t.Logf("GET through a stalled upstream: status %d, %d of %d bytes, error %v", r.status, len(r.body), len(img.layer), r.err)
	m.waitAccessLog(t, "/v2/{name}/blobs/{digest}", 1)
	if have, err := m.store.HasBlobData(t.Context(), d); have || err != nil {
		t.Fatalf("after a stalled download: blob data stored %v (%v), want none", have, err)
	}
	uploads, err := m.driver.List(t.Context(), "/docker/registry/v2/repositories/"+prefix+"/team/app/_uploads")
	if err == nil && len(uploads) > 0 {
		t.Errorf("after a stalled download: uploads left %v", uploads)
	} else if err != nil && !errors.Is(err, storage.ErrNotFound) {
		t.Fatal(err)
	}

	up.setIntercept(nil)
	wantBody(t, "GET after the upstream recovered", do(t, http.MethodGet, blobURL), img.layer)
}

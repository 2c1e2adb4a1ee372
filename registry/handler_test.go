package registry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/berth-registry/berth/manifest"
	"github.com/berth-registry/berth/registry"
	"github.com/berth-registry/berth/storage"
	"github.com/berth-registry/berth/storage/filesystem"
	"github.com/berth-registry/berth/storage/inmemory"
	"github.com/berth-registry/berth/storage/store"
)

// countingReader yields n bytes of '{' (never valid JSON) and counts what was read.
type countingReader struct {
	left, read int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.left == 0 {
		return 0, io.EOF
	}
	n := int64(len(p))
	if n > c.left {
		n = c.left
	}
	for i := range p[:n] {
		p[i] = '{'
	}
	c.left -= n
	c.read += n
	return int(n), nil
}

// serve runs one request through the handler directly, so that the test
// sees exactly what the handler read from the body.
func serve(h http.Handler, method, target string, body io.Reader, contentLength int64, header map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, body)
	r.ContentLength = contentLength
	for k, v := range header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func recorderCode(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	return ociError(t, resp{status: w.Code, header: w.Header(), body: w.Body.Bytes()})
}

func TestOversizedManifestIsNotRead(t *testing.T) {
	e := newEnv(t)
	e.pushImage(repo, "latest", 1)
	const max = manifest.MaxSize
	for _, tc := range []struct {
		name          string
		size          int64
		contentLength int64 // -1: unknown (chunked)
		status        int
		code          string
		maxRead       int64
	}{
		{"declared too large", max + 100, max + 100, 413, "MANIFEST_INVALID", 0},
		{"declared far too large", 1 << 40, 1 << 40, 413, "MANIFEST_INVALID", 0},
		{"undeclared too large", 64 << 20, -1, 413, "MANIFEST_INVALID", max + 1},
		{"undeclared one byte too large", max + 1, -1, 413, "MANIFEST_INVALID", max + 1},
		{"exactly the limit", max, max, 400, "MANIFEST_INVALID", max},
		{"exactly the limit undeclared", max, -1, 400, "MANIFEST_INVALID", max + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.snapshot()
			body := &countingReader{left: tc.size}
			w := serve(e.reg, "PUT", "/v2/"+repo+"/manifests/big", body, tc.contentLength,
				map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if code := recorderCode(t, w); code != tc.code {
				t.Errorf("code %s, want %s", code, tc.code)
			}
			if tc.status == 413 && !strings.Contains(w.Body.String(), fmt.Sprint(max)) {
				t.Errorf("message does not name the limit: %s", w.Body)
			}
			if body.read > tc.maxRead {
				t.Errorf("read %d bytes of the body, want at most %d", body.read, tc.maxRead)
			}
			if d := before.diff(e.snapshot()); d != "" {
				t.Errorf("storage changed: %s", d)
			}
		})
	}
}

// truncatedBody delivers data and then fails like a request body whose
// client went away before sending all it declared.
type truncatedBody struct{ r io.Reader }

func (b truncatedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

func TestTruncatedUploadBodyKeepsUpload(t *testing.T) {
	e := newEnv(t)
	r := e.do(req{method: "POST", path: "/v2/trunc/blob/blobs/uploads/"})
	loc := r.header.Get("Location")
	data := randomBlob(61, 3000).data

	w := serve(e.reg, "PATCH", loc, truncatedBody{bytes.NewReader(data[:1000])}, 2000, nil)
	if w.Code != http.StatusBadRequest {
		t.Fatalf("PATCH with a truncated body: %d %s", w.Code, w.Body)
	}
	r = e.get(loc)
	wantStatus(t, r, http.StatusNoContent)
	headerIs("Range", "0-999")(t, r)

	// A final PUT cut short must not discard the upload either.
	d := newBlob(data).digest
	w = serve(e.reg, "PUT", loc+"?digest="+d.String(), truncatedBody{bytes.NewReader(data[1000:1500])}, 2000, nil)
	if w.Code != http.StatusBadRequest {
		t.Fatalf("PUT with a truncated body: %d %s", w.Code, w.Body)
	}
	r = e.get(loc)
	wantStatus(t, r, http.StatusNoContent)
	headerIs("Range", "0-1499")(t, r)

	r = e.do(req{method: "PUT", path: loc + "?digest=" + d.String(), body: bytes.NewReader(data[1500:])})
	wantStatus(t, r, http.StatusCreated)
	r = e.get("/v2/trunc/blob/blobs/" + d.String())
	if !bytes.Equal(r.body, data) {
		t.Fatal("blob differs")
	}
}

// readFromRecorder is a ResponseWriter with ReadFrom, like net/http's, that
// records what it was handed.
type readFromRecorder struct {
	*httptest.ResponseRecorder
	calls  int
	source io.Reader
}

func (w *readFromRecorder) ReadFrom(r io.Reader) (int64, error) {
	w.calls++
	w.source = r
	return io.Copy(w.ResponseRecorder, r)
}

// TestBlobGetReachesSendfile: with metrics and the access log wrapping the
// response writer, a blob GET to a remote peer still hands the writer's
// ReadFrom a LimitedReader over the *os.File of the filesystem driver, which
// is what net/http turns into sendfile; a loopback peer gets a buffered copy.
func TestBlobGetReachesSendfile(t *testing.T) {
	d, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	e := newEnvOn(t, d, withMetrics, withAccessLog)
	b := randomBlob(71, 100_000)
	e.pushBlob(repo, b)

	for _, tc := range []struct {
		name, rng string
		want      []byte
		status    int
	}{
		{"whole", "", b.data, http.StatusOK},
		{"range", "bytes=100-199", b.data[100:200], http.StatusPartialContent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/v2/"+repo+"/blobs/"+b.digest.String(), nil)
			if tc.rng != "" {
				r.Header.Set("Range", tc.rng)
			}
			w := &readFromRecorder{ResponseRecorder: httptest.NewRecorder()}
			e.reg.ServeHTTP(w, r)
			if w.Code != tc.status || !bytes.Equal(w.Body.Bytes(), tc.want) {
				t.Fatalf("status %d, %d bytes", w.Code, w.Body.Len())
			}
			if w.calls != 1 {
				t.Fatalf("ReadFrom called %d times, want 1", w.calls)
			}
			lr, ok := w.source.(*io.LimitedReader)
			if !ok {
				t.Fatalf("ReadFrom got a %T, want *io.LimitedReader", w.source)
			}
			if _, ok := lr.R.(*os.File); !ok {
				t.Fatalf("LimitedReader over a %T, want *os.File", lr.R)
			}
		})
	}
	// The bytes went through ReadFrom and were still counted.
	if got := metricValue(t, e.metrics, "berth_http_response_bytes_total", map[string]string{"route": "/v2/{name}/blobs/{digest}"}); got != 100_100 {
		t.Errorf("response bytes %v, want 100100", got)
	}

	// A peer on this host gets a buffered copy instead (faster over loopback).
	for _, addr := range []string{"127.0.0.1:40000", "[::1]:40000", "127.9.9.9:1"} {
		r := httptest.NewRequest("GET", "/v2/"+repo+"/blobs/"+b.digest.String(), nil)
		r.RemoteAddr = addr
		w := &readFromRecorder{ResponseRecorder: httptest.NewRecorder()}
		e.reg.ServeHTTP(w, r)
		if w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), b.data) {
			t.Fatalf("%s: status %d, %d bytes", addr, w.Code, w.Body.Len())
		}
		if w.calls != 0 {
			t.Errorf("%s: ReadFrom called for a loopback peer", addr)
		}
	}
	if got := metricValue(t, e.metrics, "berth_http_response_bytes_total", map[string]string{"route": "/v2/{name}/blobs/{digest}"}); got != 100_100+3*100_000 {
		t.Errorf("response bytes %v, want %d", got, 100_100+3*100_000)
	}
}

// metricValue returns the value of the sample of name with labels (a subset).
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue metrics
				}
			}
			return value(m)
		}
	}
	t.Fatalf("no sample %s%v", name, labels)
	return 0
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

func TestMetricsAndAccessLog(t *testing.T) {
	e := newEnv(t, withMetrics, withAccessLog)
	img := e.pushImage(repo, "latest", 81) // 3 requests
	for range 3 {
		wantStatus(t, e.get("/v2/"+repo+"/manifests/latest"), http.StatusOK)
	}
	wantStatus(t, e.get("/v2/"+repo+"/blobs/"+img.layer.digest.String()), http.StatusOK)
	wantStatus(t, e.get("/v2/"+repo+"/blobs/"+img.config.digest.String()[:20]), http.StatusBadRequest)
	wantStatus(t, e.get("/nowhere"), http.StatusNotFound)
	wantStatus(t, e.do(req{method: "BREW", path: "/v2/"}), http.StatusMethodNotAllowed)
	const requests = 3 + 3 + 1 + 1 + 1 + 1

	manifests := "/v2/{name}/manifests/{reference}"
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"berth_http_requests_total", map[string]string{"method": "GET", "route": manifests, "status": "200"}, 3},
		{"berth_http_requests_total", map[string]string{"method": "PUT", "route": manifests, "status": "201"}, 1},
		{"berth_http_requests_total", map[string]string{"method": "GET", "route": "/v2/{name}/blobs/{digest}", "status": "400"}, 1},
		{"berth_http_requests_total", map[string]string{"method": "GET", "route": "unmatched", "status": "404"}, 1},
		{"berth_http_requests_total", map[string]string{"method": "OTHER", "route": "method-not-allowed", "status": "405"}, 1},
		{"berth_http_request_duration_seconds", map[string]string{"method": "GET", "route": manifests}, 3},
		{"berth_http_request_bytes_total", map[string]string{"route": manifests}, float64(len(img.manifest.data))},
		{"berth_http_request_bytes_total", map[string]string{"route": "/v2/{name}/blobs/uploads/"}, float64(len(img.layer.data) + len(img.config.data))},
		{"berth_http_response_bytes_total", map[string]string{"route": manifests}, float64(3 * len(img.manifest.data))},
		{"berth_uploads_in_progress", nil, 0},
	} {
		if got := metricValue(t, e.metrics, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	r := e.get("/metrics")
	wantStatus(t, r, http.StatusOK)
	if !bytes.Contains(r.body, []byte("berth_uploads_in_progress 0")) {
		t.Errorf("/metrics lacks the uploads gauge")
	}

	type line struct {
		Msg, Method, Route, Repository, Remote, UserAgent string
		Status                                            int
		BytesIn                                           int64 `json:"bytes_in"`
		BytesOut                                          int64 `json:"bytes_out"`
		Duration                                          *int64
	}
	var lines []line
	for _, l := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		var v line
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		var ua struct {
			UserAgent string `json:"user_agent"`
		}
		_ = json.Unmarshal([]byte(l), &ua)
		v.UserAgent = ua.UserAgent
		if v.Msg == "request" {
			lines = append(lines, v)
		}
	}
	// requests above, plus the /metrics scrape, which is logged when it ends.
	if len(lines) != requests+1 {
		t.Fatalf("%d access log lines, want %d:\n%s", len(lines), requests+1, e.logs.String())
	}
	get := lines[4]
	if get.Method != "GET" || get.Route != manifests || get.Repository != repo || get.Status != 200 ||
		get.BytesOut != int64(len(img.manifest.data)) || get.Remote == "" || get.UserAgent == "" || get.Duration == nil {
		t.Errorf("access log line for a manifest GET: %+v", get)
	}
	put := lines[2]
	if put.Method != "PUT" || put.Status != 201 || put.BytesIn != int64(len(img.manifest.data)) {
		t.Errorf("access log line for a manifest PUT: %+v", put)
	}

	// A second Registry cannot register the same metrics again.
	if _, err := registry.New(registry.Options{Store: store.New(inmemory.New(), store.Options{}), Metrics: e.metrics}); err == nil {
		t.Error("New registered the metrics twice")
	}
}

func TestUploadsInProgressGauge(t *testing.T) {
	e := newEnv(t, withMetrics)
	r := e.do(req{method: "POST", path: "/v2/gauge/test/blobs/uploads/"})
	loc := r.header.Get("Location")
	pr, pw := io.Pipe()
	done := make(chan resp)
	go func() {
		hr, _ := http.NewRequest("PATCH", e.srv.URL+loc, pr)
		res, err := http.DefaultClient.Do(hr)
		if err != nil {
			done <- resp{}
			return
		}
		res.Body.Close()
		done <- resp{status: res.StatusCode}
	}()
	if _, err := pw.Write([]byte("some bytes")); err != nil {
		t.Fatal(err)
	}
	gauge := func() float64 { return metricValue(t, e.metrics, "berth_uploads_in_progress", nil) }
	deadline := time.Now().Add(10 * time.Second)
	for gauge() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the gauge never showed the upload")
		}
		time.Sleep(5 * time.Millisecond)
	}
	pw.Close()
	if r := <-done; r.status != http.StatusAccepted {
		t.Fatalf("PATCH: %d", r.status)
	}
	if g := gauge(); g != 0 {
		t.Fatalf("gauge %v after the upload", g)
	}
}

// failingDriver breaks chosen operations of a working driver.
type failingDriver struct {
	storage.Driver
	stat, reader error
}

func (d failingDriver) Stat(ctx context.Context, p string) (storage.FileInfo, error) {
	if d.stat != nil {
		return storage.FileInfo{}, d.stat
	}
	return d.Driver.Stat(ctx, p)
}

func (d failingDriver) Reader(ctx context.Context, p string, offset int64) (io.ReadCloser, error) {
	if d.reader != nil {
		return nil, d.reader
	}
	return d.Driver.Reader(ctx, p, offset)
}

func TestStorageFailures(t *testing.T) {
	secret := errors.New("disk /srv/secret/path on fire")
	base := inmemory.New()
	seedEnv := newEnvOn(t, base)
	img := seedEnv.pushImage(repo, "latest", 91)

	e := newEnvOn(t, failingDriver{Driver: base, stat: secret})
	r := e.get("/readyz")
	wantError(t, r, http.StatusServiceUnavailable, "UNAVAILABLE")
	wantStatus(t, e.get("/healthz"), http.StatusOK)
	if bytes.Contains(r.body, []byte("secret")) {
		t.Errorf("readyz leaks the cause: %s", r.body)
	}

	e = newEnvOn(t, failingDriver{Driver: base, reader: secret})
	r = e.get("/v2/" + repo + "/blobs/" + img.layer.digest.String())
	wantError(t, r, http.StatusInternalServerError, "UNKNOWN")
	if bytes.Contains(r.body, []byte("secret")) {
		t.Errorf("500 leaks the cause: %s", r.body)
	}
	headerIs("Docker-Content-Digest", "")(t, r)
	if !strings.Contains(e.logs.String(), "secret/path on fire") {
		t.Errorf("the cause was not logged: %s", e.logs.String())
	}
}

// redirectingDriver gives redirect URLs for blob data, or ErrUnsupported.
type redirectingDriver struct {
	storage.Driver
	unsupported bool
}

func (d redirectingDriver) RedirectURL(_ context.Context, method, p string) (string, error) {
	if d.unsupported {
		return "", fmt.Errorf("no URL for %s: %w", p, storage.ErrUnsupported)
	}
	return "https://bucket.example/" + method + p, nil
}

func TestBlobRedirect(t *testing.T) {
	base := inmemory.New()
	b := randomBlob(95, 1234)
	newEnvOn(t, base).pushBlob(repo, b)
	path := "/v2/" + repo + "/blobs/" + b.digest.String()

	e := newEnvOn(t, redirectingDriver{Driver: base})
	r := e.get(path)
	wantStatus(t, r, http.StatusTemporaryRedirect)
	if loc := r.header.Get("Location"); !strings.HasPrefix(loc, "https://bucket.example/GET/") || !strings.Contains(loc, b.digest.Encoded()) {
		t.Errorf("Location %q", loc)
	}
	headerIs("Docker-Content-Digest", b.digest.String())(t, r)
	// HEAD is answered here: the size is known without a round trip.
	r = e.head(path)
	wantStatus(t, r, http.StatusOK)
	blobHeaders(b, len(b.data))(t, r)
	// Unknown blobs are not redirected.
	wantError(t, e.get("/v2/"+repo+"/blobs/"+newBlob([]byte("x")).digest.String()), http.StatusNotFound, "BLOB_UNKNOWN")
	// A range the blob cannot satisfy is refused here, not left to the
	// bucket (which may serve the whole blob); a good range is redirected.
	for _, spec := range []string{"bytes=500-0", "bytes=1234-", "bytes=-0"} {
		r := e.do(req{method: "GET", path: path, header: map[string]string{"Range": spec}})
		wantError(t, r, http.StatusRequestedRangeNotSatisfiable, "RANGE_INVALID")
		headerIs("Content-Range", "bytes */1234")(t, r)
		headerIs("Location", "")(t, r)
	}
	r = e.do(req{method: "GET", path: path, header: map[string]string{"Range": "bytes=10-19"}})
	wantStatus(t, r, http.StatusTemporaryRedirect)
	headerIs("Content-Range", "")(t, r)

	e = newEnvOn(t, redirectingDriver{Driver: base, unsupported: true})
	r = e.get(path)
	wantStatus(t, r, http.StatusOK)
	if !bytes.Equal(r.body, b.data) {
		t.Fatal("blob differs")
	}
}

// leaseHook is a driver that calls onLease, when set, before each
// garbage-collection lease it writes.
type leaseHook struct {
	storage.Driver
	mu      sync.Mutex
	onLease func()
}

func (d *leaseHook) Writer(ctx context.Context, p string, appending bool) (storage.FileWriter, error) {
	if strings.Contains(p, "/_berth/gc/leases/") {
		d.mu.Lock()
		fn := d.onLease
		d.mu.Unlock()
		if fn != nil {
			fn()
		}
	}
	return d.Driver.Writer(ctx, p, appending)
}

// TestStoredBlobPush: pushing a blob whose bytes are stored already (to
// another repository) links it; a body that is not those bytes is
// DIGEST_INVALID and links nothing, so that knowing a digest never gets a
// blob into a repository; bytes collected while the body arrived answer
// 503 UNAVAILABLE with Retry-After, for the client to push again.
func TestStoredBlobPush(t *testing.T) {
	d := &leaseHook{Driver: inmemory.New()}
	e := newEnvOn(t, d)
	b := newBlob(bytes.Repeat([]byte("layer "), 50000))
	e.pushBlob("a", b)
	e.pushBlob("b", b)
	if r := e.get("/v2/b/blobs/" + b.digest.String()); r.status != http.StatusOK || !bytes.Equal(r.body, b.data) {
		t.Fatalf("the blob pushed again: %d, %d bytes", r.status, len(r.body))
	}

	wrong := bytes.Clone(b.data)
	wrong[0] ^= 1
	r := e.do(req{method: "POST", path: "/v2/c/blobs/uploads/?digest=" + b.digest.String(), body: bytes.NewReader(wrong)})
	wantError(t, r, http.StatusBadRequest, "DIGEST_INVALID")
	wantError(t, e.head("/v2/c/blobs/"+b.digest.String()), http.StatusNotFound, "")

	var leases int
	d.mu.Lock()
	d.onLease = func() {
		// The first lease is the one before the body, the second the
		// one after it: delete the bytes in between, as a collector
		// without grace would.
		if leases++; leases == 2 {
			hex := b.digest.Encoded()
			if err := d.Driver.Delete(context.Background(), "/docker/registry/v2/blobs/sha256/"+hex[:2]+"/"+hex); err != nil {
				t.Error(err)
			}
		}
	}
	d.mu.Unlock()
	r = e.do(req{method: "POST", path: "/v2/e/blobs/uploads/?digest=" + b.digest.String(), body: bytes.NewReader(b.data)})
	wantError(t, r, http.StatusServiceUnavailable, "UNAVAILABLE")
	if r.header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	wantError(t, e.head("/v2/e/blobs/"+b.digest.String()), http.StatusNotFound, "")
	d.mu.Lock()
	d.onLease = nil
	d.mu.Unlock()
	e.pushBlob("e", b)
}

package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestReplicas runs two berth processes on one bucket and prefix, as
// replicas behind a load balancer would: A answers blob GETs with redirects
// to the bucket (the default), B serves the bytes itself, so that reads
// through B read the bucket and reads through A hand out presigned URLs.
// Neither holds state the other lacks: what one wrote, the other serves.
func TestReplicas(t *testing.T) {
	needIntegration(t)
	gw := startVersity(t)
	const prefix = "replicas"
	a := startBerthS3(t, gw, prefix, true)
	b := startBerthS3(t, gw, prefix, false)

	t.Run("chunked-upload-across-replicas", func(t *testing.T) {
		replicaChunkedUpload(t, gw.Endpoint, a, b)
	})

	t.Run("push-through-one-pull-through-the-other", func(t *testing.T) {
		env := toolEnv(t)
		needTools(t, env, "skopeo", "crane")
		dir, imgs := testImages(t)
		pushImages(t, env, a.Host, "replicas", dir, imgs)
		verifyImages(t, env, b.Host, "replicas", dir, imgs)
		compareSnapshots(t, "replica A", snapshot(t, env, a.Host), "replica B", snapshot(t, env, b.Host))
	})

	t.Run("conformance-while-the-other-serves-pulls", func(t *testing.T) {
		img := newRawImage(t, "replicas/pull-loop", 512<<10)
		img.push(t, b.URL, b.URL, 0)
		ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
		defer cancel()
		const maxPulls = 3000
		var (
			wg    sync.WaitGroup
			pulls int
			err   error
		)
		start := time.Now()
		wg.Go(func() { pulls, err = img.pullLoop(ctx, b.URL, maxPulls) })
		runConformanceRedirected(t, a.URL)
		cancel()
		wg.Wait()
		elapsed := time.Since(start)
		if err != nil {
			t.Errorf("pull %d through replica B failed while the suite ran against A: %v", pulls+1, err)
		}
		if pulls == 0 {
			t.Errorf("no complete pull through replica B while the suite ran against A")
		}
		t.Logf("%d pulls of %s (manifest, config, %d KiB layer) through replica B in %.1fs, all verified",
			pulls, img.repo, len(img.layer)>>10, elapsed.Seconds())
		checkRedirects(t, a, true)
		checkRedirects(t, b, false)
	})

	// The second replica passes both suites too, over the bucket the first
	// one has been writing to.
	t.Run("suites-against-the-second-replica", func(t *testing.T) {
		runConformance(t, b.URL)
		runClients(t, b.URL)
	})
}

// replicaChunkedUpload drives one chunked blob upload through both
// replicas in turn with raw HTTP: POST on A, PATCH on B, a stale PATCH on A
// (refused: A sees B's progress), PATCH on A, status on B, the final PUT on
// B; then reads the blob through both.
func replicaChunkedUpload(t *testing.T, bucketEndpoint string, a, b *Server) {
	const repo = "replicas/chunked"
	// A first chunk under S3's 5 MiB minimum part size, one over it, and a
	// last one with the PUT.
	sizes := []int{1<<20 + 17, 6 << 20, 300 << 10, 4 << 10}
	var chunks [][]byte
	var all []byte
	for _, n := range sizes {
		c := randomBytes(n)
		chunks = append(chunks, c)
		all = append(all, c...)
	}
	dgst := sha256Digest(all)

	resp, _ := httpDo(t, noRedirect, http.MethodPost, a.URL+"/v2/"+repo+"/blobs/uploads/", nil, nil, http.StatusAccepted)
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "/v2/"+repo+"/blobs/uploads/") {
		t.Fatalf("POST on A: Location %q is not a path on this registry", loc)
	}
	t.Logf("POST on A: upload %s", loc)

	var off int
	patch := func(s *Server, name string, c []byte) {
		t.Helper()
		resp, _ := httpDo(t, noRedirect, http.MethodPatch, s.URL+loc, c, map[string]string{
			"Content-Type":  "application/octet-stream",
			"Content-Range": fmt.Sprintf("%d-%d", off, off+len(c)-1),
		}, http.StatusAccepted)
		off += len(c)
		if got, want := resp.Header.Get("Range"), fmt.Sprintf("0-%d", off-1); got != want {
			t.Fatalf("PATCH on %s: Range %q, want %q", name, got, want)
		}
		if l := resp.Header.Get("Location"); l != "" {
			loc = l
		}
		t.Logf("PATCH on %s: %d bytes, Range 0-%d", name, len(c), off-1)
	}
	patch(b, "B", chunks[0])

	// A client that lost track (or a replica with stale state) resending from 0.
	resp, _ = httpDo(t, noRedirect, http.MethodPatch, a.URL+loc, chunks[1], map[string]string{
		"Content-Type": "application/octet-stream", "Content-Range": fmt.Sprintf("0-%d", len(chunks[1])-1),
	}, http.StatusRequestedRangeNotSatisfiable)
	t.Logf("stale PATCH on A: %s, Range %q", resp.Status, resp.Header.Get("Range"))

	patch(a, "A", chunks[1])
	patch(a, "A", chunks[2])

	resp, _ = httpDo(t, noRedirect, http.MethodGet, b.URL+loc, nil, nil, http.StatusNoContent)
	if got, want := resp.Header.Get("Range"), fmt.Sprintf("0-%d", off-1); got != want {
		t.Fatalf("GET status on B: Range %q, want %q", got, want)
	}
	t.Logf("GET status on B: Range %s", resp.Header.Get("Range"))

	last := chunks[3]
	resp, _ = httpDo(t, noRedirect, http.MethodPut, b.URL+withQuery(loc, "digest", dgst), last, map[string]string{
		"Content-Type":  "application/octet-stream",
		"Content-Range": fmt.Sprintf("%d-%d", off, off+len(last)-1),
	}, http.StatusCreated)
	if got := resp.Header.Get("Docker-Content-Digest"); got != dgst {
		t.Errorf("PUT on B: Docker-Content-Digest %q, want %s", got, dgst)
	}
	t.Logf("PUT on B: %s, %d bytes", dgst, len(all))

	// The upload is gone on both.
	for _, s := range []*Server{a, b} {
		httpDo(t, noRedirect, http.MethodGet, s.URL+loc, nil, nil, http.StatusNotFound)
	}

	// A redirects to the bucket, B serves the bytes; both give the blob.
	blobURL := "/v2/" + repo + "/blobs/" + dgst
	resp, _ = httpDo(t, noRedirect, http.MethodGet, a.URL+blobURL, nil, nil, http.StatusTemporaryRedirect)
	if l := resp.Header.Get("Location"); !strings.HasPrefix(l, bucketEndpoint+"/") {
		t.Errorf("GET blob on A: Location %q, want a URL on the bucket's endpoint %s", l, bucketEndpoint)
	}
	for _, s := range []struct {
		name string
		srv  *Server
	}{{"A (redirected)", a}, {"B", b}} {
		resp, body := httpDo(t, http.DefaultClient, http.MethodGet, s.srv.URL+blobURL, nil, nil, http.StatusOK)
		if !bytes.Equal(body, all) {
			t.Errorf("GET blob through %s: %d bytes, digest %s; want %d bytes, %s", s.name, len(body), sha256Digest(body), len(all), dgst)
		}
		resp, _ = httpDo(t, noRedirect, http.MethodHead, s.srv.URL+blobURL, nil, nil, http.StatusOK)
		if got := resp.Header.Get("Content-Length"); got != strconv.Itoa(len(all)) {
			t.Errorf("HEAD blob on %s: Content-Length %q, want %d", s.name, got, len(all))
		}
	}
}

// rawImage is a small OCI image (config, one random layer, manifest) and a
// referrer artifact for it, pushed and pulled with raw HTTP. Its bytes are
// fixed once made, so pushing it to two registries stores the same content.
type rawImage struct {
	repo            string
	config, layer   []byte
	manifest        []byte
	manifestDigest  string
	referrer, empty []byte
	referrerDigest  string
}

const (
	ociManifest = "application/vnd.oci.image.manifest.v1+json"
	ociEmpty    = "application/vnd.oci.empty.v1+json"
)

func newRawImage(t *testing.T, repo string, layerSize int) *rawImage {
	t.Helper()
	img := &rawImage{
		repo:   repo,
		config: []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`),
		layer:  randomBytes(layerSize),
		empty:  []byte("{}"),
	}
	desc := func(mt string, b []byte) map[string]any {
		return map[string]any{"mediaType": mt, "digest": sha256Digest(b), "size": len(b)}
	}
	img.manifest = mustJSON(t, map[string]any{
		"schemaVersion": 2, "mediaType": ociManifest,
		"config": desc("application/vnd.oci.image.config.v1+json", img.config),
		"layers": []any{desc("application/vnd.oci.image.layer.v1.tar", img.layer)},
	})
	img.manifestDigest = sha256Digest(img.manifest)
	img.referrer = mustJSON(t, map[string]any{
		"schemaVersion": 2, "mediaType": ociManifest,
		"artifactType": "application/vnd.berth.test.signature",
		"config":       desc(ociEmpty, img.empty),
		"layers":       []any{desc(ociEmpty, img.empty)},
		"subject":      desc(ociManifest, img.manifest),
	})
	img.referrerDigest = sha256Digest(img.referrer)
	return img
}

// push uploads the config monolithically and the layer in chunk-byte PATCHes
// (0: one PATCH), POSTing on postBase and PATCHing on patchBase, then tags
// the manifest v1.
func (img *rawImage) push(t *testing.T, postBase, patchBase string, chunk int) {
	t.Helper()
	putBlob(t, postBase, img.repo, img.config)
	if chunk <= 0 {
		chunk = len(img.layer)
	}
	resp, _ := httpDo(t, noRedirect, http.MethodPost, postBase+"/v2/"+img.repo+"/blobs/uploads/", nil, nil, http.StatusAccepted)
	loc := resp.Header.Get("Location")
	for off := 0; off < len(img.layer); off += chunk {
		c := img.layer[off:min(off+chunk, len(img.layer))]
		resp, _ := httpDo(t, noRedirect, http.MethodPatch, at(patchBase, loc), c, map[string]string{
			"Content-Type": "application/octet-stream", "Content-Range": fmt.Sprintf("%d-%d", off, off+len(c)-1),
		}, http.StatusAccepted)
		if l := resp.Header.Get("Location"); l != "" {
			loc = l
		}
	}
	httpDo(t, noRedirect, http.MethodPut, at(postBase, withQuery(loc, "digest", sha256Digest(img.layer))), nil, nil, http.StatusCreated)
	putManifest(t, postBase, img.repo, "v1", img.manifest)
}

// pushReferrer pushes the referrer artifact (after push).
func (img *rawImage) pushReferrer(t *testing.T, base string) {
	t.Helper()
	putBlob(t, base, img.repo, img.empty)
	resp := putManifest(t, base, img.repo, img.referrerDigest, img.referrer)
	if got := resp.Header.Get("OCI-Subject"); got != img.manifestDigest {
		t.Errorf("PUT referrer: OCI-Subject %q, want %s", got, img.manifestDigest)
	}
}

// pullLoop pulls the image from base (manifest by tag, then each blob,
// following redirects) and verifies every digest, until ctx ends or max
// pulls are done. It returns the complete pulls and the first failure; a
// pull cut by ctx's end is not one.
func (img *rawImage) pullLoop(ctx context.Context, base string, max int) (int, error) {
	client := &http.Client{Timeout: time.Minute}
	get := func(path, accept string) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		if err != nil {
			return nil, err
		}
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %s: %.200s", path, resp.Status, body)
		}
		return body, nil
	}
	want := map[string][]byte{"/manifests/v1": img.manifest,
		"/blobs/" + sha256Digest(img.config): img.config, "/blobs/" + sha256Digest(img.layer): img.layer}
	paths := []string{"/manifests/v1", "/blobs/" + sha256Digest(img.config), "/blobs/" + sha256Digest(img.layer)}
	for n := 0; n < max; n++ {
		for _, p := range paths {
			body, err := get("/v2/"+img.repo+p, ociManifest)
			if ctx.Err() != nil {
				return n, nil
			}
			if err != nil {
				return n, err
			}
			if !bytes.Equal(body, want[p]) {
				return n, fmt.Errorf("GET %s: %d bytes, digest %s; want %s", p, len(body), sha256Digest(body), sha256Digest(want[p]))
			}
		}
		select {
		case <-ctx.Done():
			return n + 1, nil
		case <-time.After(10 * time.Millisecond):
		}
	}
	return max, nil
}

// noRedirect is a client that returns redirects instead of following them.
var noRedirect = &http.Client{
	Timeout:       2 * time.Minute,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// httpDo sends a request and fails t unless the status is want; it returns
// the response (body closed) and the body.
func httpDo(t *testing.T, client *http.Client, method, url string, body []byte, header map[string]string, want int) (*http.Response, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %s, want %d: %.300s", method, url, resp.Status, want, got)
	}
	return resp, got
}

// putBlob uploads b monolithically (POST, then PUT with the bytes).
func putBlob(t *testing.T, base, repo string, b []byte) {
	t.Helper()
	resp, _ := httpDo(t, noRedirect, http.MethodPost, base+"/v2/"+repo+"/blobs/uploads/", nil, nil, http.StatusAccepted)
	httpDo(t, noRedirect, http.MethodPut, at(base, withQuery(resp.Header.Get("Location"), "digest", sha256Digest(b))), b,
		map[string]string{"Content-Type": "application/octet-stream"}, http.StatusCreated)
}

func putManifest(t *testing.T, base, repo, ref string, m []byte) *http.Response {
	t.Helper()
	resp, _ := httpDo(t, noRedirect, http.MethodPut, base+"/v2/"+repo+"/manifests/"+ref, m,
		map[string]string{"Content-Type": ociManifest}, http.StatusCreated)
	return resp
}

// withQuery adds key=value to the URL or path u.
// at is the upload location loc on the registry at base: berth answers
// with a path, docker-registry with an absolute URL, whose path is taken.
func at(base, loc string) string {
	if u, err := url.Parse(loc); err == nil && u.IsAbs() {
		loc = u.RequestURI()
	}
	return base + loc
}

func withQuery(u, key, value string) string {
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	return u + sep + key + "=" + value
}

func sha256Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

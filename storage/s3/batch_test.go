package s3

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/smithy-go"

	"github.com/berth-registry/berth/internal/versitygw"
	"github.com/berth-registry/berth/storage"
)

// s3Proxy forwards requests to an S3 endpoint, counting them by operation
// and DeleteObjects requests in flight, and can replace the answer to
// DeleteObjects with one of its own.
type s3Proxy struct {
	srv *httptest.Server

	mu             sync.Mutex
	counts         map[string]int
	inFlight, peak int // DeleteObjects requests
	// deleteResult, if set, is the body answered to DeleteObjects after
	// forwarding it (so the keys are deleted all the same).
	deleteResult string
	// full makes it refuse writes as a bucket over its quota does (507,
	// MinIO's XMinioStorageFull) until a delete frees room.
	full bool
}

// setFull makes the proxy refuse writes until the next delete.
func (p *s3Proxy) setFull() {
	p.mu.Lock()
	p.full = true
	p.mu.Unlock()
}

func newS3Proxy(t *testing.T, endpoint string) *s3Proxy {
	target, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	p := &s3Proxy{counts: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(resp *http.Response) error {
		p.mu.Lock()
		body := p.deleteResult
		p.mu.Unlock()
		if operation(resp.Request) != "DeleteObjects" || body == "" || resp.StatusCode != http.StatusOK {
			return nil
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		resp.Body = io.NopCloser(strings.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Set("Content-Length", fmt.Sprint(len(body)))
		return nil
	}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := operation(r)
		p.mu.Lock()
		if op == http.MethodDelete || op == "DeleteObjects" {
			p.full = false
		}
		if p.full && (op == http.MethodPut || op == http.MethodPost) {
			p.mu.Unlock()
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusInsufficientStorage)
			io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>XMinioStorageFull</Code>`+
				`<Message>Storage backend has reached its minimum free drive threshold.</Message></Error>`)
			return
		}
		p.counts[op]++
		if op == "DeleteObjects" {
			p.inFlight++
			p.peak = max(p.peak, p.inFlight)
		}
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
		if op == "DeleteObjects" {
			p.mu.Lock()
			p.inFlight--
			p.mu.Unlock()
		}
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// operation names the S3 operation of r, or its method.
func operation(r *http.Request) string {
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodPost && q.Has("delete"):
		return "DeleteObjects"
	case r.Method == http.MethodGet && q.Get("list-type") == "2":
		return "ListObjectsV2"
	case r.Method == http.MethodDelete && q.Has("uploadId"):
		return "AbortMultipartUpload"
	}
	return r.Method
}

// answerDeletes makes the proxy answer DeleteObjects with body, or with
// the server's answer if body is "".
func (p *s3Proxy) answerDeletes(body string) {
	p.mu.Lock()
	p.deleteResult = body
	p.mu.Unlock()
}

// reset zeroes the counts and returns those until now.
func (p *s3Proxy) reset() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	counts := p.counts
	p.counts, p.peak = map[string]int{}, 0
	return counts
}

// blobPath returns the path of the data of a blob numbered i in the
// registry's layout.
func blobPath(i int) string {
	hex := fmt.Sprintf("%x", sha256.Sum256([]byte(fmt.Sprint(i))))
	return "/docker/registry/v2/blobs/sha256/" + hex[:2] + "/" + hex + "/data"
}

// testDeleteFilesBatches deletes more than 2000 blobs, content left by
// Close with multipart uploads, missing and invalid paths in one
// DeleteFiles call, through a proxy that counts the requests: one listing
// of the pending objects, DeleteObjects of 1000 keys at most, no more than
// deleteConcurrency at once. It also checks that Walk over the blobs reads
// flat listings, a request per 1000 keys, not one per directory.
func testDeleteFilesBatches(t *testing.T, srv *versitygw.Server) {
	ctx := t.Context()
	proxy := newS3Proxy(t, srv.Endpoint)
	d := newTestDriver(t, srv, func(c *Config) { c.Endpoint = proxy.srv.URL })
	d.partSize = minPartSize

	const n = 2100
	var blobs []string
	for i := range n {
		blobs = append(blobs, blobPath(i))
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for _, p := range blobs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := storage.WriteAll(ctx, d, p, []byte(p)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Content left by Close, with a part in a multipart upload: alone, and
	// hidden under committed content.
	closed, hidden := blobPath(n), blobPath(n+1)
	for _, p := range []string{closed, hidden} {
		w := mustWriter(t, d, p, false)
		writeChunks(t, w, randomBytes(6<<20, 21), 1<<20)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := storage.WriteAll(ctx, d, hidden, []byte("committed")); err != nil {
		t.Fatal(err)
	}
	if _, uploads := bucketContents(t, d); len(uploads) != 2 {
		t.Fatalf("%d multipart uploads before DeleteFiles, want 2", len(uploads))
	}

	// Walk lists flat: the committed keys 1000 a request, and the pending
	// ones. Listing a directory at a time would take a request for each
	// of the more than 2000 directories.
	proxy.reset()
	walked := 0
	start := time.Now()
	err := d.Walk(ctx, "/docker/registry/v2/blobs", func(fi storage.FileInfo) error {
		if !fi.IsDir {
			walked++
		}
		return nil
	})
	took := time.Since(start)
	if err != nil || walked != n+2 {
		t.Fatalf("Walk over the blobs: %d files, %v; want %d", walked, err, n+2)
	}
	counts := proxy.reset()
	t.Logf("Walk over %d blobs: %v, requests %v", n+2, took, counts)
	if want := (n+1+defaultPageSize-1)/defaultPageSize + 1; counts["ListObjectsV2"] != want {
		t.Errorf("Walk over %d blobs made %d listing requests, want %d", n+2, counts["ListObjectsV2"], want)
	}

	missing := []string{blobPath(n + 2), "/docker/registry/v2/blobs/sha256/zz/none/data"}
	invalid := []string{"/_berth/pending/docker/x", "/_berth", "/", "relative"}
	paths := slices.Concat(blobs, []string{closed, hidden}, missing, invalid, blobs[:3])
	start = time.Now()
	results := storage.DeleteFiles(ctx, d, paths, 1)
	took = time.Since(start)
	counts = proxy.reset()
	t.Logf("DeleteFiles of %d paths: %v, requests %v", len(paths), took, counts)
	if len(results) != len(paths) {
		t.Fatalf("DeleteFiles returned %d results for %d paths", len(results), len(paths))
	}
	for i, err := range results {
		if slices.Contains(invalid, paths[i]) {
			if !errors.Is(err, storage.ErrInvalidPath) {
				t.Errorf("DeleteFiles: %q: %v, want ErrInvalidPath", paths[i], err)
			}
		} else if err != nil {
			t.Errorf("DeleteFiles: %q: %v", paths[i], err)
		}
	}
	// The committed keys of the valid paths, 1000 a request, and one
	// request for each pending object.
	keys := n + 2 + len(missing)
	if want := (keys+deleteBatch-1)/deleteBatch + 2; counts["DeleteObjects"] != want {
		t.Errorf("DeleteObjects requests: %d, want %d", counts["DeleteObjects"], want)
	}
	if counts["ListObjectsV2"] != 1 || counts["AbortMultipartUpload"] != 2 {
		t.Errorf("requests %v; want one listing and two aborted uploads", counts)
	}
	proxy.mu.Lock()
	peak := proxy.peak
	proxy.mu.Unlock()
	if peak > deleteConcurrency {
		t.Errorf("%d DeleteObjects requests in flight at once, more than %d", peak, deleteConcurrency)
	}
	if got, err := d.List(ctx, "/"); err != nil || len(got) != 0 {
		t.Errorf(`List("/") after DeleteFiles = %q, %v; want nothing`, got, err)
	}
	// newTestDriver's clean-up fails the test if an object or an upload is left.
}

// testDeleteFilesKeyErrors checks that the errors DeleteObjects reports
// for single keys reach the results of their paths: NoSuchKey as success,
// others as errors with S3's code; and that an error about a key not asked
// for fails every path of its request.
func testDeleteFilesKeyErrors(t *testing.T, srv *versitygw.Server) {
	ctx := t.Context()
	proxy := newS3Proxy(t, srv.Endpoint)
	d := newTestDriver(t, srv, func(c *Config) { c.Endpoint = proxy.srv.URL })
	paths := []string{"/e/ok", "/e/denied", "/e/gone"}
	for _, p := range paths {
		if err := storage.WriteAll(ctx, d, p, []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	result := func(errs ...string) string {
		return `<?xml version="1.0" encoding="UTF-8"?>` +
			`<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">` + strings.Join(errs, "") + `</DeleteResult>`
	}
	keyError := func(key, code string) string {
		return "<Error><Key>" + key + "</Key><Code>" + code + "</Code><Message>" + code + " here</Message></Error>"
	}

	proxy.answerDeletes(result(keyError(d.key("/e/denied"), "AccessDenied"), keyError(d.key("/e/gone"), "NoSuchKey")))
	errs := storage.DeleteFiles(ctx, d, paths, 1)
	var apiErr smithy.APIError
	if len(errs) != 3 || errs[0] != nil || errs[2] != nil ||
		!errors.As(errs[1], &apiErr) || apiErr.ErrorCode() != "AccessDenied" || !strings.Contains(errs[1].Error(), "/e/denied") {
		t.Errorf("DeleteFiles with AccessDenied for /e/denied and NoSuchKey for /e/gone = %v; want nil, an AccessDenied error naming /e/denied, nil", errs)
	}

	proxy.answerDeletes(result(keyError(d.base+"elsewhere", "InternalError")))
	errs = storage.DeleteFiles(ctx, d, paths, 1)
	if len(errs) != 3 || slices.Contains(errs, nil) {
		t.Errorf("DeleteFiles with an error about a key not asked for = %v; want an error for every path", errs)
	}

	proxy.answerDeletes("")
	if err := errors.Join(storage.DeleteFiles(ctx, d, paths, 1)...); err != nil {
		t.Errorf("DeleteFiles: %v", err)
	}
}

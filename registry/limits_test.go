package registry_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/registry"
	"github.com/berth-registry/berth/storage/store"
)

func withMaxUploads(n int) envOption {
	return func(o *registry.Options, _ *store.Options) { o.MaxConcurrentUploads = n }
}

// TestUploadCap: with the uploads cap reached, a new upload body (PATCH,
// monolithic POST, PUT with a final chunk) is answered 429
// TOOMANYREQUESTS with Retry-After before its body is read, a PATCH with
// where the upload stands; what carries no body (starting an upload, the
// PUT that ends one, reads) goes on; once the bodies in progress end, a
// new one is taken.
func TestUploadCap(t *testing.T) {
	e := newEnv(t, withMaxUploads(2), withMetrics)
	held1, _ := silentPatch(t, e, "held")
	held2, _ := silentPatch(t, e, "held")
	// The two PATCHes are in their handlers once the gauge says so.
	waitFor(t, func() bool {
		return strings.Contains(string(e.get("/metrics").body), "berth_uploads_in_progress 2")
	})

	chunked := randomBlob(7, 3000)
	r := e.do(req{method: "POST", path: "/v2/app/blobs/uploads/"})
	wantStatus(t, r, http.StatusAccepted)
	loc := strings.TrimPrefix(r.header.Get("Location"), e.srv.URL)
	refused := []req{
		{method: "PATCH", path: loc, body: strings.NewReader(string(chunked.data[:1000])),
			header: map[string]string{"Content-Type": "application/octet-stream", "Content-Range": "0-999"}},
		{method: "POST", path: "/v2/app/blobs/uploads/?digest=" + chunked.digest.String(), body: strings.NewReader(string(chunked.data))},
		{method: "PUT", path: withDigest(loc, chunked.digest.String()), body: strings.NewReader(string(chunked.data))},
	}
	for _, q := range refused {
		r := e.do(q)
		wantError(t, r, http.StatusTooManyRequests, "TOOMANYREQUESTS")
		if got := r.header.Get("Retry-After"); got != "1" {
			t.Errorf("%s %s: Retry-After %q, want 1", q.method, q.path, got)
		}
		if !strings.Contains(string(r.body), "too many uploads in progress (the limit is 2)") {
			t.Errorf("%s: message %s does not name the limit", q.method, r.body)
		}
	}
	if r := e.do(refused[0]); r.header.Get("Range") != "0-0" && r.header.Get("Range") != "" {
		t.Errorf("a refused PATCH says the upload holds %q; nothing was appended", r.header.Get("Range"))
	} else if r.header.Get("Location") == "" {
		t.Errorf("a refused PATCH lacks the upload's Location to resume at")
	}
	if strings.Contains(e.logs.String(), `"level":"ERROR"`) {
		t.Errorf("a refusal for the uploads cap was logged as an error:\n%s", e.logs)
	}

	// The held bodies go away: their slots are free again.
	held1.Close()
	held2.Close()
	waitFor(t, func() bool {
		return strings.Contains(string(e.get("/metrics").body), "berth_uploads_in_progress 0")
	})
	for _, q := range []req{
		{method: "PATCH", path: loc, body: strings.NewReader(string(chunked.data[:1000])),
			header: map[string]string{"Content-Type": "application/octet-stream", "Content-Range": "0-999"}},
		{method: "PATCH", path: loc, body: strings.NewReader(string(chunked.data[1000:])),
			header: map[string]string{"Content-Type": "application/octet-stream", "Content-Range": "1000-2999"}},
	} {
		wantStatus(t, e.do(q), http.StatusAccepted)
	}
	wantStatus(t, e.do(req{method: "PUT", path: withDigest(loc, chunked.digest.String())}), http.StatusCreated)
	r = e.get("/v2/app/blobs/" + chunked.digest.String())
	wantStatus(t, r, http.StatusOK)
	if string(r.body) != string(chunked.data) {
		t.Errorf("the blob pushed after the refusals differs")
	}
}

func withDigest(loc, d string) string {
	if strings.Contains(loc, "?") {
		return loc + "&digest=" + d
	}
	return loc + "?digest=" + d
}

// waitFor polls cond until it holds; a minute without is a failure (a
// guard against a hang, not a timing assertion).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within a minute")
		}
	}
}

package push_test

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/berth-registry/berth/runner/pull"
	"github.com/berth-registry/berth/runner/push"
)

// TestPushMountsThenSkips: an image pulled from one repository and tagged for
// another of the same registry is mounted blob by blob, keeps its manifest digest,
// and a second push finds every blob there.
func TestPushMountsThenSkips(t *testing.T) {
	reg := newTestRegistry(t)
	src := reg.putImage("src/app", "1", 1, 3000, 2<<20)
	s := pulled(t, reg.Host+"/src/app:1")
	target := reg.Host + "/dst/app:2"
	if _, err := s.Tag(reg.Host+"/src/app:1", target); err != nil {
		t.Fatal(err)
	}

	ev := &events{}
	opts := smallOpts
	opts.Progress = ev
	res, err := push.Push(t.Context(), s, testClient(), target, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Digest != src.digest || res.Size != int64(len(src.manifest)) {
		t.Errorf("pushed %s (%d bytes), want the pulled manifest %s (%d bytes)", res.Digest, res.Size, src.digest, len(src.manifest))
	}
	if got := reg.get("/v2/dst/app/manifests/2"); !bytes.Equal(got, src.manifest) {
		t.Errorf("the pushed manifest differs from the pulled one:\n%s", got)
	}
	log := reg.requests()
	mounts := 0
	for _, r := range log {
		if r.method == http.MethodPost && strings.Contains(r.query, "mount=") && strings.Contains(r.query, "from=src%2Fapp") && r.status == http.StatusCreated {
			mounts++
		}
	}
	if mounts != 3 || count(log, http.MethodPatch, "") != 0 || count(log, http.MethodPut, "/blobs/uploads/") != 0 {
		t.Errorf("%d mounts, %d PATCH, %d upload PUT; want the config and both layers mounted, nothing uploaded", mounts,
			count(log, http.MethodPatch, ""), count(log, http.MethodPut, "/blobs/uploads/"))
	}
	if m := ev.kinds(push.EventLayerMounted); len(m) != 2 || m[0].From != "src/app" {
		t.Errorf("mounted events %+v, want both layers from src/app", m)
	}

	// Again: the tag names the manifest already; nothing is sent.
	ev = &events{}
	opts.Progress = ev
	if _, err := push.Push(t.Context(), s, testClient(), target, opts); err != nil {
		t.Fatal(err)
	}
	log = reg.requests()
	if n := count(log, http.MethodPost, "") + count(log, http.MethodPut, "") + count(log, http.MethodHead, "/blobs/"); n != 0 {
		t.Errorf("second push: %d POST, PUT or blob HEAD requests, want none", n)
	}
	if n := len(ev.kinds(push.EventLayerExists)); n != 2 {
		t.Errorf("second push: %d layers reported as existing, want 2", n)
	}
	// Under another tag: the manifest is there by digest; only the tag is sent.
	other := reg.Host + "/dst/app:3"
	if _, err := s.Tag(target, other); err != nil {
		t.Fatal(err)
	}
	if _, err := push.Push(t.Context(), s, testClient(), other, opts); err != nil {
		t.Fatal(err)
	}
	log = reg.requests()
	if n := count(log, http.MethodPost, "") + count(log, http.MethodHead, "/blobs/"); n != 0 || count(log, http.MethodPut, "/manifests/3") != 1 {
		t.Errorf("push of another tag: %d POSTs and blob HEADs, %d manifest PUTs; want none and 1", n, count(log, http.MethodPut, "/manifests/3"))
	}
	if got := reg.get("/v2/dst/app/manifests/3"); !bytes.Equal(got, src.manifest) {
		t.Error("the other tag does not name the manifest")
	}
}

// TestPushUploads: to another registry, the small layer goes in one PUT and the
// large one in PATCH chunks streamed from the store, and the blobs arrive intact.
func TestPushUploads(t *testing.T) {
	from := newTestRegistry(t)
	src := from.putImage("src/app", "1", 2, 3000, 2<<20+123)
	s := pulled(t, from.Host+"/src/app:1")
	to := newTestRegistry(t)
	target := to.Host + "/team/app:v1"
	if _, err := s.Tag(from.Host+"/src/app:1", target); err != nil {
		t.Fatal(err)
	}
	res, err := push.Push(t.Context(), s, testClient(), target, smallOpts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Digest != src.digest {
		t.Errorf("pushed %s, want %s", res.Digest, src.digest)
	}
	log := to.requests()
	if n := count(log, http.MethodPatch, "/blobs/uploads/"); n != 5 { // 2 MiB + 123 bytes in 512 KiB chunks
		t.Errorf("%d PATCH requests, want 5", n)
	}
	for _, r := range log {
		if strings.Contains(r.query, "mount=") {
			t.Errorf("a mount was tried on a registry the image never came from: %+v", r)
		}
	}
	// The small layer and the config went in one PUT each, with their bytes.
	var wholePuts int
	for _, r := range log {
		if r.method == http.MethodPut && strings.Contains(r.path, "/blobs/uploads/") && r.in > 0 {
			wholePuts++
		}
	}
	if wholePuts != 2 {
		t.Errorf("%d upload PUTs with a body, want 2 (config, small layer)", wholePuts)
	}
	for d, b := range src.blobs {
		if got := to.get("/v2/team/app/blobs/" + d.String()); !bytes.Equal(got, b) {
			t.Errorf("blob %s: %d bytes differ from the %d pushed", d, len(got), len(b))
		}
	}
}

// TestPushResumesBrokenPatch: a chunk whose answer is lost with the connection is
// not sent again: the upload resumes where the registry says it stands, in the
// same session.
func TestPushResumesBrokenPatch(t *testing.T) {
	from := newTestRegistry(t)
	src := from.putImage("src/app", "1", 3, 2<<20)
	s := pulled(t, from.Host+"/src/app:1")
	to := newTestRegistry(t)
	var patches atomic.Int32
	to.setHook(func(w http.ResponseWriter, r *http.Request, inner http.Handler) bool {
		if r.Method != http.MethodPatch || patches.Add(1) != 2 {
			return false
		}
		// The registry stores the second chunk, then the line drops.
		inner.ServeHTTP(httptest.NewRecorder(), r)
		hangUp(t, w)
		return true
	})
	target := to.Host + "/team/app:v1"
	if _, err := s.Tag(from.Host+"/src/app:1", target); err != nil {
		t.Fatal(err)
	}
	ev := &events{}
	opts := smallOpts
	opts.Progress = ev
	if _, err := push.Push(t.Context(), s, testClient(), target, opts); err != nil {
		t.Fatal(err)
	}
	log := to.requests()
	if n := count(log, http.MethodPost, "/blobs/uploads/"); n != 2 {
		t.Errorf("%d POSTs, want 2 (config and layer): the broken upload was started again", n)
	}
	if n := count(log, http.MethodGet, "/blobs/uploads/"); n != 1 {
		t.Errorf("%d upload status GETs, want 1", n)
	}
	// The dropped chunk is logged when its handler returns, which may be after
	// the requests that followed it: look at ranges, not at the order.
	var sent int64
	starts := map[string]int{}
	for _, r := range log {
		if r.method == http.MethodPatch {
			sent += r.in
			start, _, _ := strings.Cut(r.contentRange, "-")
			starts[start]++
		}
	}
	layerSize := int64(len(src.blobs[src.layers[0]]))
	if sent != layerSize {
		t.Errorf("PATCH bodies hold %d bytes, want the layer's %d once", sent, layerSize)
	}
	if starts["524288"] != 1 || starts["1048576"] != 1 { // the second chunk once, then the third
		t.Errorf("PATCH ranges start at %v; want the dropped second chunk once, then the third", starts)
	}
	if n := len(ev.kinds(push.EventLayerRetry)); n != 1 {
		t.Errorf("%d retry events, want 1", n)
	}
	if got := to.get("/v2/team/app/blobs/" + src.layers[0].String()); !bytes.Equal(got, src.blobs[src.layers[0]]) {
		t.Error("the resumed blob differs from the layer")
	}
}

// TestPushRetries5xx: server errors are retried, the manifest PUT too.
func TestPushRetries5xx(t *testing.T) {
	from := newTestRegistry(t)
	src := from.putImage("src/app", "1", 4, 1000)
	s := pulled(t, from.Host+"/src/app:1")
	to := newTestRegistry(t)
	var posts, puts atomic.Int32
	to.setHook(func(w http.ResponseWriter, r *http.Request, _ http.Handler) bool {
		switch {
		case r.Method == http.MethodPost && posts.Add(1) == 1,
			r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") && puts.Add(1) == 1:
			ociError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "try again")
			return true
		}
		return false
	})
	target := to.Host + "/team/app:v1"
	if _, err := s.Tag(from.Host+"/src/app:1", target); err != nil {
		t.Fatal(err)
	}
	res, err := push.Push(t.Context(), s, testClient(), target, smallOpts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Digest != src.digest {
		t.Errorf("pushed %s, want %s", res.Digest, src.digest)
	}
	if got := to.get("/v2/team/app/manifests/v1"); !bytes.Equal(got, src.manifest) {
		t.Error("the manifest is not there")
	}
	if posts.Load() != 3 || puts.Load() != 2 {
		t.Errorf("%d POSTs and %d manifest PUTs, want 3 and 2", posts.Load(), puts.Load())
	}
}

// TestPushRefused: a 401 without credentials, a 403 and a rejected blob stop the
// push with the registry's own message, and no manifest is sent.
func TestPushRefused(t *testing.T) {
	from := newTestRegistry(t)
	from.putImage("src/app", "1", 5, 1000, 2000)
	s := pulled(t, from.Host+"/src/app:1")
	for _, tc := range []struct {
		name    string
		hook    func(w http.ResponseWriter, r *http.Request) bool
		is      error
		message string
	}{
		{"401 without credentials", func(w http.ResponseWriter, r *http.Request) bool {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			ociError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required to push to team/app")
			return true
		}, pull.ErrUnauthorized, "authentication required to push to team/app"},
		{"403", func(w http.ResponseWriter, r *http.Request) bool {
			if r.Method == http.MethodPost {
				ociError(w, http.StatusForbidden, "DENIED", "team/app is read-only")
				return true
			}
			return false
		}, pull.ErrDenied, "team/app is read-only"},
		{"blob rejected", func(w http.ResponseWriter, r *http.Request) bool {
			if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/") {
				ociError(w, http.StatusBadRequest, "BLOB_UPLOAD_INVALID", "quota exceeded for team/app")
				return true
			}
			return false
		}, nil, "quota exceeded for team/app"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			to := newTestRegistry(t)
			to.setHook(func(w http.ResponseWriter, r *http.Request, _ http.Handler) bool { return tc.hook(w, r) })
			target := to.Host + "/team/app:v1"
			if _, err := s.Tag(from.Host+"/src/app:1", target); err != nil {
				t.Fatal(err)
			}
			_, err := push.Push(t.Context(), s, testClient(), target, smallOpts)
			if err == nil || !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("push: %v; want the registry's message %q", err, tc.message)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("push: %v; want it to match %v", err, tc.is)
			}
			if n := count(to.requests(), http.MethodPut, "/manifests/"); n != 0 {
				t.Errorf("%d manifest PUTs after a failed blob, want none", n)
			}
		})
	}
}

// TestTags lists the tags of one repository.
func TestTags(t *testing.T) {
	reg := newTestRegistry(t)
	reg.putImage("src/app", "1", 6, 100)
	s := pulled(t, reg.Host+"/src/app:1")
	for _, tag := range []string{"dst/app:b", "dst/app:a", "other/app:c"} {
		if _, err := s.Tag(reg.Host+"/src/app:1", reg.Host+"/"+tag); err != nil {
			t.Fatal(err)
		}
	}
	got, err := push.Tags(s, reg.Host+"/dst/app")
	if err != nil || strings.Join(got, " ") != reg.Host+"/dst/app:a "+reg.Host+"/dst/app:b" {
		t.Errorf("Tags = %q, %v", got, err)
	}
	if _, err := push.Tags(s, reg.Host+"/none/app"); err == nil {
		t.Error("Tags of a repository without images: no error")
	}
}

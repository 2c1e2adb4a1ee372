package registry_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/berth-registry/berth/registry"
	"github.com/berth-registry/berth/registry/proxy"
	"github.com/berth-registry/berth/storage/inmemory"
	"github.com/berth-registry/berth/storage/store"
)

// newMirrorEnv is a registry whose pull-through cache has one upstream,
// "origin" at upstreamURL, served under the prefix origin/.
func newMirrorEnv(t *testing.T, upstreamURL string) *env {
	t.Helper()
	logs := &lockedBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d := inmemory.New()
	st := store.New(d, store.Options{Logger: logger})
	cache, err := proxy.New(proxy.Options{Store: st, Logger: logger,
		Upstreams: []proxy.Upstream{{Name: "origin", URL: upstreamURL, Prefix: "origin"}}})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(registry.Options{Store: st, Cache: cache, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg)
	t.Cleanup(srv.Close)
	return &env{t: t, driver: d, srv: srv, reg: reg, logs: logs}
}

// TestCacheByNS: a containerd mirror request (?ns=<upstream host>) names
// the cached repository, for every request and not only the first: a blob
// is served again from the cache once stored, and a local repository of
// the same name (src/app) is never what such a request reads.
func TestCacheByNS(t *testing.T) {
	up := newEnv(t)
	remote := up.pushImage("src/app", "v1", 1)
	mirror := newMirrorEnv(t, up.srv.URL)
	local := mirror.pushImage("src/app", "v1", 2) // a local repository named as the upstream's
	ns := "?ns=" + strings.TrimPrefix(up.srv.URL, "http://")

	for round := 1; round <= 2; round++ { // a miss, then a hit
		r := mirror.get("/v2/src/app/manifests/v1" + ns)
		if r.status != http.StatusOK || r.header.Get("Docker-Content-Digest") != remote.manifest.digest.String() {
			t.Fatalf("round %d: manifest v1 by ns: %d %s, want the upstream's %s", round, r.status,
				r.header.Get("Docker-Content-Digest"), remote.manifest.digest)
		}
		for _, b := range []blob{remote.config, remote.layer} {
			r := mirror.get("/v2/src/app/blobs/" + b.digest.String() + ns)
			if r.status != http.StatusOK || !bytes.Equal(r.body, b.data) {
				t.Errorf("round %d: blob %s by ns: %d %.200s", round, b.digest, r.status, r.body)
			}
			if r := mirror.head("/v2/src/app/blobs/" + b.digest.String() + ns); r.status != http.StatusOK {
				t.Errorf("round %d: HEAD blob %s by ns: %d", round, b.digest, r.status)
			}
		}
		// The local repository's blob is not the cached repository's.
		if r := mirror.get("/v2/src/app/blobs/" + local.layer.digest.String() + ns); r.status == http.StatusOK {
			t.Errorf("round %d: a blob of the local src/app served for the upstream's src/app", round)
		}
	}
	// The same content by the prefixed name, and the local repository
	// untouched.
	if r := mirror.get("/v2/origin/src/app/blobs/" + remote.layer.digest.String()); r.status != http.StatusOK {
		t.Errorf("blob by the prefixed name: %d", r.status)
	}
	if r := mirror.get("/v2/src/app/manifests/v1"); r.header.Get("Docker-Content-Digest") != local.manifest.digest.String() {
		t.Errorf("local src/app:v1 is %s, want %s", r.header.Get("Docker-Content-Digest"), local.manifest.digest)
	}
}

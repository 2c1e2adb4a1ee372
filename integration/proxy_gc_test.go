package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestProxyCacheExpiry: with expireAfter set, berth gc deletes a cached
// image nobody pulled for that long (its tag, manifest and the blobs only
// it needs), keeps a cached image pulled lately, and keeps the blob the
// expired image shares with a local image; the expired image pulls again
// through the mirror afterwards. berth du reports cache and local bytes
// apart.
func TestProxyCacheExpiry(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	up := startServer(t, Berth, Filesystem, t.TempDir())
	root := t.TempDir()
	const expireAfter = 4 * time.Second
	mirror := startServerWith(t, Options{Kind: Berth, Root: root, Extra: fmt.Sprintf(
		"proxy:\n  upstreams:\n    - name: up\n      url: %s\n      prefix: up.test\n      expireAfter: %s\n", up.URL, expireAfter)})

	shared := randomLayer(32 << 10)
	old := newImage(shared, randomLayer(16<<10))
	kept := newImage(randomLayer(8 << 10))
	local := newImage(shared, randomLayer(4<<10))
	pushTree(t, up.URL, "lib/old", "v1", old)
	pushTree(t, up.URL, "lib/kept", "v1", kept)
	pullTree(t, mirror.URL, "up.test/lib/old", "v1", old)
	pullTree(t, mirror.URL, "up.test/lib/kept", "v1", kept)
	pushTree(t, mirror.URL, "team/app", "v1", local)

	// Past expireAfter for both; then kept is pulled again (by tag and by
	// digest), which notes the pull.
	time.Sleep(expireAfter + time.Second)
	pullTree(t, mirror.URL, "up.test/lib/kept", "v1", kept)
	pullTree(t, mirror.URL, "up.test/lib/kept", kept.digest, kept)

	rep := mustBerthGC(t, "--config", mirror.ConfigPath, "--grace", "1s")
	var tags []string
	for _, tg := range rep.Tags {
		tags = append(tags, tg.Repository+":"+tg.Tag)
	}
	if !slices.Equal(tags, []string{"up.test/lib/old:v1"}) {
		t.Errorf("gc deleted tags %v, want only up.test/lib/old:v1", tags)
	}
	dataPath := func(d string) string {
		hex := strings.TrimPrefix(d, "sha256:")
		return filepath.Join(root, "docker/registry/v2/blobs/sha256", hex[:2], hex, "data")
	}
	exists := func(d string) bool {
		_, err := os.Stat(dataPath(d))
		return err == nil
	}
	for _, b := range []string{old.digest, old.blobs[0].digest, old.blobs[2].digest} {
		if exists(b) {
			t.Errorf("%s of the expired image is still stored", b)
		}
	}
	if !exists(shared.digest) {
		t.Errorf("the layer the expired image shares with team/app was deleted")
	}
	for _, b := range append([]gcBlob{{digest: kept.digest}}, kept.blobs...) {
		if !exists(b.digest) {
			t.Errorf("%s of the image pulled lately was deleted", b.digest)
		}
	}
	pullTree(t, mirror.URL, "team/app", "v1", local)

	// du splits cache and local bytes (kept pulled just before, so that
	// it is in use for du too).
	pullTree(t, mirror.URL, "up.test/lib/kept", kept.digest, kept)
	out, err := exec.CommandContext(t.Context(), berthBinary(t), "du", "--json", "--config", mirror.ConfigPath).Output()
	if err != nil {
		t.Fatalf("berth du: %v", err)
	}
	var du struct {
		Repositories []struct {
			Name  string `json:"name"`
			Cache string `json:"cache"`
		} `json:"repositories"`
		Total struct {
			LocalBytes int64 `json:"localBytes"`
			CacheBytes int64 `json:"cacheBytes"`
		} `json:"total"`
	}
	if err := json.Unmarshal(out, &du); err != nil {
		t.Fatalf("berth du --json: %v\n%s", err, out)
	}
	size := func(m *gcManifest) (n int64) {
		n = int64(len(m.body))
		for _, b := range m.blobs {
			n += int64(len(b.data))
		}
		return n
	}
	if du.Total.LocalBytes != size(local) || du.Total.CacheBytes != size(kept) {
		t.Errorf("du: local %d bytes, cache %d; want %d and %d", du.Total.LocalBytes, du.Total.CacheBytes, size(local), size(kept))
	}
	for _, r := range du.Repositories {
		if want := map[bool]string{true: "up.test", false: ""}[strings.HasPrefix(r.Name, "up.test/")]; r.Cache != want {
			t.Errorf("du: %s has cache %q, want %q", r.Name, r.Cache, want)
		}
	}

	// The expired image is fetched again on its next pull.
	pullTree(t, mirror.URL, "up.test/lib/old", "v1", old)
}

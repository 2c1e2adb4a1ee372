package push_test

import (
	"bytes"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/runner/pull"
	"github.com/berth-registry/berth/runner/push"
)

// getIndex returns the index repo:ref names in the registry, failing t unless 200.
func (r *testRegistry) getIndex(repo, ref string) []byte {
	r.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, r.srv.URL+"/v2/"+repo+"/manifests/"+ref, nil)
	req.Header.Set("Accept", ocispec.MediaTypeImageIndex)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		r.t.Fatalf("GET index %s:%s: %s", repo, ref, resp.Status)
	}
	return b
}

// TestPushIndex: an index pulled with every platform and tagged for another
// repository is pushed whole: each platform's blobs (mounted) and manifest,
// then the index under the tag, which keeps its digest.
func TestPushIndex(t *testing.T) {
	reg := newTestRegistry(t)
	host := pull.HostPlatform().Architecture
	idx, imgs := reg.putIndex("src/multi", "1", 3, host, otherArch())
	s := pulledWith(t, reg.Host+"/src/multi:1", true)
	target := reg.Host + "/dst/multi:2"
	if _, err := s.Tag(reg.Host+"/src/multi:1", target); err != nil {
		t.Fatal(err)
	}
	reg.requests()
	res, err := push.Push(t.Context(), s, testClient(), target, smallOpts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Digest != idx.digest || res.MediaType != ocispec.MediaTypeImageIndex || res.Index != "" {
		t.Errorf("pushed %+v, want the index %s", res, idx.digest)
	}
	if got := reg.getIndex("dst/multi", "2"); !bytes.Equal(got, idx.manifest) {
		t.Errorf("the tag names:\n%s\nwant the pulled index", got)
	}
	log := reg.requests()
	var mounts, uploads int
	lastChild, indexPut := -1, -1
	for i, r := range log {
		switch {
		case r.method == http.MethodPost && strings.Contains(r.query, "mount=") && r.status == http.StatusCreated:
			mounts++
		case r.method == http.MethodPatch, r.method == http.MethodPut && strings.Contains(r.path, "/blobs/uploads/"):
			uploads++
		case r.method == http.MethodPut && strings.HasSuffix(r.path, "/manifests/2"):
			indexPut = i
		case r.method == http.MethodPut && strings.Contains(r.path, "/manifests/sha256:"):
			lastChild = i
		}
	}
	if mounts != 6 || uploads != 0 {
		t.Errorf("%d mounts, %d uploads; want both platforms' configs and layers (6) mounted", mounts, uploads)
	}
	if lastChild < 0 || indexPut < lastChild {
		t.Errorf("manifest PUTs: last child at %d, index at %d; want the children first", lastChild, indexPut)
	}
	for arch, img := range imgs {
		if got := reg.get("/v2/dst/multi/manifests/" + img.digest.String()); !bytes.Equal(got, img.manifest) {
			t.Errorf("the %s manifest differs from the pulled one", arch)
		}
	}
}

// TestPushIncompleteIndex: an index pulled for this host only pushes as the
// host's image, and the result says which platform of which index it is.
func TestPushIncompleteIndex(t *testing.T) {
	reg := newTestRegistry(t)
	host := pull.HostPlatform().Architecture
	idx, imgs := reg.putIndex("src/multi", "1", 4, host, otherArch())
	s := pulled(t, reg.Host+"/src/multi:1")
	target := reg.Host + "/dst/multi:2"
	if _, err := s.Tag(reg.Host+"/src/multi:1", target); err != nil {
		t.Fatal(err)
	}
	res, err := push.Push(t.Context(), s, testClient(), target, smallOpts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Digest != imgs[host].digest || res.Index != idx.digest || res.Platform != "linux/"+host {
		t.Errorf("push %s: %+v; want the %s image %s of index %s", target, res, host, imgs[host].digest, idx.digest)
	}
	// Pushed back where it came from, it leaves the whole index there rather
	// than replace it with one platform.
	res, err = push.Push(t.Context(), s, testClient(), reg.Host+"/src/multi:1", smallOpts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Digest != idx.digest || res.Index != "" {
		t.Errorf("push back to the source tag: %+v; want index %s, nothing pushed", res, idx.digest)
	}
	if got := reg.get("/v2/src/multi/manifests/1"); digest.FromBytes(got) != idx.digest {
		t.Errorf("the source tag names %s after the push back, want the index %s", digest.FromBytes(got), idx.digest)
	}
	if got := reg.get("/v2/dst/multi/manifests/2"); !bytes.Equal(got, imgs[host].manifest) {
		t.Errorf("the tag names:\n%s\nwant the host's manifest", got)
	}
	if log := reg.requests(); slices.ContainsFunc(log, func(r served) bool {
		return r.method == http.MethodPut && strings.HasSuffix(r.path, "/manifests/"+imgs[otherArch()].digest.String())
	}) {
		t.Error("the other platform's manifest was pushed")
	}
}

package image_test

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"
	specsv "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/runner/image"
	"github.com/berth-registry/berth/runner/pull"
)

// testIndex is a multi-platform index put into a test registry.
type testIndex struct {
	digest    digest.Digest
	manifests map[string]ocispec.Descriptor // by architecture
	blobs     map[string][]digest.Digest    // config and layer blobs, by architecture
}

// otherArch is an architecture that is not the host's.
func otherArch() string {
	if pull.HostPlatform().Architecture == "s390x" {
		return "ppc64le"
	}
	return "s390x"
}

// pushIndex pushes an image per architecture (linux, each with its own
// layer) and an index of them to repo:tag.
func (r *testRegistry) pushIndex(repo, tag string, archs ...string) testIndex {
	r.t.Helper()
	ti := testIndex{manifests: map[string]ocispec.Descriptor{}, blobs: map[string][]digest.Digest{}}
	idx := ocispec.Index{Versioned: specsv.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	for _, arch := range archs {
		cfg := testConfig()
		cfg.Platform = ocispec.Platform{OS: "linux", Architecture: arch}
		l := topLayer(r.t, "built for "+arch+"\n")
		id, m := r.pushImage(repo, "", cfg, baseLayer(r.t), l)
		m.Platform = &ocispec.Platform{OS: "linux", Architecture: arch}
		idx.Manifests = append(idx.Manifests, m)
		ti.manifests[arch] = m
		ti.blobs[arch] = []digest.Digest{id, digest.FromBytes(baseLayer(r.t).blob), digest.FromBytes(l.blob)}
	}
	b, err := json.Marshal(idx)
	if err != nil {
		r.t.Fatal(err)
	}
	r.putManifest(repo, tag, ocispec.MediaTypeImageIndex, b)
	ti.digest = digest.FromBytes(b)
	return ti
}

// TestPullIndex: a plain pull through an index stores the index blob and
// the host's image only, and the index is not complete; a pull with
// AllPlatforms stores every platform's blobs (not unpacked) and the index
// is complete, for a tag of it too; Prune keeps all of it while a
// reference names the index and drops it after.
func TestPullIndex(t *testing.T) {
	needRoot(t)
	reg := newTestRegistry(t)
	host, other := pull.HostPlatform().Architecture, otherArch()
	ti := reg.pushIndex("multi", "1", host, other)
	ref := reg.Host + "/multi:1"
	s := openStore(t)

	img, err := s.Pull(t.Context(), ref, image.PullOptions{DockerConfig: noCreds(t)})
	if err != nil {
		t.Fatal(err)
	}
	if img.ManifestDigest != ti.manifests[host].Digest {
		t.Errorf("pulled manifest %s, want the host's %s", img.ManifestDigest, ti.manifests[host].Digest)
	}
	ix, ok, err := s.Index(ref)
	if err != nil || !ok || ix.Digest != ti.digest || ix.Complete || len(ix.Manifests) != 2 || ix.MediaType != ocispec.MediaTypeImageIndex {
		t.Fatalf("Index after a plain pull: %+v, %v, %v; want %s, not complete, 2 manifests", ix, ok, err, ti.digest)
	}
	for _, d := range append([]digest.Digest{ti.manifests[other].Digest}, ti.blobs[other]...) {
		if d != digest.FromBytes(baseLayer(t).blob) && s.HasBlob(d) {
			t.Errorf("a plain pull stored blob %s of %s", d, other)
		}
	}
	if _, ok, _ := s.Index(img.ID.String()); ok {
		t.Error("an image ID names an index")
	}

	var stored []string
	_, err = s.Pull(t.Context(), ref, image.PullOptions{DockerConfig: noCreds(t), AllPlatforms: true,
		Stored: func(p string, d digest.Digest) { stored = append(stored, p+"="+d.String()) }})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(stored)
	want := []string{"linux/" + host + "=" + ti.manifests[host].Digest.String(), "linux/" + other + "=" + ti.manifests[other].Digest.String()}
	slices.Sort(want)
	if !slices.Equal(stored, want) {
		t.Errorf("Stored told %v, want %v", stored, want)
	}
	ix, ok, err = s.Index(ref)
	if err != nil || !ok || !ix.Complete || len(ix.Blobs) != 1+2+2+3 { // index, 2 manifests, 2 configs, shared base + 2 top layers
		t.Fatalf("Index after --all-platforms: %+v, %v, %v; want complete, 8 blobs", ix, ok, err)
	}
	for _, d := range ti.blobs[other] {
		if !s.HasBlob(d) {
			t.Errorf("blob %s of %s not stored", d, other)
		}
	}
	// Run uses the host's image; the other platform is not unpacked.
	if got, err := s.Get(ref); err != nil || got.ID != img.ID {
		t.Errorf("Get: %s, %v; want the host's image %s", got.ID, err, img.ID)
	}
	if imgs, _ := s.List(); len(imgs) != 1 {
		t.Errorf("%d images recorded, want the host's only", len(imgs))
	}

	tagged := reg.Host + "/copy:2"
	if _, err := s.Tag(ref, tagged); err != nil {
		t.Fatal(err)
	}
	if ix, ok, _ := s.Index(tagged); !ok || !ix.Complete || ix.Digest != ti.digest {
		t.Errorf("the tag names %+v, want the complete index", ix)
	}
	if _, err := s.Remove(ref, image.RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := s.Prune(t.Context())
	if err != nil || len(res.Blobs) != 0 {
		t.Fatalf("Prune while the tag names the index removed %v (%v)", res.Blobs, err)
	}
	if ix, _, _ := s.Index(tagged); !ix.Complete {
		t.Error("the index is not complete after Prune")
	}
	if _, err := s.Remove(tagged, image.RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	if res, err = s.Prune(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(res.Blobs) != 8 {
		t.Errorf("Prune after the last reference removed %d blobs, want the 8 of the index", len(res.Blobs))
	}
	for _, d := range []digest.Digest{ti.digest, ti.manifests[other].Digest, ti.blobs[other][0]} {
		if s.HasBlob(d) {
			t.Errorf("blob %s kept after Prune", d)
		}
	}
}

// TestPullIndexWithoutHostPlatform: with AllPlatforms, an index with no
// image for the host is stored whole and named by the reference, which
// cannot be run; it can be tagged and removed. Without AllPlatforms the
// pull fails as before.
func TestPullIndexWithoutHostPlatform(t *testing.T) {
	needRoot(t)
	reg := newTestRegistry(t)
	ti := reg.pushIndex("foreign", "1", otherArch())
	ref := reg.Host + "/foreign:1"
	s := openStore(t)
	if _, err := s.Pull(t.Context(), ref, image.PullOptions{DockerConfig: noCreds(t)}); !errors.Is(err, pull.ErrNoMatchingPlatform) {
		t.Fatalf("plain pull: %v, want ErrNoMatchingPlatform", err)
	}
	img, err := s.Pull(t.Context(), ref, image.PullOptions{DockerConfig: noCreds(t), AllPlatforms: true})
	if err != nil || img.ID != "" {
		t.Fatalf("pull --all-platforms: %+v, %v; want no image and no error", img, err)
	}
	ix, ok, err := s.Index(ref)
	if err != nil || !ok || !ix.Complete || ix.Digest != ti.digest {
		t.Fatalf("Index: %+v, %v, %v", ix, ok, err)
	}
	if _, err := s.Get(ref); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("Get: %v, want ErrNotFound", err)
	}
	if imgs, _ := s.List(); len(imgs) != 0 {
		t.Errorf("%d images recorded, want none", len(imgs))
	}
	if _, err := s.Tag(ref, reg.Host+"/copy:1"); err != nil {
		t.Fatal(err)
	}
	if ix, ok, _ := s.Index(reg.Host + "/copy:1"); !ok || !ix.Complete {
		t.Errorf("the tag names %+v", ix)
	}
	for _, r := range []string{ref, reg.Host + "/copy:1"} {
		if res, err := s.Remove(r, image.RemoveOptions{}); err != nil || len(res.Untagged) != 1 {
			t.Fatalf("Remove %s: %+v, %v", r, res, err)
		}
	}
	if res, err := s.Prune(t.Context()); err != nil || len(res.Blobs) != 5 { // index, manifest, config, 2 layers
		t.Errorf("Prune: %d blobs (%v), want 5", len(res.Blobs), err)
	}
}

package image_test

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/runner/image"
)

func TestPullKeepsBlobs(t *testing.T) {
	needRoot(t)
	reg := newTestRegistry(t)
	base, top := baseLayer(t), topLayer(t, "v2\n")
	reg.push("team/app", "1.0", testConfig(), base, top)
	s := openStore(t)
	img, err := s.Pull(t.Context(), reg.Host+"/team/app:1.0", image.PullOptions{DockerConfig: noCreds(t)})
	if err != nil {
		t.Fatal(err)
	}
	want := map[digest.Digest][]byte{img.ID: img.RawConfig, digest.FromBytes(base.blob): base.blob, digest.FromBytes(top.blob): top.blob}
	for d, b := range want {
		got, err := s.ReadBlob(d)
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("blob %s: %d bytes, %v; want the %d pulled", d, len(got), err, len(b))
		}
	}
	m, err := s.ReadBlob(img.ManifestDigest)
	if err != nil || digest.FromBytes(m) != img.ManifestDigest {
		t.Errorf("manifest blob: %v", err)
	}

	// A layer unpacked but whose blob is gone is downloaded again for its
	// blob; then a pull finds everything and downloads nothing.
	layerDigest := digest.FromBytes(top.blob)
	if err := os.Remove(filepath.Join(s.Dir(), "blobs", "sha256", layerDigest.Encoded())); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := s.Pull(t.Context(), reg.Host+"/team/app:1.0", image.PullOptions{DockerConfig: noCreds(t)}); err != nil {
			t.Fatal(err)
		}
	}
	if n := reg.gets(layerDigest); n != 2 {
		t.Errorf("the layer whose blob went missing was downloaded %d times, want 2", n)
	}
	if !s.HasBlob(layerDigest) {
		t.Error("the blob was not stored again")
	}

	// Prune keeps what a referenced image names, removes the rest.
	stray, err := s.PutBlobBytes([]byte("stray"), "")
	if err != nil {
		t.Fatal(err)
	}
	pr, err := s.Prune(t.Context())
	if err != nil || !slices.Equal(pr.Blobs, []digest.Digest{stray}) || pr.BlobBytes != 5 {
		t.Errorf("Prune = %+v, %v; want the stray blob only", pr, err)
	}
	if _, err := s.Remove(reg.Host+"/team/app:1.0", image.RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	if pr, err := s.Prune(t.Context()); err != nil || len(pr.Blobs) != 4 {
		t.Errorf("Prune after rmi = %+v, %v; want the manifest, config and two layer blobs", pr, err)
	}
}

func TestPutBlob(t *testing.T) {
	s := openStore(t)
	d, n, err := s.PutBlob(strings.NewReader("hello"), "", -1)
	if err != nil || d != digest.FromString("hello") || n != 5 {
		t.Fatalf("PutBlob = %s %d %v", d, n, err)
	}
	f, size, err := s.OpenBlob(d)
	if err != nil || size != 5 {
		t.Fatalf("OpenBlob = %d %v", size, err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if string(b) != "hello" {
		t.Errorf("read back %q", b)
	}
	bad := []struct {
		name string
		want digest.Digest
		size int64
	}{
		{"wrong digest", digest.FromString("other"), -1},
		{"wrong size", digest.FromString("hello!"), 5},
		{"short", digest.FromString("hello!"), 7},
	}
	for _, c := range bad {
		if _, _, err := s.PutBlob(strings.NewReader("hello!"), c.want, c.size); !errors.Is(err, image.ErrDigestMismatch) {
			t.Errorf("%s: %v, want ErrDigestMismatch", c.name, err)
		}
		if s.HasBlob(c.want) {
			t.Errorf("%s: stored", c.name)
		}
	}
	if _, _, err := s.PutBlob(strings.NewReader("x"), "sha256:nothex", -1); !errors.Is(err, image.ErrDigestMismatch) {
		t.Errorf("malformed digest: %v", err)
	}
	if _, _, err := s.OpenBlob(digest.FromString("absent")); !errors.Is(err, image.ErrBlobMissing) {
		t.Errorf("OpenBlob of an absent blob: %v, want ErrBlobMissing", err)
	}
	ents, _ := os.ReadDir(filepath.Join(s.Dir(), "blobs"))
	for _, e := range ents {
		if !e.IsDir() {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

func TestTag(t *testing.T) {
	needRoot(t)
	reg := newTestRegistry(t)
	id := reg.push("team/app", "1.0", testConfig(), baseLayer(t))
	s := openStore(t)
	src := reg.Host + "/team/app:1.0"
	pulled, err := s.Pull(t.Context(), src, image.PullOptions{DockerConfig: noCreds(t)})
	if err != nil {
		t.Fatal(err)
	}
	s.DefaultRegistry = "example.test:5000"
	img, err := s.Tag(src, "other/app:2")
	if err != nil || img.ID != id || !slices.Equal(img.References, []string{src, "example.test:5000/other/app:2"}) {
		t.Fatalf("Tag = %s %q, %v", img.ID, img.References, err)
	}
	if got, err := s.Get("other/app:2"); err != nil || got.ID != id || got.ManifestDigest != pulled.ManifestDigest {
		t.Errorf("Get of the new tag = %+v, %v", got, err)
	}
	if _, err := s.Tag(id.Encoded()[:8], "third"); err != nil {
		t.Errorf("Tag by ID prefix: %v", err)
	}
	for _, c := range []struct{ src, dst string }{
		{"absent:1", "x:1"},
		{src, "UPPER/case"},
		{src, "x@" + string(id)},
	} {
		if _, err := s.Tag(c.src, c.dst); err == nil {
			t.Errorf("Tag(%q, %q) succeeded", c.src, c.dst)
		}
	}
}

func TestReferenceManifests(t *testing.T) {
	needRoot(t)
	reg := newTestRegistry(t)
	reg.push("team/app", "1.0", testConfig(), baseLayer(t))
	s := openStore(t)
	src := reg.Host + "/team/app:1.0"
	pulled, err := s.Pull(t.Context(), src, image.PullOptions{DockerConfig: noCreds(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Tag(src, reg.Host+"/other/app:2"); err != nil {
		t.Fatal(err)
	}
	got, err := s.ReferenceManifests()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]digest.Digest{src: pulled.ManifestDigest, reg.Host + "/other/app:2": pulled.ManifestDigest}
	if !maps.Equal(got, want) {
		t.Errorf("ReferenceManifests = %v, want %v", got, want)
	}
}

// TestRecordWithoutLayers: an image with no layer at all (a `FROM scratch`
// build with metadata only) is recorded, found and flattened to nothing.
func TestRecordWithoutLayers(t *testing.T) {
	needRoot(t)
	s := openStore(t)
	s.DefaultRegistry = "example.test"
	release, err := s.Hold()
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	cfg := []byte(`{"architecture":"amd64","os":"linux","config":{"Labels":{"a":"b"}},"rootfs":{"type":"layers","diff_ids":[]}}`)
	img, err := s.RecordNew(image.FormatOCI, cfg, nil, "empty:1")
	if err != nil {
		t.Fatalf("RecordNew of an image without layers: %v", err)
	}
	got, err := s.Get("empty:1")
	if err != nil || got.ID != img.ID || len(got.Layers) != 0 || got.Config.Config.Labels["a"] != "b" {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	dir := filepath.Join(t.TempDir(), "rootfs")
	if err := s.Flatten(t.Context(), got, dir); err != nil {
		t.Fatalf("Flatten: %v", err)
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Errorf("the flattened image holds %d entries, %v; want none", len(ents), err)
	}
}

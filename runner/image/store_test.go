package image_test

import (
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/berth-registry/berth/runner/image"
	"github.com/berth-registry/berth/runner/layers"
	"github.com/berth-registry/berth/runner/pull"
)

func TestPullGetList(t *testing.T) {
	needRoot(t)
	reg := newTestRegistry(t)
	base, top := baseLayer(t), topLayer(t, "v2\n")
	id := reg.push("team/app", "1.0", testConfig(), base, top)

	s := openStore(t)
	ref := reg.Host + "/team/app:1.0"
	img, err := s.Pull(t.Context(), ref, image.PullOptions{DockerConfig: noCreds(t)})
	if err != nil {
		t.Fatal(err)
	}
	if img.ID != id || !slices.Equal(img.References, []string{ref}) || len(img.Layers) != 2 ||
		img.Layers[0].DiffID != base.diffID || img.Layers[1].DiffID != top.diffID || img.Size <= 0 {
		t.Fatalf("pulled %+v", img)
	}
	if img.Config.Config.User != "app" || img.Platform.String() != "linux/amd64" || img.ManifestDigest == "" {
		t.Errorf("config %+v platform %s manifest %s", img.Config.Config, img.Platform, img.ManifestDigest)
	}
	for _, d := range img.DiffIDs() {
		if _, err := s.LayerStore().Get(d); err != nil {
			t.Errorf("layer %s not in the layer store: %v", d, err)
		}
	}

	s.DefaultRegistry = reg.Host
	for _, q := range []string{ref, "team/app:1.0", string(id), id.Encoded()[:12], "sha256:" + id.Encoded()[:5]} {
		got, err := s.Get(q)
		if err != nil || got.ID != id || !slices.Equal(got.References, []string{ref}) || !slices.Equal(got.RawConfig, img.RawConfig) {
			t.Errorf("Get(%q) = %s %q, %v", q, got.ID, got.References, err)
		}
	}
	for _, q := range []string{"team/app", "team/app:2.0", reg.Host + "/other:1.0", "ffffffffffff", "sha999:ab", ""} {
		if _, err := s.Get(q); !errors.Is(err, image.ErrNotFound) {
			t.Errorf("Get(%q): %v, want ErrNotFound", q, err)
		}
	}

	list, err := s.List()
	if err != nil || len(list) != 1 || list[0].ID != id || !slices.Equal(list[0].References, []string{ref}) {
		t.Fatalf("List = %+v, %v", list, err)
	}

	// A second store over the same directory sees the same.
	s2, err := image.Open(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s2.Get(ref); err != nil || got.ID != id {
		t.Errorf("reopened Get = %s, %v", got.ID, err)
	}
}

// TestPullSkipsPresentLayers: a layer already in the layer store is not
// downloaded again, by another image either.
func TestPullSkipsPresentLayers(t *testing.T) {
	needRoot(t)
	reg := newTestRegistry(t)
	base := baseLayer(t)
	reg.push("a", "latest", testConfig(), base, topLayer(t, "a\n"))
	reg.push("b", "latest", testConfig(), base, topLayer(t, "b\n"))
	s := openStore(t)
	opts := image.PullOptions{DockerConfig: noCreds(t)}
	for _, r := range []string{"a", "b", "a"} {
		if _, err := s.Pull(t.Context(), reg.Host+"/"+r, opts); err != nil {
			t.Fatal(err)
		}
	}
	if n := reg.gets(digest.FromBytes(base.blob)); n != 1 {
		t.Errorf("the shared base layer was downloaded %d times, want 1", n)
	}
	if ls, _ := s.LayerStore().List(); len(ls) != 3 {
		t.Errorf("%d layers stored, want 3", len(ls))
	}
}

func TestPullVerifies(t *testing.T) {
	needRoot(t)
	reg := newTestRegistry(t)
	base, top := baseLayer(t), topLayer(t, "v2\n")
	reg.push("bad/blob", "latest", testConfig(), base, top)
	reg.corrupt[digest.FromBytes(top.blob)] = true

	s := openStore(t)
	opts := image.PullOptions{DockerConfig: noCreds(t)}
	_, err := s.Pull(t.Context(), reg.Host+"/bad/blob", opts)
	if !errors.Is(err, pull.ErrDigestMismatch) && !errors.Is(err, layers.ErrDigestMismatch) {
		t.Fatalf("pull of a corrupted blob: %v, want a digest mismatch", err)
	}
	if _, err := s.LayerStore().Get(top.diffID); !errors.Is(err, layers.ErrNotFound) {
		t.Errorf("the corrupted layer was stored: %v", err)
	}
	if list, _ := s.List(); len(list) != 0 {
		t.Errorf("an image was recorded: %+v", list)
	}

	// A good blob whose uncompressed stream is not the config's diff_id.
	other := topLayer(t, "other\n")
	wrong := testLayer{blob: other.blob, diffID: top.diffID}
	reg.push("bad/diffid", "latest", testConfig(), base, wrong)
	if _, err := s.Pull(t.Context(), reg.Host+"/bad/diffid", opts); !errors.Is(err, layers.ErrDigestMismatch) {
		t.Fatalf("pull with a wrong diff_id: %v, want layers.ErrDigestMismatch", err)
	}
	if _, err := s.LayerStore().Get(top.diffID); !errors.Is(err, layers.ErrNotFound) {
		t.Errorf("a layer was stored under a diff_id it does not have: %v", err)
	}

	if _, err := s.Pull(t.Context(), reg.Host+"/missing", opts); !errors.Is(err, pull.ErrNotFound) {
		t.Errorf("pull of a missing image: %v, want pull.ErrNotFound", err)
	}
	if _, err := s.Pull(t.Context(), "missing", opts); !errors.Is(err, pull.ErrInvalidReference) {
		t.Errorf("pull without a registry: %v, want pull.ErrInvalidReference", err)
	}
}

func TestRemoveAndPrune(t *testing.T) {
	needRoot(t)
	reg := newTestRegistry(t)
	base, top := baseLayer(t), topLayer(t, "v1\n")
	idA := reg.push("app", "v1", testConfig(), base, top)
	reg.push("app", "also", testConfig(), base, top) // the same image under a second tag
	s := openStore(t)
	opts := image.PullOptions{DockerConfig: noCreds(t), DefaultRegistry: reg.Host}
	for _, r := range []string{"app:v1", "app:also"} {
		if _, err := s.Pull(t.Context(), r, opts); err != nil {
			t.Fatal(err)
		}
	}
	s.DefaultRegistry = reg.Host
	img, err := s.Get("app:v1")
	if err != nil || len(img.References) != 2 {
		t.Fatalf("two tags of one image: %+v, %v", img.References, err)
	}

	res, err := s.Remove("app:v1", image.RemoveOptions{})
	if err != nil || !slices.Equal(res.Untagged, []string{reg.Host + "/app:v1"}) || res.Deleted != "" {
		t.Fatalf("Remove(app:v1) = %+v, %v", res, err)
	}
	if _, err := s.Get("app:v1"); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("removed reference still found: %v", err)
	}
	if _, err := s.Remove("app:v1", image.RemoveOptions{}); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("second Remove: %v, want ErrNotFound", err)
	}
	res, err = s.Remove(reg.Host+"/app:also", image.RemoveOptions{})
	if err != nil || res.Deleted != idA {
		t.Fatalf("Remove of the last reference = %+v, %v; want the image deleted", res, err)
	}
	if list, _ := s.List(); len(list) != 0 {
		t.Errorf("List after rmi = %+v", list)
	}
	// rmi leaves the layers to prune.
	if ls, _ := s.LayerStore().List(); len(ls) != 2 {
		t.Errorf("%d layers after rmi, want 2", len(ls))
	}

	// Re-pull, then move the tag to another image: the first image is
	// dangling; prune removes it and the layer only it used, keeping what
	// the new image and the images in use need.
	if _, err := s.Pull(t.Context(), "app:v1", opts); err != nil {
		t.Fatal(err)
	}
	extra := makeLayer(t, entry{name: "extra.txt", body: "x"})
	newTop := topLayer(t, "v2\n")
	idB := reg.push("app", "v1", testConfig(), base, newTop)
	idExtra := reg.push("app", "extra", testConfig(), base, extra)
	if _, err := s.Pull(t.Context(), "app:v1", opts); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(t.Context(), "app:extra", opts); err != nil {
		t.Fatal(err)
	}
	// An image a container uses keeps its record: rmi refuses, and with
	// Force removes only its references.
	inUse := image.RemoveOptions{InUse: map[digest.Digest][]string{idExtra: {"c0ffee"}}}
	if _, err := s.Remove("app:extra", inUse); !errors.Is(err, image.ErrInUse) || !strings.Contains(err.Error(), "c0ffee") {
		t.Fatalf("Remove of an image in use: %v, want ErrInUse naming the container", err)
	}
	if _, err := s.Get("app:extra"); err != nil {
		t.Fatalf("a refused Remove changed the store: %v", err)
	}
	inUse.Force = true
	if res, err := s.Remove("app:extra", inUse); err != nil || res.Deleted != "" || len(res.Untagged) != 1 {
		t.Fatalf("forced Remove of an image in use = %+v, %v; want untagged only", res, err)
	}
	list, _ := s.List()
	tagged := map[digest.Digest]int{}
	for _, img := range list {
		tagged[img.ID] = len(img.References)
	}
	if want := map[digest.Digest]int{idA: 0, idB: 1, idExtra: 0}; !maps.Equal(tagged, want) {
		t.Fatalf("references by image after moving the tag and the forced rmi: %v, want %v", tagged, want)
	}
	pr, err := s.Prune(t.Context(), idExtra)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pr.Images, []digest.Digest{idA}) || !slices.Equal(pr.Layers, []digest.Digest{top.diffID}) || pr.Bytes <= 0 {
		t.Errorf("Prune = %+v; want image %s and layer %s", pr, idA, top.diffID)
	}
	if _, err := s.Get(idExtra.String()); err != nil {
		t.Errorf("Prune removed the dangling image in use: %v", err)
	}
	for _, d := range []digest.Digest{base.diffID, newTop.diffID, extra.diffID} {
		if _, err := s.LayerStore().Get(d); err != nil {
			t.Errorf("layer %s removed by prune: %v", d, err)
		}
	}
	if pr, err := s.Prune(t.Context()); err != nil || !slices.Equal(pr.Images, []digest.Digest{idExtra}) ||
		!slices.Equal(pr.Layers, []digest.Digest{extra.diffID}) {
		t.Errorf("Prune once no container uses it = %+v, %v; want the extra image and its layer", pr, err)
	}

	// rmi by ID removes every reference.
	if _, err := s.Pull(t.Context(), "app:also", opts); err != nil {
		t.Fatal(err)
	}
	res, err = s.Remove(idB.Encoded()[:10], image.RemoveOptions{})
	if err != nil || res.Deleted != idB || len(res.Untagged) != 1 {
		t.Errorf("Remove by ID = %+v, %v", res, err)
	}
	if img, err := s.Get("app:also"); err != nil || img.ID != idA {
		t.Errorf("the other image: %+v, %v", img, err)
	}
}

func TestFlattenAndRootfs(t *testing.T) {
	needRoot(t)
	reg := newTestRegistry(t)
	reg.push("app", "latest", testConfig(), baseLayer(t), topLayer(t, "v2\n"))
	s := openStore(t)
	img, err := s.Pull(t.Context(), reg.Host+"/app", image.PullOptions{DockerConfig: noCreds(t)})
	if err != nil {
		t.Fatal(err)
	}
	check := func(root string) {
		t.Helper()
		if b, err := os.ReadFile(filepath.Join(root, "app", "a.txt")); err != nil || string(b) != "v2\n" {
			t.Errorf("app/a.txt = %q, %v", b, err)
		}
		if _, err := os.Lstat(filepath.Join(root, "app", "gone.txt")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("whited-out file present: %v", err)
		}
		if l, err := os.Readlink(filepath.Join(root, "app", "link")); err != nil || l != "a.txt" {
			t.Errorf("app/link -> %q, %v", l, err)
		}
		if fi, err := os.Stat(filepath.Join(root, "bin", "sh")); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("bin/sh: %v, %v", fi, err)
		}
	}

	flat := filepath.Join(t.TempDir(), "rootfs")
	if err := s.Flatten(t.Context(), img, flat); err != nil {
		t.Fatal(err)
	}
	check(flat)

	dir := t.TempDir()
	upper, work, target := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "merged")
	for _, d := range []string{upper, work, target} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	mounted, err := s.Rootfs(t.Context(), img, upper, work, target, image.RootfsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if mounted {
		defer unix.Unmount(target, unix.MNT_DETACH)
	} else {
		t.Logf("overlayfs unavailable (%v): Rootfs flattened", s.LayerStore().OverlaySupported())
	}
	check(target)
	if mounted {
		// Writes go to upper, never to the stored layers.
		if err := os.WriteFile(filepath.Join(target, "app", "a.txt"), []byte("changed"), 0o644); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(filepath.Join(upper, "app", "a.txt")); string(b) != "changed" {
			t.Errorf("write did not land in upper: %q", b)
		}
		stored, _ := s.LayerStore().Get(img.Layers[1].DiffID)
		if b, _ := os.ReadFile(filepath.Join(stored.Dir, "app", "a.txt")); string(b) != "v2\n" {
			t.Errorf("stored layer changed: %q", b)
		}
	}

	// A missing layer is reported as such.
	if err := s.LayerStore().Remove(img.Layers[0].DiffID); err != nil {
		t.Fatal(err)
	}
	if err := s.Flatten(t.Context(), img, filepath.Join(t.TempDir(), "x")); !errors.Is(err, image.ErrLayerMissing) {
		t.Errorf("Flatten without a layer: %v, want ErrLayerMissing", err)
	}
	if _, err := s.Rootfs(t.Context(), img, upper, work, filepath.Join(t.TempDir()), image.RootfsOptions{}); !errors.Is(err, image.ErrLayerMissing) {
		t.Errorf("Rootfs without a layer: %v, want ErrLayerMissing", err)
	}
}

// TestCorruptRecord: a record whose config does not match its name is
// refused, not trusted.
func TestCorruptRecord(t *testing.T) {
	needRoot(t)
	reg := newTestRegistry(t)
	reg.push("app", "latest", testConfig(), baseLayer(t))
	s := openStore(t)
	img, err := s.Pull(t.Context(), reg.Host+"/app", image.PullOptions{DockerConfig: noCreds(t)})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(s.Dir(), "images", "sha256", img.ID.Encoded()+".json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	rec["config"] = []byte(strings.Replace(string(img.RawConfig), "cat a.txt", "cat b.txt", 1))
	if b, err = json.Marshal(rec); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(img.ID.String()); !errors.Is(err, image.ErrCorrupt) {
		t.Errorf("Get of a tampered record: %v, want ErrCorrupt", err)
	}
}

// TestConcurrentPulls: pulls sharing layers, in parallel, all succeed and
// store each layer once.
func TestConcurrentPulls(t *testing.T) {
	needRoot(t)
	reg := newTestRegistry(t)
	base := baseLayer(t)
	names := []string{"a", "b", "c", "d"}
	for _, n := range names {
		reg.push(n, "latest", testConfig(), base, topLayer(t, n+"\n"))
	}
	s := openStore(t)
	opts := image.PullOptions{DockerConfig: noCreds(t), DefaultRegistry: reg.Host}
	errs := make(chan error, 2*len(names))
	for _, n := range append(names, names...) {
		go func() {
			_, err := s.Pull(t.Context(), n, opts)
			errs <- err
		}()
	}
	for range 2 * len(names) {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if ls, _ := s.LayerStore().List(); len(ls) != 1+len(names) {
		t.Errorf("%d layers stored, want %d", len(ls), 1+len(names))
	}
	if list, _ := s.List(); len(list) != len(names) {
		t.Errorf("%d images recorded, want %d", len(list), len(names))
	}
}

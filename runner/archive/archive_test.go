package archive_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/runner/archive"
	"github.com/berth-registry/berth/runner/image"
	"github.com/berth-registry/berth/runner/layers"
	"github.com/berth-registry/berth/runner/pull"
)

// TestSaveWrites checks the files of a save of two images, one under two
// tags, one by ID: the layout and the docker-archive, as docker writes them.
func TestSaveWrites(t *testing.T) {
	needRoot(t)
	s := newStore(t)
	base := newLayer(t, map[string]string{"etc/base": "base\n"})
	a := newImage(t, "amd64", base, newLayer(t, map[string]string{"etc/a": "a\n"}))
	b := newImage(t, "amd64", base, newLayer(t, map[string]string{"etc/b": "b\n"}))
	a.put(t, s, "reg.test/team/a:1", "reg.test/team/a:2")
	b.put(t, s, "reg.test/team/b:latest")
	tb := save(t, s, "team/a:1", "reg.test/team/a:2", b.id.Encoded()[:12])

	files := map[string][]byte{}
	for _, e := range readTar(t, tb) {
		if e.hdr.Typeflag == tar.TypeReg {
			files[e.hdr.Name] = e.body
		}
	}
	for d, want := range map[digest.Digest][]byte{a.mdgst: a.manifest, a.id: a.config, b.mdgst: b.manifest, b.id: b.config, base.digest: base.blob} {
		if !bytes.Equal(files[blobName(d)], want) {
			t.Errorf("%s: not the stored bytes", blobName(d))
		}
	}
	if n := len(files); n != 4+7 { // 3 layer blobs, 2 configs, 2 manifests
		t.Errorf("%d files, want 11: %v", n, slices.Sorted(func(yield func(string) bool) {
			for k := range files {
				yield(k)
			}
		}))
	}
	if string(files["oci-layout"]) != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout %s", files["oci-layout"])
	}
	var idx ocispec.Index
	if err := json.Unmarshal(files["index.json"], &idx); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range idx.Manifests {
		got = append(got, d.Digest.String()+" "+d.Annotations["io.containerd.image.name"]+" "+d.Annotations[ocispec.AnnotationRefName])
	}
	want := []string{a.mdgst.String() + " reg.test/team/a:1 1", a.mdgst.String() + " reg.test/team/a:2 2", b.mdgst.String() + "  "}
	if !slices.Equal(got, want) {
		t.Errorf("index.json entries\n%q\nwant\n%q", got, want)
	}
	var items []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(files["manifest.json"], &items); err != nil {
		t.Fatal(err)
	}
	if len(items) != 2 || items[0].Config != blobName(a.id) || !slices.Equal(items[0].RepoTags, []string{"reg.test/team/a:1", "reg.test/team/a:2"}) ||
		!slices.Equal(items[0].Layers, []string{blobName(base.digest), blobName(a.layers[1].digest)}) ||
		items[1].Config != blobName(b.id) || items[1].RepoTags != nil {
		t.Errorf("manifest.json %s", files["manifest.json"])
	}
	if want := `{"reg.test/team/a":{"1":"` + a.layers[1].digest.Encoded() + `","2":"` + a.layers[1].digest.Encoded() + `"}}`; string(files["repositories"]) != want {
		t.Errorf("repositories %s, want %s", files["repositories"], want)
	}
}

// TestRoundTrip saves images and loads them into another store, as the
// archive is, gzip-compressed and zstd-compressed.
func TestRoundTrip(t *testing.T) {
	needRoot(t)
	src := newStore(t)
	a := newImage(t, "amd64", newLayer(t, map[string]string{"etc/a": "a\n"}))
	b := newImage(t, "amd64", newLayer(t, map[string]string{"etc/b": "b\n"}))
	a.put(t, src, "reg.test/a:1", "reg.test/a:2")
	b.put(t, src, "reg.test/b:latest")
	tb := save(t, src, "reg.test/a:1", "reg.test/a:2", b.id.String())
	var zb bytes.Buffer
	zw, _ := zstd.NewWriter(&zb)
	zw.Write(tb)
	zw.Close()

	for _, tc := range []struct {
		name string
		data []byte
	}{{"tar", tb}, {"gzip", gzipped(t, tb)}, {"zstd", zb.Bytes()}} {
		t.Run(tc.name, func(t *testing.T) {
			dst := newStore(t)
			loaded, err := load(dst, tc.data)
			if err != nil {
				t.Fatal(err)
			}
			if len(loaded) != 2 || loaded[0].Image.ID != a.id || loaded[1].Image.ID != b.id {
				t.Fatalf("loaded %+v", loaded)
			}
			if !slices.Equal(loaded[0].Names, []string{"reg.test/a:1", "reg.test/a:2"}) || len(loaded[1].Names) != 0 {
				t.Errorf("names %q and %q", loaded[0].Names, loaded[1].Names)
			}
			got, err := dst.Get("reg.test/a:2")
			if err != nil || got.ID != a.id || got.ManifestDigest != a.mdgst {
				t.Errorf("a:2 is %s (manifest %s), %v; want %s, %s", got.ID, got.ManifestDigest, err, a.id, a.mdgst)
			}
			got, err = dst.Get(b.id.String())
			if err != nil || got.ManifestDigest != b.mdgst || len(got.References) != 0 {
				t.Errorf("b: %+v, %v", got, err)
			}
			root := t.TempDir()
			if err := dst.Flatten(context.Background(), got, root); err != nil {
				t.Fatal(err)
			}
			if c, err := os.ReadFile(filepath.Join(root, "etc/b")); string(c) != "b\n" {
				t.Errorf("etc/b of the loaded image: %q, %v", c, err)
			}
			// Saved again, the same bytes.
			if again := save(t, dst, "reg.test/a:1", "reg.test/a:2", b.id.String()); !bytes.Equal(again, tb) {
				t.Error("the loaded images save to another archive")
			}
		})
	}
}

// dockerArchive is an archive as older docker saves wrote it:
// <id>/layer.tar (uncompressed), <id>.json, a symlinked layer, no
// layout.
func dockerArchive(t testing.TB, repoTags []string) ([]byte, testImage) {
	base := newLayer(t, map[string]string{"etc/base": "base\n"})
	top := newLayer(t, map[string]string{"etc/top": "top\n"})
	img := newImage(t, "amd64", base, top)
	items := []map[string]any{{
		"Config":   img.id.Encoded() + ".json",
		"RepoTags": repoTags,
		"Layers":   []string{"3333/layer.tar", "x/2222/layer.tar"},
	}}
	return tarOf(t,
		tarEntry{tar.Header{Typeflag: tar.TypeDir, Name: "1111/", Mode: 0o755}, nil},
		file("1111/layer.tar", base.tar),
		file("1111/VERSION", []byte("1.0")),
		// Links to files elsewhere in the archive, as docker and skopeo
		// write them.
		link(tar.TypeSymlink, "3333/layer.tar", "../1111/layer.tar"),
		file(blobName(top.diffID), top.tar),
		link(tar.TypeSymlink, "x/2222/layer.tar", "../../blobs/sha256/"+top.diffID.Encoded()),
		file(img.id.Encoded()+".json", img.config),
		file("manifest.json", mustJSON(t, items)),
		file("repositories", []byte(`{"a":{"1":"2222"}}`)),
	), img
}

// TestLoadDockerArchive loads a docker-archive without a manifest: the
// manifest is written here, OCI, from the layers' compression.
func TestLoadDockerArchive(t *testing.T) {
	needRoot(t)
	tb, img := dockerArchive(t, []string{"reg.test/old:1", "short:2", "latest"})
	s := newStore(t)
	s.DefaultRegistry = ""
	loaded, err := load(s, tb)
	if err != nil {
		t.Fatal(err)
	}
	if len(loaded) != 1 || loaded[0].Image.ID != img.id {
		t.Fatalf("loaded %+v", loaded)
	}
	if !slices.Equal(loaded[0].Names, []string{"reg.test/old:1"}) || !slices.Equal(loaded[0].Unnamed, []string{"short:2", "latest"}) {
		t.Errorf("names %q, unnamed %q", loaded[0].Names, loaded[0].Unnamed)
	}
	got, err := s.Get("reg.test/old:1")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := s.ReadBlob(got.ManifestDigest)
	if err != nil {
		t.Fatal(err)
	}
	want := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: img.id, Size: int64(len(img.config))}}
	for _, l := range img.layers {
		want.Layers = append(want.Layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: l.diffID, Size: int64(len(l.tar))})
	}
	if !bytes.Equal(raw, mustJSON(t, want)) {
		t.Errorf("manifest\n%s\nwant\n%s", raw, mustJSON(t, want))
	}
	// A second load of the same archive is the same image.
	again, err := load(s, tb)
	if err != nil || again[0].Image.ManifestDigest != got.ManifestDigest {
		t.Errorf("second load: %+v, %v", again, err)
	}
}

// TestLoadOCILayout loads an OCI layout with a multi-platform index: the
// host's image (amd64 on this test's platform option) is loaded, named by
// the index's annotation.
func TestLoadOCILayout(t *testing.T) {
	needRoot(t)
	amd := newImage(t, "amd64", newLayer(t, map[string]string{"etc/arch": "amd64\n"}))
	arm := newImage(t, "arm64", newLayer(t, map[string]string{"etc/arch": "arm64\n"}))
	amdDesc, armDesc := amd.descriptor(), arm.descriptor()
	amdDesc.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	armDesc.Platform = &ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	index := mustJSON(t, ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{armDesc, amdDesc}})
	id := digest.FromBytes(index)
	top := mustJSON(t, ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageIndex, Digest: id, Size: int64(len(index)),
			Annotations: map[string]string{ocispec.AnnotationRefName: "reg.test/multi:1"}}}})
	entries := append(amd.blobEntries(), arm.blobEntries()...)
	entries = append(entries, file(blobName(id), index), file("index.json", top), file("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)))
	tb := tarOf(t, entries...)
	for _, tc := range []struct {
		arch string
		want testImage
	}{{"amd64", amd}, {"arm64", arm}} {
		t.Run(tc.arch, func(t *testing.T) {
			s := newStore(t)
			p := pullPlatform(tc.arch)
			loaded, err := archive.Load(context.Background(), s, bytes.NewReader(tb), archive.LoadOptions{Platform: &p})
			if err != nil {
				t.Fatal(err)
			}
			if len(loaded) != 1 || loaded[0].Image.ID != tc.want.id || loaded[0].Image.ManifestDigest != tc.want.mdgst ||
				!slices.Equal(loaded[0].Image.References, []string{"reg.test/multi:1"}) || loaded[0].Index != id {
				t.Errorf("loaded %+v", loaded)
			}
			// The archive held every platform: the index is kept whole, and
			// saved again as the index, which loads whole again.
			if ix, ok, err := s.Index("reg.test/multi:1"); err != nil || !ok || !ix.Complete || ix.Digest != id {
				t.Fatalf("Index %+v, %v, %v; want %s complete", ix, ok, err, id)
			}
			var saved ocispec.Index
			for _, e := range readTar(t, save(t, s, "reg.test/multi:1")) {
				if e.hdr.Name == "index.json" {
					json.Unmarshal(e.body, &saved)
				}
			}
			if len(saved.Manifests) != 1 || saved.Manifests[0].Digest != id || saved.Manifests[0].MediaType != ocispec.MediaTypeImageIndex {
				t.Errorf("saved index.json %+v, want the index %s", saved, id)
			}
			again := newStore(t)
			if _, err := archive.Load(context.Background(), again, bytes.NewReader(save(t, s, "reg.test/multi:1")), archive.LoadOptions{Platform: &p}); err != nil {
				t.Fatal(err)
			}
			if ix, _, _ := again.Index("reg.test/multi:1"); !ix.Complete || ix.Digest != id {
				t.Errorf("after save and load: %+v", ix)
			}
		})
	}
	t.Run("some platforms", func(t *testing.T) {
		s := newStore(t)
		p := pullPlatform("amd64")
		partial := tarOf(t, append(amd.blobEntries(), file(blobName(id), index), file("index.json", top))...)
		loaded, err := archive.Load(context.Background(), s, bytes.NewReader(partial), archive.LoadOptions{Platform: &p})
		if err != nil || len(loaded) != 1 || loaded[0].Index != "" || loaded[0].Image.ID != amd.id {
			t.Fatalf("loaded %+v, %v; want the amd64 image, not the index", loaded, err)
		}
		if _, ok, _ := s.Index("reg.test/multi:1"); ok {
			t.Error("an index with a platform missing from the archive was kept")
		}
	})
	t.Run("no such platform", func(t *testing.T) {
		s := newStore(t)
		p := pullPlatform("s390x")
		_, err := archive.Load(context.Background(), s, bytes.NewReader(tb), archive.LoadOptions{Platform: &p})
		if !errors.Is(err, archive.ErrInvalid) || !strings.Contains(err.Error(), "linux/s390x") {
			t.Errorf("error %v", err)
		}
		storeEmpty(t, s)
	})
	t.Run("single image of another platform", func(t *testing.T) {
		s := newStore(t)
		p := pullPlatform("arm64")
		one := tarOf(t, append(amd.blobEntries(), file("index.json", mustJSON(t, ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2},
			Manifests: []ocispec.Descriptor{amd.descriptor()}})))...)
		_, err := archive.Load(context.Background(), s, bytes.NewReader(one), archive.LoadOptions{Platform: &p})
		if !errors.Is(err, archive.ErrInvalid) || !strings.Contains(err.Error(), "linux/amd64, not linux/arm64") {
			t.Errorf("error %v", err)
		}
		storeEmpty(t, s)
	})
}

// storeEmpty fails t unless s records no image and no reference.
func storeEmpty(t *testing.T, s *image.Store) {
	t.Helper()
	imgs, err := s.List()
	if err != nil || len(imgs) != 0 {
		t.Errorf("the store lists %d images (%v) after a failed load", len(imgs), err)
	}
	if b, err := os.ReadFile(filepath.Join(s.Dir(), "refs.json")); err == nil && strings.Contains(string(b), "reg.test") {
		t.Errorf("refs.json after a failed load: %s", b)
	}
}

// TestLoadRefuses loads hostile and broken archives: each is refused
// with an error naming the entry, and the store records nothing.
func TestLoadRefuses(t *testing.T) {
	needRoot(t)
	img := newImage(t, "amd64", newLayer(t, map[string]string{"etc/x": "x\n"}))
	src := newStore(t)
	img.put(t, src, "reg.test/good:1")
	good := save(t, src, "reg.test/good:1")
	goodEntries := readTar(t, good)
	// with puts extra entries before the metadata (the first entries are
	// blobs/, blobs/sha256/ and the blobs).
	with := func(extra ...tarEntry) []byte {
		n := 2 + 3
		entries := slices.Concat(goodEntries[:n], extra, goodEntries[n:])
		return tarOf(t, entries...)
	}
	replace := func(name string, body []byte) []byte {
		var entries []tarEntry
		for _, e := range goodEntries {
			if e.hdr.Name == name {
				e = file(name, body)
			}
			entries = append(entries, e)
		}
		return tarOf(t, entries...)
	}
	layerName := blobName(img.layers[0].digest)
	lying := bytes.Clone(img.layers[0].blob)
	lying[len(lying)/2] ^= 0xff
	badDiff := newImage(t, "amd64", newLayer(t, map[string]string{"etc/y": "y\n"}))
	unsafeLayer := tarOf(t, file("../escape", []byte("x")))
	ul := testLayer{tar: unsafeLayer, blob: gzipped(t, unsafeLayer)}
	ul.diffID, ul.digest = digest.FromBytes(ul.tar), digest.FromBytes(ul.blob)
	unsafeImg := newImage(t, "amd64", ul)

	dev := tarEntry{tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}, nil}
	fifo := tarEntry{tar.Header{Typeflag: tar.TypeFifo, Name: "fifo", Mode: 0o666}, nil}

	for _, tc := range []struct {
		name string
		data []byte
		err  error
		want string // in the message
	}{
		{"truncated", good[:len(good)/2], archive.ErrInvalid, "truncated"},
		{"truncated in a blob", good[:1024+512+100], archive.ErrInvalid, "truncated"},
		{"lying blob", replace(layerName, lying), archive.ErrDigestMismatch, layerName},
		{"dot-dot climb", with(file("../evil", []byte("x"))), archive.ErrUnsafeEntry, `"../evil"`},
		{"deep climb", with(file("a/../../evil", []byte("x"))), archive.ErrUnsafeEntry, `"a/../../evil"`},
		{"absolute", with(file("/etc/evil", []byte("x"))), archive.ErrUnsafeEntry, `"/etc/evil"`},
		{"symlink out", with(link(tar.TypeSymlink, "a/link", "../../etc")), archive.ErrUnsafeEntry, `"a/link"`},
		{"absolute symlink", with(link(tar.TypeSymlink, "link", "/etc/passwd")), archive.ErrUnsafeEntry, `"link"`},
		{"hardlink out", with(link(tar.TypeLink, "hl", "../etc/passwd")), archive.ErrUnsafeEntry, `"hl"`},
		{"hardlink absolute", with(link(tar.TypeLink, "hl", "/etc/passwd")), archive.ErrUnsafeEntry, `"hl"`},
		{"hardlink to nothing", with(link(tar.TypeLink, "hl", "missing")), archive.ErrUnsafeEntry, `"hl"`},
		{"write through symlink", with(link(tar.TypeSymlink, "d", "blobs"), file("d/x", []byte("x"))), archive.ErrUnsafeEntry, `"d/x"`},
		{"write through hardlink", with(file("f", []byte("x")), link(tar.TypeLink, "g", "f"), file("g/x", []byte("x"))), archive.ErrUnsafeEntry, `"g/x"`},
		{"duplicate", with(file("f", []byte("x")), file("f", []byte("y"))), archive.ErrUnsafeEntry, `"f"`},
		{"device node", with(dev), archive.ErrUnsafeEntry, `"dev/null"`},
		{"fifo", with(fifo), archive.ErrUnsafeEntry, `"fifo"`},
		{"manifest.json climbs", replace("manifest.json", mustJSON(t, []map[string]any{{"Config": "../x.json", "Layers": []string{}}})),
			archive.ErrUnsafeEntry, `"../x.json"`},
		{"symlink loop", tarOf(t, link(tar.TypeSymlink, "a", "b"), link(tar.TypeSymlink, "b", "a"),
			file("manifest.json", mustJSON(t, []map[string]any{{"Config": "a", "Layers": []string{}}}))), archive.ErrUnsafeEntry, `"a"`},
		{"not an archive", []byte("hello, world\n"), archive.ErrInvalid, "archive"},
		{"no manifest", tarOf(t, file("x", []byte("x"))), archive.ErrInvalid, "manifest.json"},
		{"diff_id mismatch", tarOf(t,
			file("c.json", badDiff.config), file("l.tar", img.layers[0].tar),
			file("manifest.json", mustJSON(t, []map[string]any{{"Config": "c.json", "RepoTags": []string{"reg.test/bad:1"}, "Layers": []string{"l.tar"}}}))),
			layers.ErrDigestMismatch, `"l.tar"`},
		{"unsafe layer entry", tarOf(t, append(unsafeImg.blobEntries(),
			file("index.json", mustJSON(t, ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, Manifests: []ocispec.Descriptor{unsafeImg.descriptor()}})))...),
			layers.ErrUnsafeEntry, "../escape"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			_, err := load(s, tc.data)
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v; want %v naming %s", err, tc.err, tc.want)
			}
			t.Log(err)
			storeEmpty(t, s)
			if ents, _ := filepath.Glob(filepath.Join(s.Dir(), ".load-*")); len(ents) != 0 {
				t.Errorf("spool left: %q", ents)
			}
		})
	}
}

// pullPlatform is linux/arch.
func pullPlatform(arch string) pull.Platform {
	return pull.Platform{OS: "linux", Architecture: arch}.Normalize()
}

package archive_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/runner/archive"
	"github.com/berth-registry/berth/runner/image"
	"github.com/berth-registry/berth/runner/layers"
)

// needRoot skips t unless it runs as root: the layer store chowns and
// sets trusted xattrs.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the layer store chowns, makes whiteout devices and sets trusted xattrs")
	}
}

// newStore opens an empty image store completing short names with
// "reg.test".
func newStore(t testing.TB) *image.Store {
	t.Helper()
	s, err := image.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s.DefaultRegistry = "reg.test"
	return s
}

// tarEntry is one entry written by tarOf.
type tarEntry struct {
	hdr  tar.Header
	body []byte
}

// file is a regular file entry.
func file(name string, body []byte) tarEntry {
	return tarEntry{tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body))}, body}
}

// link is a symlink (typ tar.TypeSymlink) or hardlink (tar.TypeLink).
func link(typ byte, name, target string) tarEntry {
	return tarEntry{tar.Header{Typeflag: typ, Name: name, Linkname: target, Mode: 0o777}, nil}
}

// tarOf writes a tar of the entries.
func tarOf(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readTar returns the entries of a tar.
func readTar(t testing.TB, b []byte) []tarEntry {
	t.Helper()
	var out []tarEntry
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tarEntry{*hdr, body})
	}
}

// gzipped compresses b with gzip.
func gzipped(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// testLayer is a layer: its tar, its gzip blob and their digests.
type testLayer struct {
	tar, blob      []byte
	diffID, digest digest.Digest
}

// newLayer makes a layer holding the files (name -> content) and a
// directory "etc".
func newLayer(t testing.TB, files map[string]string) testLayer {
	t.Helper()
	entries := []tarEntry{{tar.Header{Typeflag: tar.TypeDir, Name: "etc/", Mode: 0o755}, nil}}
	for name, body := range files {
		entries = append(entries, file(name, []byte(body)))
	}
	tb := tarOf(t, entries...)
	blob := gzipped(t, tb)
	return testLayer{tar: tb, blob: blob, diffID: digest.FromBytes(tb), digest: digest.FromBytes(blob)}
}

// testImage is an image made by newImage.
type testImage struct {
	layers    []testLayer
	config    []byte
	manifest  []byte
	id, mdgst digest.Digest
}

// newImage makes an image of the layers, for linux/amd64 unless a
// platform is given, with an OCI manifest of gzip layers.
func newImage(t testing.TB, arch string, ls ...testLayer) testImage {
	t.Helper()
	created := time.Unix(1700000000, 0).UTC()
	cfg := ocispec.Image{
		Created:  &created,
		Platform: ocispec.Platform{OS: "linux", Architecture: arch},
		Config:   ocispec.ImageConfig{Cmd: []string{"/bin/true"}},
		RootFS:   ocispec.RootFS{Type: "layers"},
	}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest}
	for _, l := range ls {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.diffID)
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: l.digest, Size: int64(len(l.blob))})
	}
	cb, _ := json.Marshal(cfg)
	m.Config = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cb), Size: int64(len(cb))}
	mb, _ := json.Marshal(m)
	return testImage{layers: ls, config: cb, manifest: mb, id: digest.FromBytes(cb), mdgst: digest.FromBytes(mb)}
}

// descriptor describes the image's manifest.
func (img testImage) descriptor() ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: img.mdgst, Size: int64(len(img.manifest))}
}

// blobEntries are the blobs/ entries of the image.
func (img testImage) blobEntries() []tarEntry {
	out := []tarEntry{file(blobName(img.mdgst), img.manifest), file(blobName(img.id), img.config)}
	for _, l := range img.layers {
		out = append(out, file(blobName(l.digest), l.blob))
	}
	return out
}

func blobName(d digest.Digest) string { return "blobs/" + d.Algorithm().String() + "/" + d.Encoded() }

// put records the image in s under refs, as a pull would leave it.
func (img testImage) put(t testing.TB, s *image.Store, refs ...string) image.Image {
	t.Helper()
	release, err := s.Hold()
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	for _, b := range [][]byte{img.manifest, img.config} {
		if _, err := s.PutBlobBytes(b, ""); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range img.layers {
		if _, err := s.PutBlobBytes(l.blob, l.digest); err != nil {
			t.Fatal(err)
		}
		if _, err := s.LayerStore().Unpack(context.Background(), bytes.NewReader(l.blob), ocispec.MediaTypeImageLayerGzip, l.diffID, layers.Limits{}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Record(image.Image{ManifestDigest: img.mdgst}, refs...)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// save runs archive.Save and returns the tar.
func save(t testing.TB, s *image.Store, names ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := archive.Save(context.Background(), s, &buf, names); err != nil {
		t.Fatalf("Save %q: %v", names, err)
	}
	return buf.Bytes()
}

// load runs archive.Load of b into s.
func load(s *image.Store, b []byte) ([]archive.Loaded, error) {
	return archive.Load(context.Background(), s, bytes.NewReader(b), archive.LoadOptions{})
}

// mustJSON marshals v.
func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

package commit_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/runner/commit"
	"github.com/berth-registry/berth/runner/container"
	"github.com/berth-registry/berth/runner/image"
	"github.com/berth-registry/berth/runner/layers"
)

// testRegistry completes the references of the tests; nothing is
// contacted.
const testRegistry = "localhost:5000"

var epoch = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// needRoot skips t unless it runs as root: the layer store chowns, makes
// whiteout devices and sets trusted xattrs, and commit mounts overlays.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the layer store chowns, makes whiteouts and mounts overlays")
	}
}

// tarOf builds a tar of entries: names ending in "/" are directories,
// the others files with the given content.
func tarOf(t *testing.T, files ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := 0; i < len(files); i += 2 {
		name, body := files[i], files[i+1]
		h := &tar.Header{Name: name, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(body)), ModTime: epoch}
		if name[len(name)-1] == '/' {
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// baseFiles is the base image's tree.
var baseFiles = []string{
	"etc/", "", "etc/os-release", "test\n", "etc/motd", "old motd\n",
	"gone/", "", "gone/a", "a", "gone/b", "b",
	"dir2file/", "", "dir2file/x", "x",
	"doomed", "doomed\n",
}

type fixture struct {
	images     *image.Store
	containers *container.Store
	base       image.Image
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	needRoot(t)
	dir := t.TempDir()
	images, err := image.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	images.DefaultRegistry = testRegistry
	if err := images.LayerStore().OverlaySupported(); err != nil {
		t.Skipf("overlayfs: %v", err)
	}
	containers, err := container.OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	base, err := commit.Import(context.Background(), images, bytes.NewReader(gzipped(t, tarOf(t, baseFiles...))),
		commit.ImportOptions{Source: "-", Ref: "base:1", Changes: []string{"ENV A=1", `CMD ["sh"]`}})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{images: images, containers: containers, base: base}
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// container makes a stopped container of img whose rootfs was changed by
// change (given the mounted rootfs).
func (f *fixture) container(t *testing.T, img image.Image, change func(root string) error) *container.Container {
	t.Helper()
	c, err := f.containers.New(container.State{Image: "base", ImageID: img.ID.String(), Command: []string{"sh", "-c", "edit things"}})
	if err != nil {
		t.Fatal(err)
	}
	mounted, err := f.images.Rootfs(context.Background(), img, c.Upper(), c.Work(), c.Rootfs(), image.RootfsOptions{})
	if err != nil || !mounted {
		t.Fatalf("rootfs: mounted=%v, %v", mounted, err)
	}
	err = change(c.Rootfs())
	if uerr := c.Unmount(); uerr != nil {
		t.Fatal(uerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Remove() })
	return c
}

// edit makes the changes the integration test makes too.
func edit(root string) error {
	p := func(s string) string { return filepath.Join(root, s) }
	for _, step := range []func() error{
		func() error { return os.WriteFile(p("new"), []byte("new file\n"), 0o644) },
		func() error { return os.WriteFile(p("etc/motd"), []byte("new motd\n"), 0o644) },
		func() error { return os.Remove(p("doomed")) },
		func() error { return os.RemoveAll(p("gone")) },
		func() error { return os.RemoveAll(p("dir2file")) },
		func() error { return os.WriteFile(p("dir2file"), []byte("a file now\n"), 0o644) },
	} {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

func TestCommitStopped(t *testing.T) {
	f := newFixture(t)
	c := f.container(t, f.base, edit)
	created := time.Date(2025, 6, 7, 8, 9, 10, 0, time.UTC)
	img, err := commit.Commit(context.Background(), f.images, c, commit.Options{
		Changes: []string{`CMD ["cat","/new"]`, "ENV B=2"}, Message: "my change", Author: "Jane <j@example.org>",
		Pause: true, Ref: "committed:1", Created: created,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(img.References, testRegistry+"/committed:1") {
		t.Errorf("references %v", img.References)
	}
	cfg := img.Config
	if !reflect.DeepEqual(cfg.Config.Cmd, []string{"cat", "/new"}) || !slices.Contains(cfg.Config.Env, "A=1") || !slices.Contains(cfg.Config.Env, "B=2") {
		t.Errorf("config %+v", cfg.Config)
	}
	if cfg.Author != "Jane <j@example.org>" || cfg.Created == nil || !cfg.Created.Equal(created) {
		t.Errorf("author %q created %v", cfg.Author, cfg.Created)
	}
	if len(cfg.History) != 2 {
		t.Fatalf("history %+v", cfg.History)
	}
	h := cfg.History[1]
	if h.Comment != "my change" || h.CreatedBy != "sh -c edit things" || h.Author != cfg.Author || h.EmptyLayer || !h.Created.Equal(created) {
		t.Errorf("history entry %+v", h)
	}
	if len(img.Layers) != 2 || img.Layers[0] != f.base.Layers[0] || len(cfg.RootFS.DiffIDs) != 2 {
		t.Fatalf("layers %+v, diff_ids %v", img.Layers, cfg.RootFS.DiffIDs)
	}
	if img.ManifestMediaType != ocispec.MediaTypeImageManifest || img.Layers[1].MediaType != ocispec.MediaTypeImageLayerGzip {
		t.Errorf("media types %s, %s", img.ManifestMediaType, img.Layers[1].MediaType)
	}
	checkLayerBlob(t, f.images, img.Layers[1])

	// The new image's rootfs is the container's.
	root := filepath.Join(t.TempDir(), "root")
	if err := f.images.Flatten(context.Background(), img, root); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"new": "new file\n", "etc/motd": "new motd\n", "etc/os-release": "test\n", "dir2file": "a file now\n"} {
		if b, err := os.ReadFile(filepath.Join(root, name)); err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", name, b, err, want)
		}
	}
	for _, gone := range []string{"doomed", "gone", "dir2file/x"} {
		if _, err := os.Lstat(filepath.Join(root, gone)); err == nil {
			t.Errorf("%s is still in the committed image", gone)
		}
	}

	// Export: the whole tree, with the changes.
	var buf bytes.Buffer
	if err := commit.Export(context.Background(), f.images, c, &buf); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names[h.Name] = true
	}
	for _, n := range []string{"new", "etc/", "etc/motd", "etc/os-release", "dir2file", "dev/", "proc/"} {
		if !names[n] {
			t.Errorf("export lacks %s (has %v)", n, names)
		}
	}
	for _, n := range []string{"doomed", "gone/", "gone/a", "dir2file/", ".wh.doomed"} {
		if names[n] {
			t.Errorf("export has %s", n)
		}
	}
}

// checkLayerBlob checks that a stored layer blob is gzip whose content
// hashes to the layer's diff_id, and that its size is right.
func checkLayerBlob(t *testing.T, images *image.Store, l image.Layer) {
	t.Helper()
	b, size, err := images.OpenBlob(l.Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if size != l.Size {
		t.Errorf("blob size %d, manifest says %d", size, l.Size)
	}
	zr, err := gzip.NewReader(b)
	if err != nil {
		t.Fatal(err)
	}
	d := digest.Canonical.Digester()
	if _, err := io.Copy(d.Hash(), zr); err != nil {
		t.Fatal(err)
	}
	if d.Digest() != l.DiffID {
		t.Errorf("blob uncompresses to %s, diff_id %s", d.Digest(), l.DiffID)
	}
}

// TestCommitDockerBaseNoChange: over a Docker schema 2 image the new image
// keeps Docker media types; a container that changed nothing adds a
// history entry marked empty and no layer.
func TestCommitDockerBaseNoChange(t *testing.T) {
	f := newFixture(t)
	// The base image again, under a Docker schema 2 manifest.
	raw, err := f.images.ReadBlob(f.base.ManifestDigest)
	if err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	json.Unmarshal(raw, &m)
	m.MediaType = "application/vnd.docker.distribution.manifest.v2+json"
	m.Config.MediaType = "application/vnd.docker.container.image.v1+json"
	m.Layers[0].MediaType = layers.MediaTypeDockerLayer
	raw, _ = json.Marshal(m)
	md, err := f.images.PutBlobBytes(raw, "")
	if err != nil {
		t.Fatal(err)
	}
	dbase, err := f.images.Record(image.Image{ManifestDigest: md}, "dockerbase:1")
	if err != nil {
		t.Fatal(err)
	}
	c := f.container(t, dbase, func(string) error { return nil })
	img, err := commit.Commit(context.Background(), f.images, c, commit.Options{Pause: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(img.References) != 0 {
		t.Errorf("a commit without IMAGE is named %v", img.References)
	}
	if img.ManifestMediaType != "application/vnd.docker.distribution.manifest.v2+json" {
		t.Errorf("manifest media type %s", img.ManifestMediaType)
	}
	if len(img.Layers) != 1 || len(img.Config.RootFS.DiffIDs) != 1 {
		t.Errorf("an empty change added a layer: %+v", img.Layers)
	}
	if h := img.Config.History; len(h) != 2 || !h[1].EmptyLayer {
		t.Errorf("history %+v", h)
	}
}

// TestCommitRefusals: bad changes and references fail before anything is
// stored.
func TestCommitRefusals(t *testing.T) {
	f := newFixture(t)
	c := f.container(t, f.base, edit)
	before, _ := f.images.List()
	_, err := commit.Commit(context.Background(), f.images, c, commit.Options{Changes: []string{"RUN true"}})
	if !errors.Is(err, commit.ErrInvalidChange) {
		t.Errorf("RUN: %v", err)
	}
	_, err = commit.Commit(context.Background(), f.images, c, commit.Options{Ref: "Bad:Name:x"})
	if err == nil {
		t.Error("a malformed reference was taken")
	}
	after, _ := f.images.List()
	if len(after) != len(before) {
		t.Errorf("images %d -> %d after refused commits", len(before), len(after))
	}
}

// TestImportHostile: an import tar with an entry that climbs out is
// refused, naming the entry, and no image is added.
func TestImportHostile(t *testing.T) {
	f := newFixture(t)
	before, _ := f.images.List()
	blobs, layerDirs := countFiles(t, filepath.Join(f.images.Dir(), "blobs")), countFiles(t, filepath.Join(f.images.Dir(), "layers", "layers"))
	_, err := commit.Import(context.Background(), f.images, bytes.NewReader(tarOf(t, "ok", "fine", "../../etc/evil", "x")),
		commit.ImportOptions{Source: "evil.tar", Ref: "evil:1"})
	if !errors.Is(err, layers.ErrUnsafeEntry) || !bytes.Contains([]byte(err.Error()), []byte("../../etc/evil")) {
		t.Errorf("err = %v, want ErrUnsafeEntry naming the entry", err)
	}
	after, _ := f.images.List()
	if len(after) != len(before) {
		t.Errorf("images %d -> %d", len(before), len(after))
	}
	if _, err := f.images.Get("evil:1"); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("evil:1: %v", err)
	}
	if n, m := countFiles(t, filepath.Join(f.images.Dir(), "blobs")), countFiles(t, filepath.Join(f.images.Dir(), "layers", "layers")); n != blobs || m != layerDirs {
		t.Errorf("blob store %d -> %d files, layer store %d -> %d: a refused import left something", blobs, n, layerDirs, m)
	}
}

// countFiles counts the files and directories below dir.
func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(string, fs.DirEntry, error) error { n++; return nil })
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestImport(t *testing.T) {
	f := newFixture(t)
	img := f.base
	if img.Config.History[0].Comment != "Imported from -" || !reflect.DeepEqual(img.Config.Config.Cmd, []string{"sh"}) {
		t.Errorf("config %+v", img.Config)
	}
	if len(img.Layers) != 1 || img.Layers[0].DiffID != digest.FromBytes(tarOf(t, baseFiles...)) {
		t.Errorf("layers %+v", img.Layers)
	}
	checkLayerBlob(t, f.images, img.Layers[0])
}

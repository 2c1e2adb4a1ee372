package archive_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/manifest"
	"github.com/berth-registry/berth/runner/archive"
	"github.com/berth-registry/berth/runner/image"
	"github.com/berth-registry/berth/runner/layers"
	"github.com/berth-registry/berth/runner/pull"
)

// FuzzLoad checks `berth load` on any archive: it fails with an error the
// caller can tell apart (one of the archive, image, layer, manifest or
// reference errors), and whatever the archive holds, nothing lands outside
// the image store's directory.
func FuzzLoad(f *testing.F) {
	needRoot(f)
	amd := newImage(f, "amd64", newLayer(f, map[string]string{"etc/arch": "amd64\n", "bin/sh": "#!"}))
	layout := func(extra ...tarEntry) []byte {
		index := mustJSON(f, ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex,
			Manifests: []ocispec.Descriptor{func() ocispec.Descriptor {
				d := amd.descriptor()
				d.Annotations = map[string]string{ocispec.AnnotationRefName: "reg.test/fuzz:1"}
				return d
			}()}})
		entries := append(amd.blobEntries(), file("index.json", index), file("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)))
		return tarOf(f, append(entries, extra...)...)
	}
	docker, _ := dockerArchive(f, []string{"reg.test/old:1", "short:2"})
	f.Add(layout())
	f.Add(gzipped(f, layout()))
	f.Add(docker)
	f.Add(layout(link('2', "blobs/sha256/escape", "../../../../etc/passwd")))
	f.Add(layout(file("../outside", []byte("x"))))
	f.Add(tarOf(f, file("index.json", []byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:`+digest.FromString("x").Encoded()+`","size":1}]}`))))
	f.Add(tarOf(f, file("manifest.json", []byte(`[{"Config":"../c.json","RepoTags":["a:b"],"Layers":["/etc/passwd"]}]`))))
	f.Add([]byte{})
	sentinels := []error{archive.ErrInvalid, archive.ErrUnsafeEntry, archive.ErrDigestMismatch, archive.ErrUnsupported,
		image.ErrBlobMissing, image.ErrDigestMismatch, image.ErrLayerMissing, image.ErrCorrupt,
		layers.ErrUnsafeEntry, layers.ErrTooLarge, layers.ErrDigestMismatch, layers.ErrUnsupportedMediaType, layers.ErrInvalid,
		manifest.ErrInvalid, manifest.ErrUnsupported, manifest.ErrDigestInvalid, pull.ErrInvalidReference, pull.ErrInvalidPlatform}
	platform := pull.Platform{OS: "linux", Architecture: "amd64"}
	f.Fuzz(func(t *testing.T, b []byte) {
		top := t.TempDir()
		dir := filepath.Join(top, "store")
		s, err := image.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		s.DefaultRegistry = "reg.test"
		_, err = archive.Load(context.Background(), s, bytes.NewReader(b),
			archive.LoadOptions{Platform: &platform, Limits: layers.Limits{MaxBytes: 1 << 20, MaxEntries: 256}})
		if err != nil {
			typed := false
			for _, e := range sentinels {
				typed = typed || errors.Is(err, e)
			}
			if !typed {
				t.Fatalf("Load: %v wraps none of the errors callers tell apart", err)
			}
		}
		if ents, err := os.ReadDir(top); err != nil || len(ents) != 1 || ents[0].Name() != "store" {
			t.Fatalf("Load wrote outside the store: %v, %v", ents, err)
		}
	})
}

package manifest_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-registry/berth/manifest"
)

// FuzzParse checks that Parse never panics, that every error wraps one of its sentinels,
// and that whatever it accepts is self-consistent: a stored media type, a shape that
// matches it, valid references, and the same answer when parsed again under that type.
func FuzzParse(f *testing.F) {
	contentTypes := []string{"", "application/json", "text/plain", manifest.MediaTypeOCIManifest,
		manifest.MediaTypeOCIIndex + "; charset=utf-8", manifest.MediaTypeDockerManifest, manifest.MediaTypeDockerManifestList}
	bodies := []string{ociImage, ociImageNoMediaType, ociIndex, ociIndexNoMediaType, dockerManifest, dockerForeign,
		dockerList, artifactWithType, artifactWithConfigType, signatureIndex, dockerSchema1,
		`{"schemaVersion":2,"manifests":[],"config":{}}`, `{"schemaVersion":2,"layers":null}`, `{}`, `[]`, `null`, ``,
		`{"schemaVersion":2,"config":{"mediaType":"a/b","digest":"@cfg","size":1,"Size":2}}`}
	for i, b := range bodies {
		f.Add(contentTypes[i%len(contentTypes)], []byte(fill(b)))
	}
	// The test images' manifests, indexes, layout index.json files and configs, as
	// the registry receives them (with and without a Content-Type).
	files, err := filepath.Glob(filepath.Join("testdata", "images", "*.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed images in testdata/images: %v", err)
	}
	for i, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(contentTypes[i%len(contentTypes)], b)
	}
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		m, err := manifest.Parse(contentType, body)
		if err != nil {
			if !errors.Is(err, manifest.ErrInvalid) && !errors.Is(err, manifest.ErrUnsupported) && !errors.Is(err, manifest.ErrTooLarge) {
				t.Fatalf("error %q wraps no sentinel", err)
			}
			return
		}
		switch m.MediaType {
		case manifest.MediaTypeOCIManifest, manifest.MediaTypeDockerManifest:
			if m.IsIndex() || m.Config == nil || m.Manifests != nil {
				t.Fatalf("%s: IsIndex %v, Config %v, Manifests %v", m.MediaType, m.IsIndex(), m.Config, m.Manifests)
			}
			if len(m.BlobReferences()) == 0 {
				t.Fatalf("%s without blob references", m.MediaType)
			}
		case manifest.MediaTypeOCIIndex, manifest.MediaTypeDockerManifestList:
			if !m.IsIndex() || m.Config != nil || m.Layers != nil || m.Manifests == nil || len(m.BlobReferences()) != 0 {
				t.Fatalf("%s: IsIndex %v, Config %v, Layers %v, Manifests %v", m.MediaType, m.IsIndex(), m.Config, m.Layers, m.Manifests)
			}
		default:
			t.Fatalf("accepted with media type %q", m.MediaType)
		}
		for _, d := range append(m.BlobReferences(), m.Manifests...) {
			if _, err := manifest.ParseDigest(string(d.Digest)); err != nil || d.Size < 0 {
				t.Fatalf("accepted descriptor %+v: %v", d, err)
			}
		}
		if m.Subject != nil {
			if _, err := manifest.ParseDigest(string(m.Subject.Digest)); err != nil {
				t.Fatalf("accepted subject %+v: %v", m.Subject, err)
			}
		}
		again, err := manifest.Parse(m.MediaType, body)
		if err != nil || again.MediaType != m.MediaType || again.ArtifactType != m.ArtifactType {
			t.Fatalf("re-parse as %s: %+v, %v", m.MediaType, again, err)
		}
		detected := manifest.DetectMediaType(body)
		switch {
		case detected == m.MediaType:
		case detected == manifest.MediaTypeOCIManifest && m.MediaType == manifest.MediaTypeDockerManifest,
			detected == manifest.MediaTypeOCIIndex && m.MediaType == manifest.MediaTypeDockerManifestList,
			detected == "" && m.IsIndex():
			// Docker type given only by Content-Type, or an index whose type came only from
			// Content-Type and that has no manifests: the bytes alone cannot tell.
		default:
			t.Fatalf("DetectMediaType = %q, Parse resolved %q", detected, m.MediaType)
		}
	})
}

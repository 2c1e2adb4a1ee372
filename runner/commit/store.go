package commit

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/runner/image"
	"github.com/berth-registry/berth/runner/layers"
)

// Media types of Docker image manifest v2 schema 2 that an image committed
// over a Docker image keeps.
const (
	mediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerConfig   = dockerspec.DockerOCIImageMediaType
)

// format is the manifest format of a new image: the media types of its
// manifest, config and new layer.
type format struct {
	manifest, config, layer string
}

var (
	ociFormat    = format{ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageConfig, ocispec.MediaTypeImageLayerGzip}
	dockerFormat = format{mediaTypeDockerManifest, mediaTypeDockerConfig, layers.MediaTypeDockerLayer}
)

// formatOf is the format of an image built over base: base's own, Docker
// schema 2 or OCI.
func formatOf(base image.Image) format {
	if base.ManifestMediaType == mediaTypeDockerManifest {
		return dockerFormat
	}
	return ociFormat
}

// newLayer is a layer stored by storeLayer.
type newLayer struct {
	desc   ocispec.Descriptor // the compressed blob, for the manifest
	diffID digest.Digest
}

// storeLayer stores the uncompressed tar stream write writes as a new layer:
// unpacked into the layer store (layers.Store.Add, which checks every
// entry and computes the diff_id) while the same bytes are
// gzip-compressed into a blob of the image store, which is committed only
// once the layer is stored. The caller holds images.Hold.
func storeLayer(ctx context.Context, images *image.Store, mediaType string, write func(io.Writer) error) (newLayer, error) {
	bw, err := images.NewBlobWriter("", -1)
	if err != nil {
		return newLayer{}, err
	}
	defer bw.Abort()
	gz, err := gzip.NewWriterLevel(bw, gzip.DefaultCompression)
	if err != nil {
		return newLayer{}, err
	}
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(write(pw))
	}()
	l, err := images.LayerStore().Add(ctx, io.TeeReader(pr, gz), layers.Limits{})
	pr.CloseWithError(fmt.Errorf("commit: layer stream abandoned"))
	<-done
	if err != nil {
		return newLayer{}, err
	}
	if err := gz.Close(); err != nil {
		return newLayer{}, fmt.Errorf("commit: compressing the layer: %w", err)
	}
	d, size, err := bw.Commit()
	if err != nil {
		return newLayer{}, err
	}
	return newLayer{
		desc:   ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: size},
		diffID: l.DiffID,
	}, nil
}

// record stores cfg and a manifest of f naming it, baseLayers and the new
// layer (none when add is nil), and records the image under refs.
func record(images *image.Store, f format, cfg *dockerspec.DockerOCIImage, baseLayers []image.Layer, add *newLayer, refs []string) (image.Image, error) {
	raw, err := json.Marshal(cfg)
	if err != nil {
		return image.Image{}, fmt.Errorf("commit: encoding the config: %w", err)
	}
	cd, err := images.PutBlobBytes(raw, "")
	if err != nil {
		return image.Image{}, err
	}
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: f.manifest,
		Config:    ocispec.Descriptor{MediaType: f.config, Digest: cd, Size: int64(len(raw))},
		Layers:    []ocispec.Descriptor{},
	}
	for _, l := range baseLayers {
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size})
	}
	if add != nil {
		m.Layers = append(m.Layers, add.desc)
	}
	rawManifest, err := json.Marshal(m)
	if err != nil {
		return image.Image{}, fmt.Errorf("commit: encoding the manifest: %w", err)
	}
	md, err := images.PutBlobBytes(rawManifest, "")
	if err != nil {
		return image.Image{}, err
	}
	return images.Record(image.Image{ID: cd, ManifestDigest: md}, refs...)
}

// refsOf is the reference list Record takes for an optional reference.
func refsOf(ref string) []string {
	if ref == "" {
		return nil
	}
	return []string{ref}
}

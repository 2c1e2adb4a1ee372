package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/runner/layers"
)

// Media types of Docker image manifest v2 schema 2, which an image made
// over a Docker image keeps.
const (
	MediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerConfig   = "application/vnd.docker.container.image.v1+json"
)

// Format is the manifest format of an image made here (committed, built,
// imported): the media types of its manifest, its config and its new
// layers.
type Format struct {
	Manifest, Config, Layer string
}

// The two formats of an image made here.
var (
	FormatOCI    = Format{ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageConfig, ocispec.MediaTypeImageLayerGzip}
	FormatDocker = Format{MediaTypeDockerManifest, MediaTypeDockerConfig, layers.MediaTypeDockerLayer}
)

// FormatOf is the format of an image made over base: base's own, Docker
// schema 2 or OCI.
func FormatOf(base Image) Format {
	if base.ManifestMediaType == MediaTypeDockerManifest {
		return FormatDocker
	}
	return FormatOCI
}

// StoreLayer stores the uncompressed layer tar stream write writes as a
// new layer: unpacked into the layer store (layers.Store.Add, which checks
// every entry and computes the diff_id) while the same bytes are
// gzip-compressed into a blob, which is committed only once the layer is
// stored. The compression is deterministic (a header without name or
// time, one fixed level), so the same tar stream gives the same blob. The
// result describes both, the blob with mediaType. The caller holds Hold
// until the image naming the layer is recorded.
func (s *Store) StoreLayer(ctx context.Context, mediaType string, write func(io.Writer) error) (Layer, error) {
	return s.storeNewLayer(mediaType, func(w io.Writer) (layers.Layer, error) {
		pr, pw := io.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			pw.CloseWithError(write(pw))
		}()
		l, err := s.layers.Add(ctx, io.TeeReader(pr, w), layers.Limits{})
		pr.CloseWithError(fmt.Errorf("image: layer stream abandoned"))
		<-done
		return l, err
	})
}

// StoreUpper stores the overlayfs upper directory upper, which nothing
// uses any more, as a new layer written as layers.WriteUpper writes it
// with opts: the directory itself moves into the layer store
// (layers.Store.AddUpper) while its tar stream is gzip-compressed into
// the blob, as StoreLayer compresses it. upper is gone afterwards. The
// caller holds Hold until the image naming the layer is recorded.
func (s *Store) StoreUpper(ctx context.Context, mediaType, upper string, opts layers.WriteOptions) (Layer, error) {
	var odd digest.Digest // the diff_id of a stream AddUpper could not store
	l, err := s.storeNewLayer(mediaType, func(w io.Writer) (layers.Layer, error) {
		l, err := s.layers.AddUpper(ctx, upper, w, opts)
		if errors.Is(err, layers.ErrNotMovable) {
			odd, err = l.DiffID, nil
		}
		return l, err
	})
	if err != nil || odd == "" {
		return l, err
	}
	// Extract the stream from the blob just stored, as StoreLayer would
	// have.
	f, _, err := s.OpenBlob(l.Digest)
	if err != nil {
		return Layer{}, err
	}
	defer f.Close()
	sl, err := s.layers.Add(ctx, f, layers.Limits{})
	if err != nil {
		return Layer{}, err
	}
	if sl.DiffID != odd {
		return Layer{}, fmt.Errorf("image: layer of %s: %w: stored %s, wrote %s", upper, layers.ErrDigestMismatch, sl.DiffID, odd)
	}
	return l, nil
}

// storeNewLayer runs store, which stores a new layer in the layer store
// from the uncompressed tar stream it writes to w, while a second
// goroutine compresses that stream into a blob (deterministically: a
// header without name or time, one fixed level); the blob is committed
// once the layer is stored.
func (s *Store) storeNewLayer(mediaType string, store func(w io.Writer) (layers.Layer, error)) (Layer, error) {
	bw, err := s.NewBlobWriter("", -1)
	if err != nil {
		return Layer{}, err
	}
	defer bw.Abort()
	gz, err := gzip.NewWriterLevel(bw, gzip.DefaultCompression)
	if err != nil {
		return Layer{}, err
	}
	// A fixed header (no name, no time: klauspost's writer would encode
	// the zero time.Time as a date), so the same tar gives the same blob.
	gz.ModTime = time.Unix(0, 0)
	pr, pw := io.Pipe()
	zdone := make(chan error, 1)
	go func() {
		_, err := io.CopyBuffer(gz, pr, make([]byte, 256<<10))
		if err == nil {
			err = gz.Close()
		}
		if err != nil {
			pr.CloseWithError(fmt.Errorf("image: compressing the layer: %w", err))
		}
		zdone <- err
	}()
	l, err := store(pw)
	pw.CloseWithError(err)
	zerr := <-zdone
	if err != nil && !errors.Is(err, layers.ErrNotMovable) {
		return Layer{}, err
	}
	if zerr != nil {
		return Layer{}, fmt.Errorf("image: compressing the layer: %w", zerr)
	}
	d, size, err := bw.Commit()
	if err != nil {
		return Layer{}, err
	}
	return Layer{DiffID: l.DiffID, Digest: d, MediaType: mediaType, Size: size}, nil
}

// RecordNew stores rawConfig and a manifest of format f naming it and
// layers (base first; stored layers whose blobs are stored), and records
// the image under refs (see Record). The caller holds Hold.
func (s *Store) RecordNew(f Format, rawConfig []byte, ls []Layer, refs ...string) (Image, error) {
	raw, err := ManifestFor(f, rawConfig, ls)
	if err != nil {
		return Image{}, err
	}
	if _, err := s.PutBlobBytes(rawConfig, ""); err != nil {
		return Image{}, err
	}
	md, err := s.PutBlobBytes(raw, "")
	if err != nil {
		return Image{}, err
	}
	return s.Record(Image{ID: digest.FromBytes(rawConfig), ManifestDigest: md}, refs...)
}

// ManifestFor is the manifest of format f for the config rawConfig and
// the layers ls, encoded.
func ManifestFor(f Format, rawConfig []byte, ls []Layer) ([]byte, error) {
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: f.Manifest,
		Config:    ocispec.Descriptor{MediaType: f.Config, Digest: digest.FromBytes(rawConfig), Size: int64(len(rawConfig))},
		Layers:    []ocispec.Descriptor{},
	}
	for _, l := range ls {
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size})
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("image: encoding the manifest: %w", err)
	}
	return raw, nil
}

package commit

import (
	"context"
	"fmt"
	"io"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/runner/image"
	"github.com/berth-registry/berth/runner/layers"
	"github.com/berth-registry/berth/runner/pull"
)

// ImportOptions are Import's options: `berth import`'s flags.
type ImportOptions struct {
	// Changes are Dockerfile instructions applied to the new image's
	// config (ApplyChanges).
	Changes []string
	// Message is the comment of the image's one history entry; empty is
	// "Imported from " and Source, as docker writes it.
	Message string
	// Source names where the tar came from ("-" for standard input).
	Source string
	// Ref names the new image; "" leaves it dangling.
	Ref string
	// Created is the image's creation time; zero is now.
	Created time.Time
}

// Import makes a one-layer image of the rootfs tar r (plain, gzip or zstd,
// as its first bytes say), for this host's platform, with opts.Changes
// applied to an empty config. The tar is checked entry by entry as a
// pulled layer is (layers.Store.Add): an entry that would land outside
// the rootfs fails the import, naming the entry, with nothing stored.
// Errors wrap
// ErrInvalidChange, layers.ErrUnsafeEntry, layers.ErrTooLarge,
// layers.ErrUnsupportedMediaType, r's own error or the stores'.
func Import(ctx context.Context, images *image.Store, r io.Reader, opts ImportOptions) (image.Image, error) {
	p := pull.HostPlatform()
	created := opts.Created
	if created.IsZero() {
		created = time.Now().UTC()
	}
	cfg := &dockerspec.DockerOCIImage{Image: ocispec.Image{
		Created:  &created,
		Platform: ocispec.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant},
	}}
	if err := ApplyChanges(&cfg.Config, opts.Changes); err != nil {
		return image.Image{}, err
	}
	if err := checkRef(images, opts.Ref); err != nil {
		return image.Image{}, err
	}
	release, err := images.Hold()
	if err != nil {
		return image.Image{}, err
	}
	defer release()
	l, err := images.StoreLayer(ctx, image.FormatOCI.Layer, func(w io.Writer) error {
		dr, closeDecoder, err := layers.Decompress(r)
		if err != nil {
			return err
		}
		defer closeDecoder()
		_, err = io.Copy(w, dr)
		return err
	})
	if err != nil {
		return image.Image{}, fmt.Errorf("importing %s: %w", opts.Source, err)
	}
	msg := opts.Message
	if msg == "" {
		msg = "Imported from " + opts.Source
	}
	cfg.RootFS = ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{l.DiffID}}
	cfg.History = []ocispec.History{{Created: &created, Comment: msg}}
	return record(images, image.FormatOCI, cfg, nil, &l, refsOf(opts.Ref))
}

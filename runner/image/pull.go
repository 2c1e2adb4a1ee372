package image

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/berth-registry/berth/runner/layers"
	"github.com/berth-registry/berth/runner/pull"
)

// PullOptions configure Store.Pull.
type PullOptions struct {
	// Platform selects the manifest of a multi-platform image; nil means
	// the host's (pull.HostPlatform).
	Platform *pull.Platform
	// Insecure allows a registry that is not loopback to be reached over
	// plain HTTP or HTTPS without certificate verification (see
	// pull.ClientOptions).
	Insecure bool
	// DefaultRegistry (host[:port]) completes a reference naming no
	// registry; "" means Store.DefaultRegistry.
	DefaultRegistry string
	// Progress receives the pull's events; nil means none.
	Progress pull.Progress
	// DockerConfig is the docker config.json holding the credentials;
	// "" means pull.DockerConfigPath() (none, and anonymous pulls, when
	// that cannot be determined).
	DockerConfig string
	// Limits bound each layer's unpacked size; zero fields take the layer
	// store's defaults.
	Limits layers.Limits
}

// Pull fetches the image ref names (completed with the default registry and
// the "latest" tag, see pull.ParseReference) and records it under that
// reference, which then names this image and no other. Layers already in
// the layer store are not downloaded; the others are streamed, a few at a
// time, straight into the layer store, each blob checked against its
// manifest digest and size and its uncompressed stream against its
// diff_id. Errors are the pull client's (pull.ErrNotFound,
// pull.ErrUnauthorized, ...) or the layer store's (layers.ErrDigestMismatch,
// layers.ErrUnsafeEntry, ...), wrapped.
func (s *Store) Pull(ctx context.Context, ref string, opts PullOptions) (Image, error) {
	defReg := opts.DefaultRegistry
	if defReg == "" {
		defReg = s.DefaultRegistry
	}
	r, err := pull.ParseReference(ref, defReg)
	if err != nil {
		return Image{}, err
	}
	client, err := pull.NewClientWithConfig(pull.ClientOptions{Insecure: opts.Insecure}, opts.DockerConfig)
	if err != nil {
		return Image{}, err
	}

	// Held until the image is recorded: Prune must not remove a layer this
	// pull counted as present or has just unpacked.
	unlock, err := s.flock(lockFile, unix.LOCK_SH)
	if err != nil {
		return Image{}, err
	}
	defer unlock()

	pulled, err := client.Pull(ctx, r, pull.PullOptions{
		Platform: opts.Platform,
		Have: func(l pull.Layer) bool {
			_, err := s.layers.Get(l.DiffID)
			return err == nil && s.HasBlob(l.Descriptor.Digest)
		},
		Layer: func(ctx context.Context, l pull.Layer, body io.Reader) error {
			return s.storeLayer(ctx, l, body, opts.Limits)
		},
		Progress: opts.Progress,
	})
	if err != nil {
		return Image{}, fmt.Errorf("pulling %s: %w", r, err)
	}

	img := Image{
		ID:                pulled.ConfigDescriptor.Digest,
		ManifestDigest:    pulled.Digest,
		ManifestMediaType: pulled.MediaType,
		Platform:          pulled.Platform,
		RawConfig:         pulled.RawConfig,
		Config:            pulled.Config,
		Pulled:            time.Now().UTC(),
	}
	if err := img.ID.Validate(); err != nil || img.ID.Algorithm().FromBytes(img.RawConfig) != img.ID {
		return Image{}, fmt.Errorf("%w: %s: the config does not match its digest %s", pull.ErrInvalidImage, r, img.ID)
	}
	// The manifest and the config are kept as pulled, beside the layers'
	// blobs, so that `berth push` and `berth save` give out the same bytes.
	if _, err := s.PutBlobBytes(pulled.Manifest, pulled.Digest); err != nil {
		return Image{}, fmt.Errorf("pulling %s: manifest: %w", r, err)
	}
	if _, err := s.PutBlobBytes(pulled.RawConfig, img.ID); err != nil {
		return Image{}, fmt.Errorf("pulling %s: config: %w", r, err)
	}
	for _, l := range pulled.Layers {
		stored, err := s.layers.Get(l.DiffID)
		if err != nil {
			return Image{}, fmt.Errorf("pulling %s: layer %d: %w", r, l.Index, err)
		}
		img.Layers = append(img.Layers, Layer{DiffID: l.DiffID, Digest: l.Descriptor.Digest, MediaType: l.Descriptor.MediaType, Size: l.Descriptor.Size})
		img.Size += stored.Size
	}

	key := r.String()
	unlockRefs, err := s.flock(refsLock, unix.LOCK_EX)
	if err != nil {
		return Image{}, err
	}
	defer unlockRefs()
	if err := s.writeRecord(img); err != nil {
		return Image{}, err
	}
	idx, err := s.readIndex()
	if err != nil {
		return Image{}, err
	}
	idx.Refs[key] = refEntry{ID: img.ID, Manifest: img.ManifestDigest, Index: pulled.Index}
	if err := s.writeIndex(idx); err != nil {
		return Image{}, err
	}
	img.References = refsByID(idx)[img.ID]
	return img, nil
}

// storeLayer consumes the compressed stream of one layer: it unpacks it
// into the layer store (unless a pull of the same diff_id in this process
// did so meanwhile) and keeps the blob, both only once the whole stream
// matched the layer's digest, size and diff_id.
func (s *Store) storeLayer(ctx context.Context, l pull.Layer, body io.Reader, limits layers.Limits) error {
	w, err := s.NewBlobWriter(l.Descriptor.Digest, l.Descriptor.Size)
	if err != nil {
		return err
	}
	defer w.Abort()
	// The pull client verifies the blob too; checking it here as well keeps
	// the layer store's guarantee independent of it.
	blob := io.TeeReader(layers.VerifyReader(body, l.Descriptor.Digest, l.Descriptor.Size), w)
	if _, err := s.layers.Get(l.DiffID); err != nil {
		if _, err := s.layers.Unpack(ctx, blob, l.Descriptor.MediaType, l.DiffID, limits); err != nil {
			return err
		}
	}
	// An unpack that found the layer stored meanwhile reads nothing: the
	// blob is still wanted whole.
	if _, err := io.Copy(io.Discard, blob); err != nil {
		return err
	}
	_, _, err = w.Commit()
	return err
}

// ShortID returns the first 12 hex digits of an image ID, as `berth images`
// shows it.
func ShortID(id digest.Digest) string {
	e := id.Encoded()
	if len(e) > 12 {
		e = e[:12]
	}
	return e
}

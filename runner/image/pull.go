package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/berth-registry/berth/manifest"
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
	// AllPlatforms, when the reference names a multi-platform index, stores
	// every platform's manifest, config and layer blobs too (verified, not
	// unpacked), so that push and save give out the whole index (see
	// Index). The image for Platform is unpacked and recorded as without
	// it; when the index has none, nothing is recorded for run, the
	// reference names the index alone and Pull returns a zero Image.
	AllPlatforms bool
	// Stored, when not nil, is told of each manifest of the index that
	// AllPlatforms stored, with its platform ("" for an entry without one).
	Stored func(platform string, manifest digest.Digest)
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
	if err != nil && opts.AllPlatforms && errors.Is(err, pull.ErrNoMatchingPlatform) {
		return Image{}, s.pullIndexOnly(ctx, client, r, opts, err)
	}
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
	if pulled.Index != "" {
		// Small, and what inspect and save show of the index.
		if _, err := s.PutBlobBytes(pulled.IndexManifest, pulled.Index); err != nil {
			return Image{}, fmt.Errorf("pulling %s: index: %w", r, err)
		}
		if opts.AllPlatforms {
			if err := s.storePlatforms(ctx, client, r, pulled.Index, opts); err != nil {
				return Image{}, err
			}
		}
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

// pullIndexOnly is a pull with AllPlatforms of a reference whose index has
// no image for the platform (noMatch says so): it stores every platform's
// blobs and makes the reference name the index alone. A reference that
// names no index fails with noMatch.
func (s *Store) pullIndexOnly(ctx context.Context, client *pull.Client, r pull.Reference, opts PullOptions, noMatch error) error {
	top, err := client.FetchManifest(ctx, r, nil)
	if err != nil {
		return fmt.Errorf("pulling %s: %w", r, err)
	}
	if !top.Parsed.IsIndex() {
		return fmt.Errorf("pulling %s: %w", r, noMatch)
	}
	if _, err := s.PutBlobBytes(top.Body, top.Digest); err != nil {
		return fmt.Errorf("pulling %s: index: %w", r, err)
	}
	if err := s.storePlatforms(ctx, client, r, top.Digest, opts); err != nil {
		return err
	}
	if !s.index(top.Digest).Complete {
		return fmt.Errorf("pulling %s: %w: index %s is not whole after the pull", r, ErrBlobMissing, top.Digest)
	}
	return s.recordIndexOnly(top.Digest, []string{r.String()})
}

// storePlatforms stores, for the stored index d of r, every manifest,
// config and layer blob the store does not hold yet, each verified against
// its descriptor, a few layers at a time. The caller holds the shared lock.
func (s *Store) storePlatforms(ctx context.Context, client *pull.Client, r pull.Reference, d digest.Digest, opts PullOptions) error {
	body, err := s.readManifest(d)
	if err != nil {
		return fmt.Errorf("pulling %s: index %s: %w", r, d, err)
	}
	top, err := manifest.Parse("", body)
	if err != nil || !top.IsIndex() {
		return fmt.Errorf("%w: %s: index %s: %v", pull.ErrInvalidImage, r, d, err)
	}
	var walk func(entries []ocispec.Descriptor, depth int) error
	walk = func(entries []ocispec.Descriptor, depth int) error {
		for _, e := range entries {
			m, err := s.storeManifest(ctx, client, r, e)
			if err != nil {
				return err
			}
			if m.IsIndex() {
				if depth == maxIndexDepth {
					return fmt.Errorf("%w: %s: indexes nested more than %d deep", pull.ErrInvalidImage, r, maxIndexDepth)
				}
				if err := walk(m.Manifests, depth+1); err != nil {
					return err
				}
				continue
			}
			g, gctx := errgroup.WithContext(ctx)
			g.SetLimit(pull.DefaultParallel)
			for _, b := range m.BlobReferences() {
				if s.HasBlob(b.Digest) {
					continue
				}
				g.Go(func() error { return s.fetchBlob(gctx, client, r, b) })
			}
			if err := g.Wait(); err != nil {
				return fmt.Errorf("pulling %s: manifest %s: %w", r, e.Digest, err)
			}
			if opts.Stored != nil {
				p := ""
				if e.Platform != nil {
					p = pull.Platform{OS: e.Platform.OS, Architecture: e.Platform.Architecture, Variant: e.Platform.Variant}.Normalize().String()
				}
				opts.Stored(p, e.Digest)
			}
		}
		return nil
	}
	return walk(top.Manifests, 1)
}

// storeManifest returns the manifest e describes, from the store or else
// fetched from r's repository and stored.
func (s *Store) storeManifest(ctx context.Context, client *pull.Client, r pull.Reference, e ocispec.Descriptor) (*manifest.Manifest, error) {
	if body, err := s.readManifest(e.Digest); err == nil {
		if m, err := manifest.Parse(e.MediaType, body); err == nil {
			return m, nil
		}
	}
	m, err := client.FetchManifest(ctx, r, &e)
	if err != nil {
		return nil, fmt.Errorf("pulling %s: %w", r, err)
	}
	if _, err := s.PutBlobBytes(m.Body, e.Digest); err != nil {
		return nil, fmt.Errorf("pulling %s: manifest %s: %w", r, e.Digest, err)
	}
	return m.Parsed, nil
}

// fetchBlob downloads blob b of r's repository into the blob store.
func (s *Store) fetchBlob(ctx context.Context, client *pull.Client, r pull.Reference, b ocispec.Descriptor) error {
	rc, err := client.OpenBlob(ctx, r, b)
	if err != nil {
		return err
	}
	defer rc.Close()
	if _, _, err := s.PutBlob(rc, b.Digest, b.Size); err != nil {
		return fmt.Errorf("blob %s: %w", b.Digest, err)
	}
	return nil
}

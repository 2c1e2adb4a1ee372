package pull

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// DefaultParallel is how many layers Pull downloads at once by default.
const DefaultParallel = 3

// progressStep is how many bytes a layer download advances between progress events.
const progressStep = 256 << 10

// Image is a resolved image: its verified manifest and config, and its layers.
type Image struct {
	// Reference is what was pulled.
	Reference Reference
	// Digest is the digest of the image manifest.
	Digest digest.Digest
	// Index is the digest of the index (or manifest list) the reference named, when it
	// named one; "" when it named the image manifest itself.
	Index digest.Digest
	// IndexManifest is that index as served (its digest is Index), and IndexMediaType
	// its media type; nil and "" when there is none.
	IndexManifest  []byte
	IndexMediaType string
	// MediaType is the image manifest's media type (OCI or Docker schema 2).
	MediaType string
	// Manifest is the image manifest as served; its digest is Digest.
	Manifest []byte
	// ConfigDescriptor describes the config; RawConfig is its verified content and
	// Config that content decoded.
	ConfigDescriptor ocispec.Descriptor
	RawConfig        []byte
	Config           ocispec.Image
	// Platform is the config's platform, normalized.
	Platform Platform
	// Layers are the layers, base first.
	Layers []Layer
}

// Layer is one layer of an Image.
type Layer struct {
	// Index is the layer's position in the manifest, 0 for the base layer.
	Index int
	// Descriptor is the manifest's descriptor of the (compressed) blob.
	Descriptor ocispec.Descriptor
	// DiffID is the digest of the uncompressed tar stream, from the config.
	DiffID digest.Digest
	// ChainID identifies the layer stacked on all layers below it (image-spec: the
	// ChainID of layer 0 is its DiffID; of layer n, the sha256 of "ChainID(n-1) DiffID(n)").
	ChainID digest.Digest
	// Compression is how the blob is compressed, from its media type.
	Compression Compression
}

// PullOptions configure Pull.
type PullOptions struct {
	// Platform selects the manifest of an index; nil means HostPlatform(). See Resolve.
	Platform *Platform
	// Have reports whether the consumer already holds a layer (by ChainID or DiffID, as
	// it prefers); such layers are not downloaded. nil means none is held. A pull whose
	// layers are all held fetches only the manifest(s) and the config.
	Have func(Layer) bool
	// Layer consumes the compressed stream of one layer and is required. It may be called
	// concurrently for different layers, up to Parallel at once, in any order.
	//
	// What is checked where: r yields exactly Descriptor.Size bytes and returns io.EOF
	// only after they matched Descriptor.Digest; on a mismatch its last Read returns an
	// error wrapping ErrDigestMismatch instead. Dropped connections are resumed inside r
	// and never seen by the consumer. The consumer decompresses (Layer.Compression) and
	// must itself check the digest of the uncompressed stream against Layer.DiffID; it
	// must read r until io.EOF before it commits anything, so that it never commits a
	// layer whose compressed digest did not verify. When Layer returns nil without having
	// read r to the end, Pull reads the rest and fails if it does not verify.
	Layer func(ctx context.Context, l Layer, r io.Reader) error
	// Parallel is how many layers are downloaded at once; 0 means DefaultParallel.
	Parallel int
	// Progress receives events; nil means none.
	Progress Progress
	// NoForeignURLs stops Pull from contacting the urls of foreign (non-distributable)
	// layers: such layers must then be served by the registry itself. Otherwise the urls
	// are tried first, in order and without any credentials, then the registry.
	NoForeignURLs bool
}

// Pull resolves ref (see Resolve) and hands every layer the consumer does not have to
// opts.Layer, verified, downloading up to opts.Parallel at once. It returns the image
// once every layer was consumed; on the first failure it cancels the other downloads
// and returns that failure.
func (c *Client) Pull(ctx context.Context, ref Reference, opts PullOptions) (*Image, error) {
	if opts.Layer == nil {
		return nil, errors.New("pull: PullOptions.Layer is required")
	}
	if opts.Parallel <= 0 {
		opts.Parallel = DefaultParallel
	}
	progress := opts.Progress
	if progress == nil {
		progress = discardProgress{}
	}
	img, err := c.Resolve(ctx, ref, opts.Platform)
	if err != nil {
		return nil, err
	}
	progress.Update(Event{Kind: EventResolved, Image: img})

	var todo []Layer
	for _, l := range img.Layers {
		if opts.Have != nil && opts.Have(l) {
			progress.Update(Event{Kind: EventLayerSkipped, Layer: l, Total: l.Descriptor.Size})
			continue
		}
		todo = append(todo, l)
	}

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Parallel)
	for _, l := range todo {
		if gctx.Err() != nil {
			break // a layer failed: start no other
		}
		g.Go(func() error { return c.fetchLayer(gctx, img.Reference, l, &opts, progress) })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, errContext(ctx, err)
	}
	return img, nil
}

// fetchLayer downloads one layer into opts.Layer.
func (c *Client) fetchLayer(ctx context.Context, ref Reference, l Layer, opts *PullOptions, progress Progress) (err error) {
	if ctx.Err() != nil {
		return errContext(ctx, ctx.Err())
	}
	total := l.Descriptor.Size
	var done int64
	progress.Update(Event{Kind: EventLayerStart, Layer: l, Total: total})
	defer func() { progress.Update(Event{Kind: EventLayerDone, Layer: l, Done: done, Total: total, Err: err}) }()

	var src blobSource
	if len(l.Descriptor.URLs) > 0 && !opts.NoForeignURLs {
		src = c.urlSource(l.Descriptor.URLs, c.registrySource(ref, l.Descriptor.Digest))
	} else {
		src = c.registrySource(ref, l.Descriptor.Digest)
	}
	r, err := c.newBlobReader(ctx, l.Descriptor, src)
	if err != nil {
		return err
	}
	defer r.Close()
	var reported int64
	r.onProgress = func(n int64) {
		done = n
		if n-reported >= progressStep || n == total {
			reported = n
			progress.Update(Event{Kind: EventLayerProgress, Layer: l, Done: n, Total: total})
		}
	}
	r.onRetry = func(offset int64, cause error) {
		progress.Update(Event{Kind: EventLayerRetry, Layer: l, Done: offset, Total: total, Err: cause})
	}

	if err := opts.Layer(ctx, l, r); err != nil {
		if rerr := r.failure(); rerr != nil {
			err = rerr // the download failed: report that, whatever the consumer made of it
		}
		return errContext(ctx, fmt.Errorf("layer %d (%s): %w", l.Index, l.Descriptor.Digest, err))
	}
	if !r.verified() {
		if _, err := io.Copy(io.Discard, r); err != nil {
			return errContext(ctx, fmt.Errorf("layer %d (%s): %w", l.Index, l.Descriptor.Digest, err))
		}
	}
	return nil
}

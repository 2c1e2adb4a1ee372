package pull

import (
	"context"
	"io"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/manifest"
)

// Manifest is a manifest as served, verified against its digest.
type Manifest struct {
	// Digest is the digest of Body.
	Digest digest.Digest
	// Body is the manifest as served.
	Body []byte
	// Parsed is Body decoded.
	Parsed *manifest.Manifest
}

// FetchManifest fetches a manifest of ref's repository: the one d describes (checked
// against its digest, size and media type), or, with d nil, the one ref names (its
// tag or digest). It is what `berth pull --all-platforms` walks an index with. Errors
// wrap ErrNotFound, ErrDigestMismatch, ErrInvalidImage, ErrUnsupported, ...
func (c *Client) FetchManifest(ctx context.Context, ref Reference, d *ocispec.Descriptor) (Manifest, error) {
	mref := ref.manifestRef()
	if d != nil {
		mref = d.Digest.String()
	}
	m, err := c.fetchManifest(ctx, ref, mref, d)
	if err != nil {
		return Manifest{}, err
	}
	return Manifest{Digest: m.digest, Body: m.body, Parsed: m.parsed}, nil
}

// OpenBlob returns a reader of the blob d describes in ref's repository, with the
// guarantees of PullOptions.Layer's reader: exactly d.Size bytes, io.EOF only once
// they matched d.Digest (else an error wrapping ErrDigestMismatch), broken
// connections resumed inside it. Close it.
func (c *Client) OpenBlob(ctx context.Context, ref Reference, d ocispec.Descriptor) (io.ReadCloser, error) {
	return c.newBlobReader(ctx, d, c.registrySource(ref, d.Digest))
}

package image

import (
	"context"
	"io"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/runner/layers"
	"github.com/berth-registry/berth/runner/pull"
)

// StoreLayerBlob stores a compressed layer blob that body reads (desc
// describes it, diffID is its uncompressed digest) as a pull stores one:
// unpacked into the layer store (unless already there) and kept in the
// blob store, both only once the whole stream matched desc's digest and
// size and diffID. It is how layers that come without an image (a build
// cache) are stored. The caller holds Hold until an image names the
// layer.
func (s *Store) StoreLayerBlob(ctx context.Context, desc ocispec.Descriptor, diffID digest.Digest, body io.Reader) (Layer, error) {
	if err := s.storeLayer(ctx, pull.Layer{Descriptor: desc, DiffID: diffID}, body, layers.Limits{}); err != nil {
		return Layer{}, err
	}
	return Layer{DiffID: diffID, Digest: desc.Digest, MediaType: desc.MediaType, Size: desc.Size}, nil
}

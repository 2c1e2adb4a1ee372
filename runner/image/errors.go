package image

import "errors"

// Errors the store returns, wrapped with %w and a message naming the
// reference, ID or file involved; test with errors.Is. Errors of the pull
// client (runner/pull) and of the layer store (runner/layers) are passed on
// wrapped, and match their own sentinels.
var (
	// ErrNotFound: no image has that reference or ID.
	ErrNotFound = errors.New("image: no such image")
	// ErrAmbiguous: an ID prefix matches more than one image.
	ErrAmbiguous = errors.New("image: ambiguous image ID prefix")
	// ErrLayerMissing: a layer of the image is not in the layer store
	// (removed by hand, or by Prune after the image was removed); pull the
	// image again.
	ErrLayerMissing = errors.New("image: layer missing from the layer store")
	// ErrInUse: the image is used by a container (Remove without Force).
	ErrInUse = errors.New("image: in use by a container")
	// ErrBlobMissing: the store does not hold a blob (a manifest, config or
	// compressed layer) an image names: the image was pulled by a berth
	// that kept only the unpacked layers, or the blob was removed by hand.
	ErrBlobMissing = errors.New("image: blob not in the store")
	// ErrDigestMismatch: bytes given to the store do not match the digest
	// or size they were given with.
	ErrDigestMismatch = errors.New("image: digest mismatch")
	// ErrCorrupt: an image record or the reference index cannot be read
	// (not JSON, or a config that does not match its digest).
	ErrCorrupt = errors.New("image: damaged image record")
)

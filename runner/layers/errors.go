package layers

import "errors"

// Errors the store returns, wrapped with %w and tested with errors.Is. The
// wrapping message names the layer, the tar entry or the path involved.
var (
	// ErrNotFound: the store holds no complete layer with that diff_id.
	ErrNotFound = errors.New("layers: layer not found")
	// ErrInvalid: an argument is malformed (a diff_id that is not a valid
	// digest, an empty layer list, a mount path overlayfs cannot take).
	ErrInvalid = errors.New("layers: invalid argument")
	// ErrDigestMismatch: the content read does not match the digest (or
	// size) it was declared with: the uncompressed stream against the
	// diff_id, or a blob against its descriptor in VerifyReader.
	ErrDigestMismatch = errors.New("layers: digest mismatch")
	// ErrUnsupportedMediaType: the layer's media type is not an OCI or
	// Docker tar layer type this store unpacks (foreign and
	// non-distributable layers included), or its compression is unknown.
	ErrUnsupportedMediaType = errors.New("layers: unsupported layer media type")
	// ErrUnsafeEntry: a tar entry was refused because extracting it could
	// reach outside the layer's directory or is malformed: a name climbing
	// above the root with "..", a path through a symlink or a non-directory,
	// a hardlink whose target is not an earlier entry of the same layer, a
	// non-directory entry named ".", an empty name.
	ErrUnsafeEntry = errors.New("layers: unsafe layer entry")
	// ErrTooLarge: the layer exceeds Limits (uncompressed bytes or entries).
	ErrTooLarge = errors.New("layers: layer exceeds limits")
	// ErrOverlayUnsupported: overlayfs cannot be mounted over this store
	// (module missing, no privilege, a backing filesystem without whiteout
	// or trusted xattr support). Use Flatten instead.
	ErrOverlayUnsupported = errors.New("layers: overlayfs unavailable")
	// ErrIDMapUnsupported: the kernel cannot mount the layers idmapped
	// (MountOptions.UserNS): it needs idmapped mounts of the backing
	// filesystem and overlayfs taking its layers as file descriptors.
	ErrIDMapUnsupported = errors.New("layers: idmapped layers unavailable")
	// ErrUnsupportedTree: a directory tree cannot be written as a layer
	// (WriteUpper, WriteTree): an overlayfs upper directory with a
	// redirected directory or a metacopy file, whose content lives in a
	// lower layer, or a file that changed while it was read.
	ErrUnsupportedTree = errors.New("layers: tree cannot be written as a layer")
)

// ErrNotMovable: AddUpper wrote the upper directory's whole tar stream but
// stored no layer, because extracting that stream would not give the tree
// it wrote (a file named ".wh.*", which extraction reads as a whiteout, or
// a symlink or fifo with several links). Store the layer by extracting the
// stream (Add).
var ErrNotMovable = errors.New("layers: upper directory differs from its extracted form")

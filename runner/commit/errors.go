package commit

import "errors"

// Errors of this package, wrapped with %w and a message naming the change,
// the container or the file involved; test with errors.Is. Errors of the
// image and layer stores are passed on wrapped and match their own
// sentinels.
var (
	// ErrInvalidChange: a -c change is not a Dockerfile instruction that
	// commit and import accept, or is malformed.
	ErrInvalidChange = errors.New("commit: invalid change")
	// ErrUnsupported: the container cannot be committed or exported as
	// asked (its rootfs is a flat copy with no writable layer of its own).
	ErrUnsupported = errors.New("commit: unsupported")
)

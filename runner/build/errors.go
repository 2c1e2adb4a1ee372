package build

import "errors"

// Errors of Build, wrapped with %w and a message naming the step, the
// file or the path involved; test with errors.Is. The Dockerfile's own
// errors wrap dockerfile.ErrSyntax, ErrInvalid or ErrUnsupported; the
// stores' errors are passed on wrapped.
var (
	// ErrNotFound: a COPY or ADD source is not in the build context (or
	// the stage or image it is copied from), or the context is excluded
	// by .dockerignore.
	ErrNotFound = errors.New("build: not found")
	// ErrInvalid: a step cannot be done as written (several sources to a
	// destination that is not a directory, a directory replaced by a
	// file).
	ErrInvalid = errors.New("build: invalid")
	// ErrRunFailed: a RUN step's process exited with a code other than 0
	// (the message gives it, as BuildKit words it).
	ErrRunFailed = errors.New("build: RUN failed")
	// ErrUnsupported: the build needs what this host lacks (overlayfs).
	ErrUnsupported = errors.New("build: unsupported")
)

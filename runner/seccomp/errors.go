package seccomp

import "errors"

// Errors of the package, tested with errors.Is.
var (
	// ErrInvalid: a malformed seccomp config or compiled filter.
	ErrInvalid = errors.New("seccomp: invalid")
	// ErrUnsupported: an action, flag or architecture the compiler does
	// not do.
	ErrUnsupported = errors.New("seccomp: unsupported")
)

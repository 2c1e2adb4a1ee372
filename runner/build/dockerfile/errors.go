package dockerfile

import "errors"

// Errors of Convert, wrapped with %w and a message naming the Dockerfile,
// its line and the instruction; test with errors.Is.
var (
	// ErrSyntax: the parser refused a line, or an instruction's arguments
	// are malformed.
	ErrSyntax = errors.New("dockerfile: syntax error")
	// ErrInvalid: the Dockerfile is well-formed but means nothing
	// buildable (an unknown target or stage, a bad --chmod, a signal
	// that does not exist, ...).
	ErrInvalid = errors.New("dockerfile: invalid")
	// ErrUnsupported: a feature berth build does not have yet (RUN
	// --mount=type=ssh, a cache mount from=, ADD of a git repository,
	// COPY --parents, --exclude).
	ErrUnsupported = errors.New("dockerfile: unsupported")
)

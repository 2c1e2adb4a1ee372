package view

import "errors"

// Errors of the package, wrapped with %w and a message naming the object or
// the filter; test with errors.Is.
var (
	// ErrNotFound: no container or image has that name or ID (docker's
	// "No such object").
	ErrNotFound = errors.New("no such object")
	// ErrInvalidFilter: a --filter that is not key=value with a key and
	// value the command knows.
	ErrInvalidFilter = errors.New("invalid filter")
)

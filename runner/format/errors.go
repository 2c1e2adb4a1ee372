package format

import "errors"

// ErrTemplate is wrapped by the errors of a --format value that does not
// parse as a template.
var ErrTemplate = errors.New("template parsing error")

package storage

import (
	"fmt"
	"path"
	"strings"
	"unicode/utf8"
)

// ValidatePath returns nil if p can name content in a Driver, and otherwise an
// error wrapping ErrInvalidPath that quotes p and says what is wrong.
//
// A valid path is absolute ("/" names the root directory) and clean as
// path.Clean makes it, so it holds no empty, "." or ".." component and no
// trailing slash. It is valid UTF-8 (object stores require it) and holds no
// NUL byte and no backslash (a separator on Windows, so it could alias or
// escape on some backend).
//
// Every driver calls it first thing in every method. A driver may reserve
// further names for its own use and reject them with ErrInvalidPath too.
func ValidatePath(p string) error {
	var why string
	switch {
	case p == "":
		why = "empty"
	case p[0] != '/':
		why = "not absolute"
	case path.Clean(p) != p:
		why = `not clean (empty, "." or ".." component, or trailing slash)`
	case strings.IndexByte(p, 0) >= 0:
		why = "holds a NUL byte"
	case strings.IndexByte(p, '\\') >= 0:
		why = "holds a backslash"
	case !utf8.ValidString(p):
		why = "not valid UTF-8"
	default:
		return nil
	}
	return fmt.Errorf("%w %q: %s", ErrInvalidPath, p, why)
}

// ValidateChangePath is ValidatePath for the methods that change content
// (Writer, Move, Delete): they also refuse the root directory "/" itself.
func ValidateChangePath(p string) error {
	if err := ValidatePath(p); err != nil {
		return err
	}
	if p == "/" {
		return fmt.Errorf("%w %q: the root is a directory", ErrInvalidPath, p)
	}
	return nil
}

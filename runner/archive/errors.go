package archive

import "errors"

// Errors Save and Load return, wrapped with %w and a message naming the
// image, the archive entry or the file involved; test with errors.Is.
// Errors of the image store (image.ErrBlobMissing, ...) and of the layer
// store (layers.ErrUnsafeEntry, ...) are passed on wrapped.
var (
	// ErrInvalid: the archive is not a tar of images Load reads: truncated,
	// not a tar, neither manifest.json nor index.json, malformed JSON, a
	// file they name that is not in it, a config whose diff_ids do not
	// match its layers, no image for the platform.
	ErrInvalid = errors.New("archive: invalid image archive")
	// ErrUnsafeEntry: an entry was refused for where it lands or what it
	// is: a path, symlink or hardlink outside the archive, a write through
	// a link or file the archive made, a duplicate, a device node or any
	// other entry type than files, directories and links.
	ErrUnsafeEntry = errors.New("archive: unsafe archive entry")
	// ErrDigestMismatch: a blob of the archive does not match the digest
	// (or size) it is named or described by.
	ErrDigestMismatch = errors.New("archive: blob does not match its digest")
	// ErrUnsupported: the archive uses something Load does not take: xz or
	// bzip2 compression, a foreign (non-distributable) layer, a manifest
	// media type other than OCI and Docker schema 2.
	ErrUnsupported = errors.New("archive: unsupported")
)

package store

import (
	"errors"
	"fmt"
)

// Errors the store returns, wrapped with %w and a precise message. The HTTP
// layer maps each to its OCI error code in one table.
var (
	// ErrBlobUnknown: the blob is not part of the repository (BLOB_UNKNOWN).
	ErrBlobUnknown = errors.New("blob unknown to registry")
	// ErrManifestUnknown: no such manifest or tag in the repository (MANIFEST_UNKNOWN).
	ErrManifestUnknown = errors.New("manifest unknown")
	// ErrNameUnknown: the repository does not exist (NAME_UNKNOWN).
	ErrNameUnknown = errors.New("repository name not known to registry")
	// ErrUploadUnknown: no such upload session (BLOB_UPLOAD_UNKNOWN).
	ErrUploadUnknown = errors.New("blob upload unknown to registry")
	// ErrDigestMismatch: content does not hash to the digest the client gave (DIGEST_INVALID).
	ErrDigestMismatch = errors.New("provided digest did not match uploaded content")
	// ErrRangeInvalid: an upload chunk does not start where the upload ends (416).
	ErrRangeInvalid = errors.New("upload chunk out of order")
	// ErrManifestBlobUnknown: a manifest references a blob or manifest missing
	// from the repository (MANIFEST_BLOB_UNKNOWN).
	ErrManifestBlobUnknown = errors.New("manifest references unknown blob")
	// ErrStoredBlobCollected: a blob push found the blob's bytes stored and
	// only hashed its body, but garbage collection deleted them meanwhile;
	// the client should push it again (UNAVAILABLE, 503, Retry-After).
	ErrStoredBlobCollected = errors.New("the stored copy of the blob was garbage-collected while the push was received; push it again")
)

// RangeError reports an out-of-order upload chunk together with the size the
// upload has, so the client can be told where to resume. It matches
// ErrRangeInvalid with errors.Is.
type RangeError struct {
	Size  int64 // bytes the upload holds
	Start int64 // where the rejected chunk claimed to start
}

func (e *RangeError) Error() string {
	return fmt.Sprintf("%v: chunk starts at byte %d but the upload holds %d bytes", ErrRangeInvalid, e.Start, e.Size)
}

// Is makes errors.Is(err, ErrRangeInvalid) true.
func (e *RangeError) Is(target error) bool { return target == ErrRangeInvalid }

package registry

import (
	"errors"
	"fmt"
	"net/http"
)

// errTooManyUploads: storage.maxConcurrentUploads upload bodies are being
// streamed already (TOOMANYREQUESTS, 429 with Retry-After).
var errTooManyUploads = errors.New("too many uploads in progress")

// uploadRetryAfter is the Retry-After of errTooManyUploads, in seconds:
// long enough that a retrying client does not hammer, short against a
// push.
const uploadRetryAfter = 1

// uploadSlots caps the upload bodies streamed at once: a buffered channel
// holding one token per body in progress; nil is no cap.
type uploadSlots chan struct{}

func newUploadSlots(n int) uploadSlots {
	if n <= 0 {
		return nil
	}
	return make(uploadSlots, n)
}

// uploadStarted takes a slot for the upload body of r, or returns
// errTooManyUploads at once (without waiting, and before the body is
// read) when none is free; call done when the body has been streamed. A
// request without a body (the PUT that ends a chunked upload) takes no
// slot. It also counts the body in berth_uploads_in_progress.
func (reg *Registry) uploadStarted(r *http.Request) (done func(), err error) {
	if reg.uploads != nil && r.ContentLength != 0 {
		select {
		case reg.uploads <- struct{}{}:
		default:
			return nil, fmt.Errorf("%w (the limit is %d): retry in %ds", errTooManyUploads, cap(reg.uploads), uploadRetryAfter)
		}
		counted := reg.metrics.uploadStarted()
		return func() { counted(); <-reg.uploads }, nil
	}
	return reg.metrics.uploadStarted(), nil
}

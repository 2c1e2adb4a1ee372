package registry

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// responseWriter records the status and the bytes of a response for the
// error adapter, the metrics and the access log. It forwards io.ReaderFrom,
// so that io.Copy from a file still reaches net/http's sendfile path, and
// http.Flusher; Unwrap gives http.ResponseController the writer beneath.
type responseWriter struct {
	http.ResponseWriter
	status  int   // 0 until the header is written
	written int64 // body bytes
	// cache is how the pull-through cache answered ("hit", "miss",
	// "stale"), for the access log; "" when it did not.
	cache string
}

func (w *responseWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.written += int64(n)
	return n, err
}

// ReadFrom hands r to the wrapped writer's ReadFrom when it has one (net/http's
// does, and uses sendfile for an *os.File or a LimitedReader over one).
func (w *responseWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(w.ResponseWriter, r)
	}
	w.written += n
	return n, err
}

func (w *responseWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap is for http.ResponseController.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// statusOrOK is the status sent, 200 if the handler wrote nothing at all
// (net/http then sends 200).
func (w *responseWriter) statusOrOK() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// errBodyTruncated: the client's request body ended before the length it
// declared (a dropped connection). The store keeps what arrived so that the
// upload can resume, instead of taking the short body as the whole chunk.
var errBodyTruncated = fmt.Errorf("%w: the request body ended early", errSizeInvalid)

// errBodyStalled: nothing of the request body arrived for the body
// timeout; what arrived is kept, so the upload can resume.
var errBodyStalled = errors.New("the request body stalled")

// requestBody counts the bytes read from a request body, cuts a body from
// which nothing arrives for timeout (errBodyStalled), and reports a body
// cut short, or broken off by the client or the network, as
// errBodyTruncated rather than io.ErrUnexpectedEOF, which readers such as
// io.ReadFull would take for a normal end.
type requestBody struct {
	io.ReadCloser
	read int64
	// rc sets the connection's read deadline: timeout after each read
	// (renewed at most every timeout/8, to keep reads cheap); nil: none.
	rc       *http.ResponseController
	timeout  time.Duration
	deadline time.Time
}

func (b *requestBody) Read(p []byte) (int, error) {
	if b.rc != nil {
		if now := time.Now(); b.deadline.Sub(now) < b.timeout-b.timeout/8 {
			b.deadline = now.Add(b.timeout)
			if b.rc.SetReadDeadline(b.deadline) != nil {
				b.rc = nil // not supported by this connection
			}
		}
	}
	n, err := b.ReadCloser.Read(p)
	b.read += int64(n)
	switch {
	case err == nil:
	case err == io.EOF:
		// net/http reads on in the background from now on, to notice a
		// client that goes away: no deadline may cut that.
		if b.rc != nil {
			b.rc.SetReadDeadline(time.Time{})
			b.rc = nil
		}
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = fmt.Errorf("%w: nothing arrived for %s", errBodyStalled, b.timeout)
	case errors.Is(err, io.ErrUnexpectedEOF):
		err = errBodyTruncated
	case !errors.Is(err, http.ErrBodyReadAfterClose) && !errors.Is(err, errBodyTruncated):
		err = fmt.Errorf("%w: %w", errBodyTruncated, err) // a reset, a broken connection
	}
	return n, err
}

package registry

import (
	"errors"
	"fmt"
	"io"
	"net/http"
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

// requestBody counts the bytes read from a request body and reports a body
// cut short as errBodyTruncated rather than io.ErrUnexpectedEOF, which
// readers such as io.ReadFull would take for a normal end.
type requestBody struct {
	io.ReadCloser
	read int64
}

func (b *requestBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.read += int64(n)
	if err != nil && errors.Is(err, io.ErrUnexpectedEOF) {
		err = errBodyTruncated
	}
	return n, err
}

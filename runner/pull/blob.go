package pull

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// maxResumes bounds how often one blob download is resumed in total, even when every
// attempt makes progress.
const maxResumes = 100

// blobSource opens a blob's bytes at offset. The body it returns starts at start, which
// is offset when the server honoured the Range request and 0 when it sent the whole
// blob instead.
type blobSource func(ctx context.Context, offset int64) (body io.ReadCloser, start int64, err error)

// registrySource opens blob d of ref's repository from the registry, with the registry's
// credentials; redirects (to storage, a CDN) are followed without them.
func (c *Client) registrySource(ref Reference, d digest.Digest) blobSource {
	useRange := true
	return func(ctx context.Context, offset int64) (io.ReadCloser, int64, error) {
		h := http.Header{}
		if offset > 0 && useRange {
			h.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
		}
		resp, err := c.registryGet(ctx, ref.Registry, ref.Repository+"/blobs/"+d.String(), repositoryScope(ref.Repository), h)
		if err != nil {
			return nil, 0, err
		}
		if resp.StatusCode == http.StatusOK && strings.EqualFold(resp.Header.Get("Accept-Ranges"), "none") {
			useRange = false
		}
		return rangeBody(resp, offset)
	}
}

// urlSource opens a blob from the urls of a foreign (non-distributable) layer, in order,
// without any credentials, moving to the next URL when one cannot be opened. When all
// have failed, it uses fallback (the registry) if that is not nil.
func (c *Client) urlSource(urls []string, fallback blobSource) blobSource {
	next := 0
	var lastErr error
	return func(ctx context.Context, offset int64) (io.ReadCloser, int64, error) {
		for next < len(urls) {
			body, start, err := c.openURL(ctx, urls[next], offset)
			if err == nil {
				return body, start, nil
			}
			if ctx.Err() != nil {
				return nil, 0, errContext(ctx, err)
			}
			lastErr = err
			next++
		}
		if fallback != nil {
			body, start, err := fallback(ctx, offset)
			if err != nil && lastErr != nil {
				err = fmt.Errorf("%w (the layer's urls failed too: %v)", err, lastErr)
			}
			return body, start, err
		}
		if lastErr == nil {
			lastErr = fmt.Errorf("%w: no URL to fetch the foreign layer from", ErrNotFound)
		}
		return nil, 0, lastErr
	}
}

// openURL sends GET u, with a Range from offset when offset > 0, carrying no credentials.
func (c *Client) openURL(ctx context.Context, u string, offset int64) (io.ReadCloser, int64, error) {
	parsed, err := url.Parse(u)
	if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
		return nil, 0, fmt.Errorf("%w: foreign layer URL %q is not an http(s) URL", ErrUnsupported, clip(u, 100))
	}
	req, err := c.newRequest(ctx, http.MethodGet, parsed.String(), nil)
	if err != nil {
		return nil, 0, err
	}
	if offset > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
	}
	resp, _, err := c.send(req, "", "")
	if err != nil {
		return nil, 0, err
	}
	return rangeBody(resp, offset)
}

// rangeBody checks the answer to a blob GET sent with a Range from offset (or none when
// offset is 0) and returns its body and where that body starts.
func rangeBody(resp *http.Response, offset int64) (io.ReadCloser, int64, error) {
	switch resp.StatusCode {
	case http.StatusOK:
		return resp.Body, 0, nil
	case http.StatusPartialContent:
		start, err := contentRangeStart(resp.Header.Get("Content-Range"))
		if err != nil || start != offset {
			drain(resp)
			return nil, 0, fmt.Errorf("%w: %s answered a Range from byte %d with Content-Range %q",
				ErrBadResponse, redact(resp.Request.URL), offset, resp.Header.Get("Content-Range"))
		}
		return resp.Body, start, nil
	}
	return nil, 0, ErrorFromResponse(resp)
}

// contentRangeStart returns the first byte position of "bytes first-last/complete".
func contentRangeStart(v string) (int64, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(v), "bytes ")
	if !ok {
		return 0, errors.New("not a byte range")
	}
	first, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, errors.New("no range")
	}
	return strconv.ParseInt(strings.TrimSpace(first), 10, 64)
}

// Retryable reports whether a failed registry request may be retried: network errors,
// connections closed early and 5xx, 408 and 429 answers are; refusals, mismatches,
// protocol errors and cancellation are not.
func Retryable(err error) bool {
	if err == nil {
		return false
	}
	var re *ResponseError
	if errors.As(err, &re) {
		return re.Status >= 500 || re.Status == http.StatusRequestTimeout || re.Status == http.StatusTooManyRequests
	}
	for _, fatal := range []error{context.Canceled, context.DeadlineExceeded, ErrBadResponse, ErrInsecure,
		ErrUnsupported, ErrCredentialHelper, ErrDockerConfig, ErrDigestMismatch, ErrUnauthorized,
		ErrDenied, ErrNotFound} {
		if errors.Is(err, fatal) {
			return false
		}
	}
	return true
}

// blobReader streams one blob, verifying it against its descriptor: it never returns
// more than desc.Size bytes, and it returns io.EOF only once the bytes it returned match
// desc.Digest (an error wrapping ErrDigestMismatch otherwise). When the connection drops
// or ends early it reopens the source at the offset reached (a Range request, or the
// whole blob again with the bytes already delivered skipped), transparently to its
// reader, up to the client's retry limits.
type blobReader struct {
	ctx  context.Context
	c    *Client
	desc ocispec.Descriptor
	src  blobSource

	hash hash.Hash
	body io.ReadCloser
	n    int64 // bytes delivered (and hashed)
	err  error // sticky: io.EOF once verified, or the failure

	retryErr   error // why the body went away, when it did
	progressed bool  // the current attempt delivered bytes
	failures   int   // consecutive attempts without progress
	resumes    int

	onProgress func(done int64)
	onRetry    func(offset int64, err error)
}

// newBlobReader returns a reader of desc from src. The digest must be valid and of an
// available algorithm.
func (c *Client) newBlobReader(ctx context.Context, desc ocispec.Descriptor, src blobSource) (*blobReader, error) {
	if err := desc.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("%w: descriptor digest %q: %v", ErrInvalidImage, desc.Digest, err)
	}
	if desc.Size < 0 {
		return nil, fmt.Errorf("%w: descriptor of %s has size %d", ErrInvalidImage, desc.Digest, desc.Size)
	}
	return &blobReader{ctx: ctx, c: c, desc: desc, src: src, hash: desc.Digest.Algorithm().Hash()}, nil
}

// Read implements io.Reader.
func (b *blobReader) Read(p []byte) (int, error) {
	for {
		if b.err != nil {
			return 0, b.err
		}
		if b.n == b.desc.Size {
			b.finish()
			continue
		}
		if b.body == nil {
			if err := b.open(); err != nil {
				b.err = err
				continue
			}
		}
		if len(p) == 0 {
			return 0, nil
		}
		if rem := b.desc.Size - b.n; int64(len(p)) > rem {
			p = p[:rem]
		}
		m, err := b.readBody(p)
		if m > 0 {
			b.hash.Write(p[:m])
			b.n += int64(m)
			b.progressed = true
			if b.onProgress != nil {
				b.onProgress(b.n)
			}
		}
		if err != nil && b.n < b.desc.Size {
			b.body.Close()
			b.body = nil
			if err == io.EOF {
				err = fmt.Errorf("%w: the connection ended after %d of %d bytes", io.ErrUnexpectedEOF, b.n, b.desc.Size)
			}
			b.retryErr = errContext(b.ctx, err)
		}
		if m > 0 {
			if b.n == b.desc.Size {
				b.finish()
			}
			return m, nil
		}
	}
}

// errStalled is why a body was abandoned by the idle timeout.
var errStalled = errors.New("no data received")

// readBody reads from the body, closing it (which makes the read fail) when no byte
// arrives within the idle timeout.
func (b *blobReader) readBody(p []byte) (int, error) {
	idle := b.c.opts.IdleTimeout
	if idle <= 0 {
		return b.body.Read(p)
	}
	var stalled atomic.Bool
	body := b.body
	timer := time.AfterFunc(idle, func() {
		stalled.Store(true)
		body.Close()
	})
	m, err := body.Read(p)
	timer.Stop()
	if err != nil && stalled.Load() {
		err = fmt.Errorf("%w for %v", errStalled, idle)
	}
	return m, err
}

// open (re)opens the source at b.n, after waiting out the backoff when the previous
// attempt failed without progress.
func (b *blobReader) open() error {
	for {
		if err := b.retryErr; err != nil {
			if !Retryable(err) {
				return fmt.Errorf("blob %s: %w", b.desc.Digest, err)
			}
			if b.progressed {
				b.failures = 0
			} else {
				b.failures++
			}
			b.progressed = false
			b.resumes++
			if b.failures > b.c.opts.Retries || b.resumes > maxResumes {
				return fmt.Errorf("blob %s: giving up after %d attempts at byte %d of %d: %w",
					b.desc.Digest, b.resumes, b.n, b.desc.Size, err)
			}
			if b.failures > 0 {
				t := time.NewTimer(b.c.opts.Backoff(b.failures))
				select {
				case <-b.ctx.Done():
					t.Stop()
					return errContext(b.ctx, b.ctx.Err())
				case <-t.C:
				}
			}
			if b.onRetry != nil {
				b.onRetry(b.n, err)
			}
		}
		body, start, err := b.src(b.ctx, b.n)
		if err != nil {
			b.retryErr = errContext(b.ctx, err)
			continue
		}
		if start < b.n {
			// The server sent the whole blob again: skip what was delivered already.
			if _, err := io.CopyN(io.Discard, body, b.n-start); err != nil {
				body.Close()
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				b.retryErr = errContext(b.ctx, err)
				continue
			}
		}
		b.body, b.retryErr = body, nil
		return nil
	}
}

// finish closes the body and sets the sticky result: io.EOF when the digest matches.
func (b *blobReader) finish() {
	if b.body != nil {
		b.body.Close()
		b.body = nil
	}
	got := digest.NewDigestFromBytes(b.desc.Digest.Algorithm(), b.hash.Sum(nil))
	if got != b.desc.Digest {
		b.err = fmt.Errorf("%w: blob %s (%d bytes) has digest %s", ErrDigestMismatch, b.desc.Digest, b.desc.Size, got)
		return
	}
	b.err = io.EOF
}

// verified reports whether the whole blob was read and matched its digest.
func (b *blobReader) verified() bool { return b.err == io.EOF }

// failure returns why the download failed, or nil if it has not (yet).
func (b *blobReader) failure() error {
	if b.err == nil || b.err == io.EOF {
		return nil
	}
	return b.err
}

// Close releases the connection, if one is open.
func (b *blobReader) Close() error {
	if b.body != nil {
		b.body.Close()
		b.body = nil
	}
	if b.err == nil {
		b.err = errors.New("blob reader closed")
	}
	return nil
}

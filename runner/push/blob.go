package push

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/runner/pull"
)

// progressStep is how many bytes an upload advances between progress events.
const progressStep = 256 << 10

// pushBlob makes the target repository hold blob desc: nothing to do when it has
// it, else a mount from another repository, else an upload. i is the layer's index
// in the manifest for progress events, -1 for the config (no events).
func (p *pusher) pushBlob(ctx context.Context, i int, desc ocispec.Descriptor) (err error) {
	ev := func(kind EventKind) Event {
		return Event{Kind: kind, Index: i, Layer: desc, Total: desc.Size}
	}
	report := func(e Event) {
		if i >= 0 {
			p.progress.Update(e)
		}
	}
	defer func() {
		if err != nil {
			e := ev(EventLayerFailed)
			e.Err = err
			report(e)
		}
	}()
	var exists bool
	if err := p.retry(ctx, func() (err error) { exists, err = p.exists(ctx, desc.Digest); return err }); err != nil {
		return err
	}
	if exists {
		report(ev(EventLayerExists))
		return nil
	}
	loc, from, err := p.mount(ctx, desc.Digest)
	if err != nil {
		return err
	}
	if from != "" {
		e := ev(EventLayerMounted)
		e.From = from
		report(e)
		return nil
	}
	report(ev(EventLayerStart))
	if err := p.upload(ctx, desc, loc, func(e Event) { e.Index, e.Layer, e.Total = i, desc, desc.Size; report(e) }); err != nil {
		return err
	}
	report(ev(EventLayerPushed))
	return nil
}

// exists reports whether the target repository holds blob d (HEAD). A refusal
// (401, 403, ...) answers false: the upload that follows fails with the registry's
// message, which a HEAD response cannot carry.
func (p *pusher) exists(ctx context.Context, d digest.Digest) (bool, error) {
	resp, err := p.client.Do(ctx, p.ref.Registry, pull.Request{
		Method: http.MethodHead, URL: p.repoURL("blobs/" + d.String()), Scopes: []string{p.scope()},
	})
	if err != nil {
		return false, err
	}
	drain(resp)
	switch {
	case resp.StatusCode == http.StatusOK:
		return true, nil
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return false, &pull.ResponseError{Method: http.MethodHead, URL: resp.Request.URL.Path, Status: resp.StatusCode}
	}
	return false, nil
}

// mount tries to mount blob d from the other repositories of the registry that
// local images came from. It returns the repository it was mounted from, or "" and
// the Location of the upload session the registry opened instead (202), if it did.
// A mount the registry refuses is not an error: the blob is uploaded instead.
func (p *pusher) mount(ctx context.Context, d digest.Digest) (loc, from string, err error) {
	sources := p.sources[d]
	if len(sources) > maxMountSources {
		sources = sources[:maxMountSources]
	}
	for n, src := range sources {
		q := url.Values{"mount": {d.String()}, "from": {src}}
		resp, err := p.client.Do(ctx, p.ref.Registry, pull.Request{
			Method: http.MethodPost, URL: p.repoURL("blobs/uploads/?" + q.Encode()),
			Scopes: []string{p.scope(), "repository:" + src + ":pull"},
		})
		if err != nil {
			if ctx.Err() != nil {
				return "", "", context.Cause(ctx)
			}
			return "", "", nil // the upload retries what went wrong
		}
		drain(resp)
		switch resp.StatusCode {
		case http.StatusCreated:
			return "", src, nil
		case http.StatusAccepted:
			l, err := location(resp)
			if err != nil || n == len(sources)-1 {
				return l, "", nil
			}
			p.cancelUpload(ctx, l) // another source may have it
		default:
			return "", "", nil // not allowed to mount (or to push: the upload says so)
		}
	}
	return "", "", nil
}

// cancelUpload deletes an upload session that will not be used, as a courtesy.
func (p *pusher) cancelUpload(ctx context.Context, loc string) {
	resp, err := p.client.Do(ctx, p.ref.Registry, pull.Request{Method: http.MethodDelete, URL: loc, Scopes: []string{p.scope()}})
	if err == nil {
		drain(resp)
	}
}

// upload sends the stored blob desc in the upload session at loc ("": a new one),
// in one PUT when it is small and in PATCH chunks otherwise. Failures that may be
// retried are: after asking the registry where the upload stands (GET of the
// session), a chunked upload continues from there, anything else starts anew.
func (p *pusher) upload(ctx context.Context, desc ocispec.Descriptor, loc string, report func(Event)) error {
	f, size, err := p.store.OpenBlob(desc.Digest)
	if err != nil {
		return err
	}
	defer f.Close()
	if size != desc.Size {
		return fmt.Errorf("%w: the stored blob %s has %d bytes, its manifest says %d", pull.ErrInvalidImage, desc.Digest, size, desc.Size)
	}
	u := &upload{p: p, f: f, desc: desc, loc: loc, report: report}
	chunked := size > p.opts.MonolithicMax
	failures := 0
	for attempt := 1; ; attempt++ {
		before := u.offset
		if chunked {
			err = u.chunked(ctx)
		} else {
			err = u.whole(ctx)
		}
		if err == nil {
			return nil
		}
		if !pull.Retryable(err) || attempt >= maxAttempts || ctx.Err() != nil {
			return err
		}
		// Where does the upload stand? The blob may be complete (the answer to
		// the final PUT was lost), or the registry may hold part of it.
		if ok, herr := p.exists(ctx, desc.Digest); herr == nil && ok {
			return nil
		}
		if chunked && u.loc != "" {
			if off, l, serr := u.status(ctx); serr == nil {
				u.offset, u.loc = off, l
			} else {
				u.loc, u.offset = "", 0
			}
		} else {
			u.loc, u.offset = "", 0
		}
		if u.offset > before {
			failures = 0
		} else {
			failures++
		}
		if failures > p.client.Retries() {
			return err
		}
		report(Event{Kind: EventLayerRetry, Done: u.offset, Err: err})
		if err := sleep(ctx, p.client.Backoff(max(failures, 1))); err != nil {
			return err
		}
	}
}

// upload is the state of one blob's upload.
type upload struct {
	p      *pusher
	f      *os.File
	desc   ocispec.Descriptor
	loc    string // the session's URL; "" before POST
	offset int64  // bytes the registry holds in the session
	report func(Event)
}

// start opens a session when there is none.
func (u *upload) start(ctx context.Context) error {
	if u.loc != "" {
		return nil
	}
	resp, err := u.p.client.Do(ctx, u.p.ref.Registry, pull.Request{
		Method: http.MethodPost, URL: u.p.repoURL("blobs/uploads/"), Scopes: []string{u.p.scope()},
	})
	if err != nil || resp.StatusCode != http.StatusAccepted {
		return errorOf(resp, err)
	}
	drain(resp)
	l, err := location(resp)
	if err != nil {
		return err
	}
	u.loc, u.offset = l, 0
	return nil
}

// whole sends the blob in one PUT.
func (u *upload) whole(ctx context.Context) error {
	if err := u.start(ctx); err != nil {
		return err
	}
	return u.finish(ctx, u.body(0, u.desc.Size), u.desc.Size)
}

// chunked sends the rest of the blob from u.offset in PATCH chunks, then the PUT
// that completes it.
func (u *upload) chunked(ctx context.Context) error {
	if err := u.start(ctx); err != nil {
		return err
	}
	for u.offset < u.desc.Size {
		n := min(u.p.opts.ChunkSize, u.desc.Size-u.offset)
		resp, err := u.p.client.Do(ctx, u.p.ref.Registry, pull.Request{
			Method: http.MethodPatch, URL: u.loc,
			Header: http.Header{
				"Content-Type":  {"application/octet-stream"},
				"Content-Range": {strconv.FormatInt(u.offset, 10) + "-" + strconv.FormatInt(u.offset+n-1, 10)},
			},
			Body: u.body(u.offset, n), ContentLength: n, Scopes: []string{u.p.scope()},
		})
		if err != nil || resp.StatusCode != http.StatusAccepted {
			return errorOf(resp, err)
		}
		drain(resp)
		next := u.offset + n
		if end, ok := rangeEnd(resp.Header.Get("Range")); ok && end+1 != next {
			return fmt.Errorf("%w: %s holds %d bytes of the upload of %s after a chunk that ended at %d",
				pull.ErrBadResponse, u.p.ref.Registry, end+1, u.desc.Digest, next)
		}
		if l, err := location(resp); err == nil {
			u.loc = l
		}
		u.offset = next
	}
	return u.finish(ctx, nil, 0)
}

// finish sends the PUT that completes the upload, with the given body (nil: none).
func (u *upload) finish(ctx context.Context, body func() (io.ReadCloser, error), n int64) error {
	target, err := url.Parse(u.loc)
	if err != nil {
		return fmt.Errorf("%w: upload location %q: %v", pull.ErrBadResponse, u.loc, err)
	}
	q := target.Query()
	q.Set("digest", u.desc.Digest.String())
	target.RawQuery = q.Encode()
	h := http.Header{"Content-Type": {"application/octet-stream"}}
	resp, err := u.p.client.Do(ctx, u.p.ref.Registry, pull.Request{
		Method: http.MethodPut, URL: target.String(), Header: h, Body: body, ContentLength: n, Scopes: []string{u.p.scope()},
	})
	if err != nil || resp.StatusCode != http.StatusCreated {
		return errorOf(resp, err)
	}
	drain(resp)
	u.report(Event{Kind: EventLayerProgress, Done: u.desc.Size})
	return nil
}

// status asks the registry how much of the session it holds (GET of the
// session's URL: 204 with Range 0-<last byte>).
func (u *upload) status(ctx context.Context) (int64, string, error) {
	resp, err := u.p.client.Do(ctx, u.p.ref.Registry, pull.Request{Method: http.MethodGet, URL: u.loc, Scopes: []string{u.p.scope()}})
	if err != nil || resp.StatusCode != http.StatusNoContent {
		return 0, "", errorOf(resp, err)
	}
	drain(resp)
	loc := u.loc
	if l, err := location(resp); err == nil {
		loc = l
	}
	end, ok := rangeEnd(resp.Header.Get("Range"))
	if !ok || end <= 0 {
		// "0-0" is an empty upload to most registries (and one byte to a few):
		// starting over is right for both.
		return 0, loc, nil
	}
	return end + 1, loc, nil
}

// body returns the request body of the stored blob's bytes [off, off+n), counted
// into progress events.
func (u *upload) body(off, n int64) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		return io.NopCloser(&countingReader{r: io.NewSectionReader(u.f, off, n), done: off, report: u.report}), nil
	}
}

// countingReader reports the offset it reached every progressStep bytes.
type countingReader struct {
	r        io.Reader
	done     int64
	reported int64
	report   func(Event)
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.done += int64(n)
	if c.done-c.reported >= progressStep {
		c.reported = c.done
		c.report(Event{Kind: EventLayerProgress, Done: c.done})
	}
	return n, err
}

// location returns the Location of resp, made absolute.
func location(resp *http.Response) (string, error) {
	l := resp.Header.Get("Location")
	if l == "" {
		return "", fmt.Errorf("%w: %s %s answered %d without a Location", pull.ErrBadResponse,
			resp.Request.Method, resp.Request.URL.Path, resp.StatusCode)
	}
	u, err := resp.Request.URL.Parse(l)
	if err != nil {
		return "", fmt.Errorf("%w: %s %s answered the Location %q: %v", pull.ErrBadResponse,
			resp.Request.Method, resp.Request.URL.Path, l, err)
	}
	return u.String(), nil
}

// rangeEnd parses the Range header of an upload status, "0-<last byte>".
func rangeEnd(v string) (int64, bool) {
	v = strings.TrimPrefix(strings.TrimSpace(v), "bytes=")
	_, last, ok := strings.Cut(v, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(last, 10, 64)
	return n, err == nil && n >= 0
}

// bytesBody is a request body of b, as Request.Body wants it.
func bytesBody(b []byte) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// drain discards a little of the body, so the connection can be reused, and
// closes it.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
}

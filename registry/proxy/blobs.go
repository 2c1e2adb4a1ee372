package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/runner/pull"
	"github.com/berth-registry/berth/storage"
	"github.com/berth-registry/berth/storage/store"
)

// Timing of the claims that make one process of several over one storage
// the downloader of a blob. A claim is renewed every claimRefresh while its
// download runs and is taken over once claimStale old (its owner died). A
// free claim is taken by creating it exclusively where the storage can (a
// link on the filesystem, If-None-Match on S3): one process of those racing
// gets it. Elsewhere, and to take over a stale claim, a process writes its
// claim, waits claimSettle and reads it back: the last writer wins.
const (
	claimRefresh = 5 * time.Second
	claimStale   = 30 * time.Second
	claimSettle  = 30 * time.Millisecond
	claimPollMax = time.Second
)

// streamBufferSize is the size of the two buffers a blob travels through
// from the upstream to the store and the client.
const streamBufferSize = 256 << 10

var streamBuffers = sync.Pool{New: func() any { b := make([]byte, streamBufferSize); return &b }}

// flight is one blob download of this process; other requests for the
// blob wait for it and then read the stored blob.
type flight struct {
	done chan struct{}
	err  error
	// abandoned: the leading request's own context ended before an
	// outcome (its client went away while it waited for another process):
	// no answer for the waiting requests, which look again.
	abandoned bool
}

// Blob serves blob d of the cached repository t, which the store lacks
// (the caller checked). When this request downloads it, begin is called
// once the upstream answered, with the blob's size, and the bytes are
// written to the writer begin returns while they are stored; the last of
// them only once the whole blob is verified and stored, so that a client
// never receives all of a blob that fails verification. Then served is
// true. When the blob was downloaded by another request or process, or
// its bytes were stored already, Blob returns served false and a nil
// error once it is part of t.Repo: the caller serves it from the store.
//
// The download goes on if the client goes away, so that the cache is
// filled; it fails, storing nothing, if the upstream sends nothing for the
// upstream's ReadTimeout or bytes that do not hash to d.
func (c *Cache) Blob(ctx context.Context, t *Target, d digest.Digest, begin func(size int64) io.Writer) (served bool, err error) {
	for {
		if _, err := c.store.BlobSize(ctx, t.Repo, d); err == nil {
			c.metrics.result(t.up.Name, "blob", Hit)
			return false, nil
		} else if !errors.Is(err, store.ErrBlobUnknown) {
			return false, err
		}
		c.mu.Lock()
		f, waiting := c.flights[d]
		if !waiting {
			f = &flight{done: make(chan struct{})}
			c.flights[d] = f
		}
		c.mu.Unlock()
		if waiting {
			select {
			case <-f.done:
			case <-ctx.Done():
				return false, ctx.Err()
			}
			if f.err != nil && !f.abandoned {
				return false, f.err
			}
			continue // stored, perhaps for another repository, or abandoned: look again
		}
		served, err = c.lead(ctx, t, d, begin)
		f.err = err
		f.abandoned = err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err())
		c.mu.Lock()
		delete(c.flights, d)
		c.mu.Unlock()
		close(f.done)
		return served, err
	}
}

// BlobHit counts a request for blob of the cached repository t that the
// store answered without asking the cache (the blob was cached before).
func (c *Cache) BlobHit(t *Target) {
	c.metrics.result(t.up.Name, "blob", Hit)
}

// lead makes d part of t.Repo for the requests of this process: by linking
// bytes already stored (once the upstream confirms the repository has
// them), by waiting for another process that downloads it, or by
// downloading it.
func (c *Cache) lead(ctx context.Context, t *Target, d digest.Digest, begin func(size int64) io.Writer) (bool, error) {
	owner, err := c.claim(ctx, d)
	if err != nil {
		return false, err
	}
	if owner == "" { // the bytes are stored: link them
		if _, err := c.statUpstream(ctx, t, d); err != nil {
			return false, err
		}
		if _, err := c.store.MountBlob(ctx, t.Repo, "", d); err != nil {
			return false, err
		}
		c.metrics.result(t.up.Name, "blob", Hit)
		return false, nil
	}
	stop := make(chan struct{})
	var renewing sync.WaitGroup
	renewing.Go(func() {
		tick := time.NewTicker(claimRefresh)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if err := c.store.WriteClaim(context.WithoutCancel(ctx), d, owner); err != nil {
					c.log.Warn("renewing a blob download claim", "digest", d, "error", err)
				}
			}
		}
	})
	served, err := c.download(ctx, t, d, begin)
	close(stop)
	renewing.Wait()
	if derr := c.store.DropClaim(context.WithoutCancel(ctx), d, owner); derr != nil {
		c.log.Warn("dropping a blob download claim (it goes stale by itself)", "digest", d, "error", derr)
	}
	if err != nil {
		c.metrics.failed(t.up.Name)
		return served, err
	}
	c.metrics.result(t.up.Name, "blob", Miss)
	return served, nil
}

// claim returns the owner string of this process's claim on downloading
// d, or "" once d's bytes are stored (by another process, or before).
func (c *Cache) claim(ctx context.Context, d digest.Digest) (string, error) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	owner := c.owner + "-" + hex.EncodeToString(b[:])
	wait := 50 * time.Millisecond
	for {
		have, err := c.store.HasBlobData(ctx, d)
		if err != nil || have {
			return "", err
		}
		cl, held, err := c.store.ReadClaim(ctx, d)
		if err != nil {
			return "", err
		}
		var mine bool
		switch {
		case !held:
			mine, err = c.store.TakeClaim(ctx, d, owner, claimSettle)
		case time.Since(cl.Since) > claimStale:
			c.log.Info("taking over a stale blob download claim", "digest", d, "owner", cl.Owner, "since", cl.Since)
			mine, err = c.store.ReplaceClaim(ctx, d, owner, claimSettle)
		}
		if err != nil {
			return "", err
		}
		if mine {
			return owner, nil
		}
		if err := sleep(ctx, wait); err != nil {
			return "", err
		}
		wait = min(2*wait, claimPollMax)
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// download GETs blob d from the upstream and stores it in t.Repo while
// streaming it to the writer begin returns (not when the upstream does not
// say the size: then the caller serves the stored blob).
//
// The store and the client each take the bytes at their own pace: chunks
// go to the store through a queue of at most storeQueue chunks, so that
// neither the upload's set-up nor a slow disk holds up the first bytes to
// the client, nor a slow client the store. The blob's last byte reaches
// the client only once the store has hashed every byte and found the
// digest, so a client never receives all of a blob that fails
// verification.
func (c *Cache) download(ctx context.Context, t *Target, d digest.Digest, begin func(size int64) io.Writer) (served bool, err error) {
	what := "blob " + d.String() + " of " + t.Remote
	// The download outlives the client's request (the cache is filled
	// anyway); stalls end it.
	dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	var stalled atomic.Bool
	watchdog := time.AfterFunc(t.up.ReadTimeout, func() { stalled.Store(true); cancel() })
	defer watchdog.Stop()

	resp, err := t.up.client.Do(dctx, t.up.host, pull.Request{
		Method: http.MethodGet,
		URL:    "/v2/" + t.Remote + "/blobs/" + d.String(),
		Scopes: []string{pullScope(t.Remote)},
	})
	if err != nil {
		if stalled.Load() {
			err = fmt.Errorf("no response in %s", t.up.ReadTimeout)
		}
		return false, t.up.upstreamError(err, store.ErrBlobUnknown, what)
	}
	if resp.StatusCode != http.StatusOK {
		return false, t.up.responseError(resp, store.ErrBlobUnknown, what)
	}
	defer resp.Body.Close()
	size := resp.ContentLength
	watchdog.Reset(t.up.ReadTimeout)
	var body io.Reader = resp.Body
	if size < 0 {
		// No length said: an upstream could send forever. Nothing
		// bigger than maxUnsizedBlob is taken (the digest check then
		// fails and nothing is kept).
		body = io.LimitReader(resp.Body, maxUnsizedBlob)
	}

	// The store's side: a pipe fed from a queue of chunks.
	pr, pw := io.Pipe()
	verified := make(chan struct{})
	stored := make(chan error, 1)
	go func() {
		// The client has every byte but the last before the store's
		// commit: what pushes the bytes to disk early only slows the
		// stream down.
		_, err := c.store.PutBlobVerified(storage.WithLazySync(dctx), t.Repo, pr, d, func() { close(verified) })
		pr.CloseWithError(err) // unblocks the feeder if PutBlob gave up early
		stored <- err
	}()
	queue := make(chan *chunk, storeQueue)
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		failed := false
		for ch := range queue {
			if !failed {
				if _, err := pw.Write(ch.b); err != nil {
					failed = true // the store's error comes from stored
				}
			}
			ch.release()
		}
	}()

	var client io.Writer
	if size >= 0 {
		client = begin(size)
		served = true
	}
	// The blob's last byte is held back until the store has verified the
	// digest; every other byte goes to the client as it arrives.
	var held []byte
	var last [1]byte
	var received int64
	var readErr error
	for {
		ch := newChunk()
		n, rerr := io.ReadAtLeast(body, ch.buf, 1)
		if n > 0 {
			watchdog.Reset(t.up.ReadTimeout)
			received += int64(n)
			ch.b = ch.buf[:n]
			ch.refs.Store(2) // the store's and the client's
			queue <- ch
			out := ch.b
			if received == size {
				last[0], held, out = out[n-1], last[:], out[:n-1]
			}
			if client != nil && len(out) > 0 {
				if _, werr := client.Write(out); werr != nil {
					client = nil // the client went away; the cache is still filled
				}
			}
		}
		ch.release()
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF && n > 0 && size >= 0 && received == size {
			break
		}
		if rerr != nil {
			readErr = rerr
			if stalled.Load() {
				readErr = fmt.Errorf("nothing received for %s after %d bytes", t.up.ReadTimeout, received)
			}
			break
		}
	}
	close(queue)
	<-fed
	c.metrics.received(t.up.Name, received)
	if readErr != nil {
		pw.CloseWithError(readErr)
		<-stored
		return served, t.up.upstreamError(readErr, store.ErrBlobUnknown, what)
	}
	pw.Close()
	// The last bytes go out once the store has found the digest, before
	// it has made them durable; the request ends once they are stored.
	select {
	case <-verified:
		if client != nil && held != nil {
			if _, err := client.Write(held); err == nil {
				_ = http.NewResponseController(client.(http.ResponseWriter)).Flush()
			}
		}
		if err := <-stored; err != nil {
			return served, err
		}
		return served, nil
	case err := <-stored:
		if err == nil { // verified was closed first: cannot happen, but serve it
			if client != nil && held != nil {
				_, _ = client.Write(held)
			}
			return served, nil
		}
		if errors.Is(err, store.ErrDigestMismatch) {
			c.log.LogAttrs(ctx, slog.LevelWarn, "upstream sent a blob that does not match its digest; nothing was cached",
				slog.String("upstream", t.up.Name), slog.String("repository", t.Repo), slog.String("digest", d.String()),
				slog.String("error", err.Error()))
			return served, fmt.Errorf("%w: upstream %s sent bytes for %s that do not match the digest (%v); nothing was cached",
				ErrUpstreamUnavailable, t.up.Name, what, err)
		}
		return served, err
	}
}

// maxUnsizedBlob bounds a blob an upstream sends without a Content-Length.
const maxUnsizedBlob = 64 << 30

// storeQueue bounds the chunks waiting for the store while the client
// runs ahead of it: 64 of streamBufferSize, 16 MiB per download.
const storeQueue = 64

// chunk is a pooled buffer of a download, shared by the store's side and
// the client's; it returns to the pool when both released it.
type chunk struct {
	buf  []byte // streamBufferSize bytes, pooled
	b    []byte // the part read
	refs atomic.Int32
}

func newChunk() *chunk {
	bp := streamBuffers.Get().(*[]byte)
	ch := &chunk{buf: *bp}
	ch.refs.Store(1)
	return ch
}

func (ch *chunk) release() {
	if ch.refs.Add(-1) == 0 {
		b := ch.buf
		streamBuffers.Put(&b)
	}
}

// StatBlob answers a HEAD for blob d of the cached repository t, which the
// store lacks, by asking the upstream; it stores nothing.
func (c *Cache) StatBlob(ctx context.Context, t *Target, d digest.Digest) (int64, error) {
	size, err := c.statUpstream(ctx, t, d)
	if err != nil {
		c.metrics.failed(t.up.Name)
	}
	return size, err
}

// statUpstream HEADs blob d of t's upstream repository and returns its size.
func (c *Cache) statUpstream(ctx context.Context, t *Target, d digest.Digest) (int64, error) {
	what := "blob " + d.String() + " of " + t.Remote
	resp, err := t.up.client.Do(ctx, t.up.host, pull.Request{
		Method: http.MethodHead,
		URL:    "/v2/" + t.Remote + "/blobs/" + d.String(),
		Scopes: []string{pullScope(t.Remote)},
	})
	if err != nil {
		return 0, t.up.upstreamError(err, store.ErrBlobUnknown, what)
	}
	drain(resp)
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		// A HEAD is not redirected by the client: the upstream has it.
		if n, err := strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64); err == nil && n > 0 {
			return n, nil
		}
		return -1, nil
	default:
		return 0, t.up.responseError(resp, store.ErrBlobUnknown, what)
	}
	return resp.ContentLength, nil
}

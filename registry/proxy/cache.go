package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/berth-registry/berth/runner/pull"
	"github.com/berth-registry/berth/storage/store"
)

// Options configure a Cache.
type Options struct {
	// Store holds the cached content, beside the local repositories.
	Store *store.Store
	// Upstreams are the cached registries; their prefixes must not overlap.
	Upstreams []Upstream
	// Logger receives stale serves and upstream failures; nil means
	// slog.Default().
	Logger *slog.Logger
	// Metrics, if set, receives the cache's counters.
	Metrics *prometheus.Registry
	// UserAgent is sent upstream; "" means "berth-proxy".
	UserAgent string
}

// Cache serves cached repositories from the store and fills them from
// their upstreams. A nil *Cache caches nothing: Resolve returns nil for
// every name. It is safe for concurrent use.
type Cache struct {
	store     *store.Store
	upstreams []*upstream
	log       *slog.Logger
	metrics   *metrics
	owner     string // this process's claim owner prefix

	manifests singleflight.Group // upstream manifest fetches and tag checks, by repo and reference

	prefetch chan struct{} // bounds the referrer fetches running in the background

	mu      sync.Mutex
	flights map[digest.Digest]*flight // blob downloads of this process
	pulls   map[pullKey]time.Time     // pull notes written lately
}

// New returns a Cache, or nil when opts has no upstreams.
func New(opts Options) (*Cache, error) {
	if len(opts.Upstreams) == 0 {
		return nil, nil
	}
	if opts.Store == nil {
		return nil, errors.New("proxy: Options.Store is nil")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "berth-proxy"
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	c := &Cache{
		store:    opts.Store,
		log:      opts.Logger,
		owner:    hex.EncodeToString(b[:]),
		flights:  map[digest.Digest]*flight{},
		pulls:    map[pullKey]time.Time{},
		prefetch: make(chan struct{}, maxPrefetch),
	}
	for _, u := range opts.Upstreams {
		up, err := newUpstream(u, opts.UserAgent)
		if err != nil {
			return nil, err
		}
		c.upstreams = append(c.upstreams, up)
	}
	if opts.Metrics != nil {
		m, err := newMetrics(opts.Metrics)
		if err != nil {
			return nil, err
		}
		c.metrics = m
	}
	return c, nil
}

// Result says how the cache answered a request, for the access log.
type Result string

// The results.
const (
	Hit   Result = "hit"   // served from the cache, the upstream not asked (or a tag confirmed by HEAD)
	Miss  Result = "miss"  // fetched from the upstream
	Stale Result = "stale" // the upstream failed: served from the cache all the same
)

// upstreamError turns a failed upstream request into the cache's error:
// ErrUpstreamThrottled for 429, ErrUpstreamDenied for 401 and 403, the
// store's unknown error (404 semantics) for 404 via notFound, else
// ErrUpstreamUnavailable. It never holds credentials (pull's errors
// redact URLs).
func (u *upstream) upstreamError(err error, notFound error, what string) error {
	var re *pull.ResponseError
	if errors.As(err, &re) {
		switch {
		case re.Status == http.StatusNotFound:
			return fmt.Errorf("%w: upstream %s has no %s (%v)", notFound, u.Name, what, err)
		case re.Status == http.StatusTooManyRequests:
			return &ThrottledError{Upstream: u.Name, Cause: err}
		case re.Status == http.StatusUnauthorized || re.Status == http.StatusForbidden:
			return fmt.Errorf("%w: upstream %s refused %s: %v", ErrUpstreamDenied, u.Name, what, err)
		}
	}
	if errors.Is(err, ErrUpstreamThrottled) || errors.Is(err, ErrUpstreamDenied) || errors.Is(err, ErrUpstreamUnavailable) {
		return err
	}
	if errors.Is(err, pull.ErrUnauthorized) || errors.Is(err, pull.ErrDenied) {
		return fmt.Errorf("%w: upstream %s refused %s: %v", ErrUpstreamDenied, u.Name, what, err)
	}
	return fmt.Errorf("%w: upstream %s, fetching %s: %v", ErrUpstreamUnavailable, u.Name, what, err)
}

// responseError is the error of an upstream response with an unexpected
// status; for 429 it keeps the Retry-After.
func (u *upstream) responseError(resp *http.Response, notFound error, what string) error {
	retry := resp.Header.Get("Retry-After")
	err := u.upstreamError(pull.ErrorFromResponse(resp), notFound, what)
	if te, ok := errors.AsType[*ThrottledError](err); ok {
		if s, perr := strconv.Atoi(retry); perr == nil && s > 0 {
			te.RetryAfter = time.Duration(s) * time.Second
		}
	}
	return err
}

// canServeStale reports whether err, an upstream failure, lets the cache
// answer from what it holds: the upstream is unreachable, failing or
// throttling. A 404 or a refusal is the upstream's answer and is passed on.
func canServeStale(err error) bool {
	if errors.Is(err, ErrUpstreamDenied) {
		return false
	}
	if errors.Is(err, ErrUpstreamThrottled) || errors.Is(err, ErrUpstreamUnavailable) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// pullKey names a manifest of a repository for the pull notes.
type pullKey struct {
	repo string
	d    digest.Digest
}

// pullNoteEvery is how often a manifest's pull note is rewritten at most
// by one process: retention counts in days.
const pullNoteEvery = 10 * time.Minute

// notePull records that manifest d of the cached repository t was pulled,
// at most every pullNoteEvery per process (more often for a shorter
// ExpireAfter: every eighth of it). A failure is only logged: the pull
// itself succeeded.
func (c *Cache) notePull(ctx context.Context, t *Target, d digest.Digest) {
	repo := t.Repo
	every := pullNoteEvery
	if e := t.up.ExpireAfter; e > 0 {
		every = min(every, e/8)
	}
	k := pullKey{repo, d}
	now := time.Now()
	c.mu.Lock()
	last, ok := c.pulls[k]
	due := !ok || now.Sub(last) >= every
	if due {
		c.pulls[k] = now
		if len(c.pulls) > 100_000 { // bound the memo; forgetting costs one write each
			clear(c.pulls)
			c.pulls[k] = now
		}
	}
	c.mu.Unlock()
	if !due {
		return
	}
	if err := c.store.RecordPull(context.WithoutCancel(ctx), repo, d); err != nil {
		c.log.Warn("could not record a pull for cache retention", "repository", repo, "digest", d, "error", err)
	}
}

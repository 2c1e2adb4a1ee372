package proxy

import (
	"errors"
	"fmt"
	"time"
)

// Errors of the cache, wrapped with %w and a message naming the upstream
// and what it said; the registry maps each to an OCI error code.
var (
	// ErrUpstreamUnavailable: the upstream could not be reached, answered
	// 5xx, or sent something invalid, and what was asked is not cached
	// (502).
	ErrUpstreamUnavailable = errors.New("upstream registry unavailable")
	// ErrUpstreamThrottled: the upstream answered 429 and what was asked is
	// not cached (503).
	ErrUpstreamThrottled = errors.New("upstream registry is throttling requests")
	// ErrUpstreamDenied: the upstream refused the request (401 or 403 with
	// the configured credentials).
	ErrUpstreamDenied = errors.New("upstream registry denied access")
	// ErrPushDenied: a push into an upstream's prefix, which only the
	// upstream fills (DENIED).
	ErrPushDenied = errors.New("repository is a cache of an upstream registry")
	// ErrNotMirrored: the repository is under an upstream's prefix but its
	// include/exclude globs leave it out (DENIED).
	ErrNotMirrored = errors.New("repository is not mirrored")
)

// ThrottledError is an ErrUpstreamThrottled that knows how long the
// upstream asked to wait (Retry-After), passed on to the client.
type ThrottledError struct {
	Upstream   string
	RetryAfter time.Duration // 0: the upstream did not say
	Cause      error
}

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("%v: %s: %v", ErrUpstreamThrottled, e.Upstream, e.Cause)
}

// Is makes errors.Is(err, ErrUpstreamThrottled) true.
func (e *ThrottledError) Is(target error) bool { return target == ErrUpstreamThrottled }

// Unwrap returns the upstream's error.
func (e *ThrottledError) Unwrap() error { return e.Cause }

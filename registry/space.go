package registry

import (
	"context"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/berth-registry/berth/storage"
)

// fullClass is what a write refused for space becomes on the wire: 507
// Insufficient Storage with a message a person can act on. The code is
// UNKNOWN, the spec's code for what has none of its own: clients print
// the message and fail at once rather than retry (UNAVAILABLE would make
// docker retry a push that cannot succeed).
var fullClass = errorClass{err: storage.ErrFull, code: "UNKNOWN", status: http.StatusInsufficientStorage,
	message: "registry storage is full: free space (berth gc) or add some, then push again"}

// fullHold is how long after a write was refused for space the registry
// refuses writes before reading their bodies, where the driver cannot say
// how much space is free (S3). Where it can, its answer decides.
const fullHold = 10 * time.Second

// fullLogEvery bounds the log lines of one burst of refusals.
const fullLogEvery = time.Minute

// space is what the registry knows of the storage running out of space.
type space struct {
	full   atomic.Int64 // unix nanoseconds of the last write refused for space; 0: none since one succeeded
	logged atomic.Int64 // unix nanoseconds of the last refusal logged
}

// refused records a write refused for space, logs it (once per burst) and
// counts it.
func (reg *Registry) refusedForSpace(r *http.Request, err error) {
	now := time.Now().UnixNano()
	reg.space.full.Store(now)
	if reg.metrics != nil {
		reg.metrics.storageFull.Inc()
	}
	if last := reg.space.logged.Load(); now-last >= int64(fullLogEvery) && reg.space.logged.CompareAndSwap(last, now) {
		reg.log.LogAttrs(r.Context(), slog.LevelError, "storage full: refusing writes with 507 until space is freed (logged once a minute)",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("error", err))
	}
}

// wrote records that a write succeeded: the storage has room again.
func (reg *Registry) wrote() {
	if reg.space.full.Load() != 0 {
		reg.space.full.Store(0)
	}
}

// fullBeforeBody reports whether write request r is to be refused for
// space before its body is read: the driver says less is free than the
// body declares, or (where it cannot tell) a write was refused for space
// less than fullHold ago and none succeeded since.
func (reg *Registry) fullBeforeBody(r *http.Request) bool {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return false
	}
	full := reg.space.full.Load()
	if full == 0 && r.ContentLength < minFreeForWrites {
		// A small body costs little to read and fail: no statfs on the
		// path of every small push while nothing says space is short.
		return false
	}
	free, known, err := reg.store.FreeBytes(r.Context())
	if known && err == nil {
		if r.ContentLength > 0 && free < r.ContentLength {
			return true
		}
		if full != 0 && free < minFreeForWrites {
			return true
		}
		return false
	}
	return full != 0 && time.Since(time.Unix(0, full)) < fullHold
}

// minFreeForWrites: below this, a write of unknown length is refused at
// once while the storage is known to be full.
const minFreeForWrites = 1 << 20

// storageFull reports whether writes are being refused for space, for
// /readyz.
func (reg *Registry) storageFull() bool {
	full := reg.space.full.Load()
	return full != 0 && time.Since(time.Unix(0, full)) < fullLogEvery
}

// WatchSpace checks the storage's free space every interval until ctx
// ends, where the driver can tell it (storage.SpaceReporter), and logs a
// warning when it falls under warnBelow bytes (then again only once it
// rose above and fell again), and when it recovers.
func (reg *Registry) WatchSpace(ctx context.Context, interval time.Duration, warnBelow int64) {
	if warnBelow <= 0 || interval <= 0 {
		return
	}
	low := false
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		free, known, err := reg.store.FreeBytes(ctx)
		switch {
		case !known:
			return
		case err != nil:
			reg.log.Warn("reading the storage's free space", "error", err)
		case free < warnBelow && !low:
			low = true
			reg.log.Warn("storage free space is low: run berth gc or add space", "freeBytes", free, "warnFreeBytes", warnBelow)
		case free >= warnBelow && low:
			low = false
			reg.log.Info("storage free space is above the warning threshold again", "freeBytes", free, "warnFreeBytes", warnBelow)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

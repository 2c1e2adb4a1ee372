// Package reload keeps a value read from files current without a restart: the TLS
// pair, the htpasswd users, the access policy. The files are looked at when the
// value is used, at most once per interval, and the value is loaded again when one
// of them changed; a change that does not load is logged and the previous value
// kept.
//
// It may import only the standard library.
package reload

import (
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultInterval is how often, at most, Value.Get looks at the files when
// Options.Interval is zero.
const DefaultInterval = time.Second

// Options configures a Value.
type Options[T any] struct {
	// What names the value in log messages: "TLS certificate", "htpasswd file".
	What string
	// Log receives a line per reload (info), per change that does not load
	// (error) and when the files become unreadable (warn); nil discards them.
	Log *slog.Logger
	// Describe returns log attributes of a newly loaded value (the number of
	// users, a certificate's expiry); nil: none.
	Describe func(T) []any
	// Interval is the least time between two looks at the files; 0:
	// DefaultInterval.
	Interval time.Duration
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// Value is a value of type T loaded from files. It is safe for concurrent use.
type Value[T any] struct {
	files []string
	load  func() (T, error)
	opts  Options[T]

	cur atomic.Pointer[T]

	mu         sync.Mutex // held by the one caller looking at the files
	checked    time.Time  // last look
	stamps     []stamp    // of the files as last loaded (or tried)
	unreadable bool       // the last look could not stat a file (warned once)
}

// stamp is what tells that a file changed: a new size, modification time or
// file (inode), as after a rename over it.
type stamp struct {
	size    int64
	modTime time.Time
	info    os.FileInfo // for os.SameFile
}

func (s stamp) equal(o stamp) bool {
	return s.size == o.size && s.modTime.Equal(o.modTime) && os.SameFile(s.info, o.info)
}

// New loads the value with load, which reads files, and returns a Value that
// loads it again when one of them changes. A first load that fails is
// returned as the error: nothing starts with a broken file.
func New[T any](files []string, load func() (T, error), opts Options[T]) (*Value[T], error) {
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	v := &Value[T]{files: files, load: load, opts: opts}
	// Stamps before loading: a change during the load is seen at the next look.
	stamps, serr := v.stat()
	x, err := load()
	if err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, serr
	}
	v.cur.Store(&x)
	v.stamps, v.checked = stamps, opts.Now()
	return v, nil
}

// Get returns the current value. If Interval has passed since the last look
// (or the clock went back), it first looks at the files and loads the value
// again if one changed: a new value that loads replaces the old one (logged at
// info); one that does not is logged at error level with the reason, once per
// change, and the old value is kept. Meanwhile other callers get the old value
// without waiting.
func (v *Value[T]) Get() T {
	if v.mu.TryLock() {
		if now := v.opts.Now(); now.Sub(v.checked) >= v.opts.Interval || now.Before(v.checked) {
			v.checked = now
			v.reloadIfChanged()
		}
		v.mu.Unlock()
	}
	return *v.cur.Load()
}

func (v *Value[T]) stat() ([]stamp, error) {
	stamps := make([]stamp, len(v.files))
	for i, f := range v.files {
		fi, err := os.Stat(f)
		if err != nil {
			return nil, err
		}
		stamps[i] = stamp{size: fi.Size(), modTime: fi.ModTime(), info: fi}
	}
	return stamps, nil
}

// reloadIfChanged loads the value again if a file's stamp changed. Called
// with v.mu held.
func (v *Value[T]) reloadIfChanged() {
	stamps, err := v.stat()
	if err != nil {
		// Mid-replacement, perhaps, or removed: look again next time.
		if !v.unreadable {
			v.unreadable = true
			v.opts.Log.Warn(v.opts.What+" unreadable: keeping the current one", append(v.fileAttrs(), "error", err)...)
		}
		return
	}
	v.unreadable = false
	changed := false
	for i := range stamps {
		if !stamps[i].equal(v.stamps[i]) {
			changed = true
		}
	}
	if !changed {
		return
	}
	// Remembered even if the load fails: one error per change, and the next
	// write to any of the files is tried again.
	v.stamps = stamps
	x, err := v.load()
	if err != nil {
		v.opts.Log.Error(v.opts.What+" changed but does not load: keeping the current one",
			append(v.fileAttrs(), "error", err)...)
		return
	}
	v.cur.Store(&x)
	attrs := v.fileAttrs()
	if v.opts.Describe != nil {
		attrs = append(attrs, v.opts.Describe(x)...)
	}
	v.opts.Log.Info("reloaded "+v.opts.What, attrs...)
}

func (v *Value[T]) fileAttrs() []any {
	if len(v.files) == 1 {
		return []any{"file", v.files[0]}
	}
	return []any{"files", v.files}
}

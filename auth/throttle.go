package auth

import (
	"container/list"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// ErrTooManyRequests is matched by the error of a login refused because of earlier
// failures (*ThrottledError); registry/errors.go maps it to TOOMANYREQUESTS, 429.
var ErrTooManyRequests = errors.New("auth: too many failed logins")

// ThrottledError is the error of a login that a Throttle refused without checking
// its credentials. It matches ErrTooManyRequests.
type ThrottledError struct {
	RetryAfter time.Duration // how long until the same login is checked again
}

// Error says when to retry; it names no user and no address.
func (e *ThrottledError) Error() string {
	return fmt.Sprintf("%s: retry in %ds", ErrTooManyRequests, e.Seconds())
}

// Is matches ErrTooManyRequests.
func (e *ThrottledError) Is(target error) bool { return target == ErrTooManyRequests }

// Seconds is RetryAfter in whole seconds, rounded up and at least 1: the value of a
// Retry-After header.
func (e *ThrottledError) Seconds() int {
	return max(1, int((e.RetryAfter+time.Second-1)/time.Second))
}

// Counter is what a Throttle counts with; a prometheus.Counter is one.
type Counter interface{ Inc() }

// Defaults of ThrottleConfig.
const (
	DefaultThrottleLimit      = 5
	DefaultThrottleWindow     = 15 * time.Minute
	DefaultThrottleBaseDelay  = time.Second
	DefaultThrottleMaxDelay   = time.Minute
	DefaultThrottleKnownFor   = 30 * 24 * time.Hour
	DefaultThrottleMaxEntries = 10000
)

// ThrottleConfig configures a Throttle; zero fields take the defaults above.
type ThrottleConfig struct {
	Limit      int           // failures of a burst that start blocking its key
	Window     time.Duration // a burst ends after this long without a failure
	BaseDelay  time.Duration // the first block; each further failure doubles it
	MaxDelay   time.Duration // the longest block
	KnownFor   time.Duration // how long a (user, address) login exempts that pair from the user's block
	MaxEntries int           // records per table (users, addresses, known pairs)
	Failures   Counter       // optional: every failed login
	Throttled  Counter       // optional: every login refused because its user or address was blocked
	Log        *slog.Logger  // optional: one warning per burst; nil: discarded
	Now        func() time.Time
}

// Throttle slows down password guessing where passwords are checked: the registry in
// htpasswd mode (BasicAuthorizer) and the built-in issuer's /auth/token. A nil
// *Throttle throttles nothing. It is safe for concurrent use.
//
// Failed logins are counted per user name and per client address (an IPv4 address,
// or the /64 of an IPv6 one), in bursts: a burst ends when Window (15 minutes) passes
// without a failure, and its count with it. From the Limit-th (5th) failure of a burst
// on, the key is blocked: for BaseDelay (1 s) after that failure, twice as long after
// each further one (2 s, 4 s, ...), at most MaxDelay (1 minute). A login whose user or
// address is blocked is refused at once with 429 and Retry-After, without looking at
// its credentials: a blocked guess costs no bcrypt comparison and tells nothing, and
// it neither counts as a failure nor extends the block. Nothing is permanent: a block
// ends by itself at most MaxDelay after the last failure.
//
// Two rules keep real users in. A successful login clears its address's count, so a
// shared address (a NAT, a CI runner) where someone mistyped is not held against the
// next user. And a user whose name is being guessed from elsewhere still logs in from
// an address where that user logged in successfully within KnownFor (30 days): the
// user's block does not apply to that pair (the address's block still does).
//
// Each burst is logged once, at warn level, by the failure that first blocks its key,
// naming the user and the address of that try; the burst's further failures and
// refusals are only counted (Failures, Throttled).
//
// Memory is bounded: each table (users, addresses, known pairs) keeps at most
// MaxEntries records and forgets the least recently used one when full. Spraying
// names or addresses can at worst make it forget the counts of other keys early;
// spraying names from one address is blocked by that address's count.
type Throttle struct {
	cfg ThrottleConfig

	mu    sync.Mutex
	users table // by user name
	addrs table // by addrKey
	known table // by user + "\x00" + addrKey: last successful login
}

// NewThrottle returns a Throttle with cfg's zero fields set to their defaults.
func NewThrottle(cfg ThrottleConfig) *Throttle {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if cfg.Limit <= 0 {
		cfg.Limit = DefaultThrottleLimit
	}
	def(&cfg.Window, DefaultThrottleWindow)
	def(&cfg.BaseDelay, DefaultThrottleBaseDelay)
	def(&cfg.MaxDelay, DefaultThrottleMaxDelay)
	def(&cfg.KnownFor, DefaultThrottleKnownFor)
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = DefaultThrottleMaxEntries
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	t := &Throttle{cfg: cfg}
	for _, tb := range []*table{&t.users, &t.addrs, &t.known} {
		*tb = table{max: cfg.MaxEntries, items: map[string]*list.Element{}, order: list.New()}
	}
	return t
}

// Check returns a *ThrottledError if a login of user from addr is not to be checked
// now, because the address, or the user from an address it is not known at, is
// blocked; nil otherwise. user "" (a refresh token, whose user is not known yet) is
// checked by address only.
func (t *Throttle) Check(user string, addr netip.Addr) error {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.cfg.Now()
	ak := addrKey(addr)
	var wait time.Duration
	if r := t.addrs.get(ak); r != nil && now.Before(r.until) {
		wait = r.until.Sub(now)
	}
	if user != "" {
		if r := t.users.get(user); r != nil && now.Before(r.until) && !t.isKnown(user, ak, now) {
			wait = max(wait, r.until.Sub(now))
		}
	}
	if wait <= 0 {
		return nil
	}
	if t.cfg.Throttled != nil {
		t.cfg.Throttled.Inc()
	}
	return &ThrottledError{RetryAfter: wait}
}

// Failed records a failed login of user ("" if unknown) from addr.
func (t *Throttle) Failed(user string, addr netip.Addr) {
	if t == nil {
		return
	}
	if t.cfg.Failures != nil {
		t.cfg.Failures.Inc()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.cfg.Now()
	ak := addrKey(addr)
	var blocked []string // the keys this failure blocks for the first time in their burst
	var delay time.Duration
	count := func(tb *table, key, what string) {
		r := tb.touch(key)
		if now.Sub(r.last) >= t.cfg.Window || now.Before(r.last) {
			r.failures, r.logged, r.until = 0, false, time.Time{} // a new burst
		}
		r.failures++
		r.last = now
		if r.failures < t.cfg.Limit {
			return
		}
		d := t.cfg.MaxDelay
		if n := r.failures - t.cfg.Limit; n < 32 {
			d = min(d, t.cfg.BaseDelay<<n)
		}
		r.until = now.Add(d)
		delay = max(delay, d)
		if !r.logged {
			r.logged = true
			blocked = append(blocked, what)
		}
	}
	count(&t.addrs, ak, "address")
	if user != "" {
		count(&t.users, user, "user")
	}
	if len(blocked) > 0 {
		t.cfg.Log.Warn("repeated failed logins: throttling", "user", user, "client", addr.String(),
			"blocked", blocked, "failures", t.cfg.Limit, "retryAfter", delay.String())
	}
}

// Succeeded records a successful password login of user from addr: the address's
// count is cleared, and the pair is known for KnownFor.
func (t *Throttle) Succeeded(user string, addr netip.Addr) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	ak := addrKey(addr)
	t.addrs.remove(ak)
	if user != "" {
		t.known.touch(user + "\x00" + ak).last = t.cfg.Now()
	}
}

// isKnown reports whether user logged in from the address ak within KnownFor.
// Called with t.mu held.
func (t *Throttle) isKnown(user, ak string, now time.Time) bool {
	r := t.known.get(user + "\x00" + ak)
	return r != nil && now.Sub(r.last) < t.cfg.KnownFor && !now.Before(r.last)
}

// addrKey is the throttling key of a client address: the address, or for IPv6 its
// /64, which one client usually holds whole.
func addrKey(a netip.Addr) string {
	if a.Is6() {
		p, err := a.Prefix(64)
		if err == nil {
			return p.String()
		}
	}
	return a.String()
}

// record is the state of one key.
type record struct {
	key      string
	failures int       // in the current burst
	last     time.Time // the burst's last failure; for known pairs, the last success
	until    time.Time // blocked before this
	logged   bool      // the burst's warning was written
}

// table holds at most max records, forgetting the least recently used.
type table struct {
	max   int
	items map[string]*list.Element // of *record
	order *list.List               // front: most recently used
}

func (tb *table) get(key string) *record {
	if e, ok := tb.items[key]; ok {
		return e.Value.(*record)
	}
	return nil
}

// touch returns key's record, created if missing, as the most recently used.
func (tb *table) touch(key string) *record {
	if e, ok := tb.items[key]; ok {
		tb.order.MoveToFront(e)
		return e.Value.(*record)
	}
	for tb.order.Len() >= tb.max {
		tb.remove(tb.order.Back().Value.(*record).key)
	}
	r := &record{key: key}
	tb.items[key] = tb.order.PushFront(r)
	return r
}

func (tb *table) remove(key string) {
	if e, ok := tb.items[key]; ok {
		tb.order.Remove(e)
		delete(tb.items, key)
	}
}

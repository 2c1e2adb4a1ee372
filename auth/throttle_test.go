package auth

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// testClock is the injectable clock of the throttle tests.
type testClock struct{ now time.Time }

func (c *testClock) Now() time.Time          { return c.now }
func (c *testClock) Advance(d time.Duration) { c.now = c.now.Add(d) }

type count int

func (c *count) Inc() { *c++ }

func newTestThrottle(cfg ThrottleConfig) (*Throttle, *testClock) {
	c := &testClock{now: testNow}
	cfg.Now = c.Now
	return NewThrottle(cfg), c
}

var (
	addrA = netip.MustParseAddr("198.51.100.1")
	addrB = netip.MustParseAddr("198.51.100.2")
)

// blockedFor returns how long Check refuses user from addr (0: allowed).
func blockedFor(t *testing.T, th *Throttle, user string, addr netip.Addr) time.Duration {
	t.Helper()
	err := th.Check(user, addr)
	if err == nil {
		return 0
	}
	te, ok := errors.AsType[*ThrottledError](err)
	if !ok || !errors.Is(err, ErrTooManyRequests) {
		t.Fatalf("Check error %v is not a *ThrottledError matching ErrTooManyRequests", err)
	}
	return te.RetryAfter
}

// TestThrottleAddress: the 5th failure from an address blocks it for 1s,
// each further one doubles the block up to a minute, a block ends by
// itself, and a quiet window ends the burst.
func TestThrottleAddress(t *testing.T) {
	th, clock := newTestThrottle(ThrottleConfig{})
	fail := func(i int) { th.Failed(fmt.Sprintf("user%d", i), addrA) } // other users each time: the address alone counts
	for i := range 4 {
		fail(i)
		if d := blockedFor(t, th, "someone", addrA); d != 0 {
			t.Fatalf("blocked for %v after %d failures", d, i+1)
		}
	}
	fail(4)
	if d := blockedFor(t, th, "someone", addrA); d != time.Second {
		t.Fatalf("after 5 failures: blocked for %v, want 1s", d)
	}
	if d := blockedFor(t, th, "someone", addrB); d != 0 {
		t.Errorf("another address blocked for %v", d)
	}
	clock.Advance(time.Second)
	if d := blockedFor(t, th, "someone", addrA); d != 0 {
		t.Fatalf("block did not lift after 1s: %v left", d)
	}
	want := []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, time.Minute, time.Minute}
	for i, w := range want {
		fail(5 + i)
		if d := blockedFor(t, th, "someone", addrA); d != w {
			t.Errorf("after %d failures: blocked for %v, want %v", 6+i, d, w)
		}
		clock.Advance(w - time.Millisecond)
		if d := blockedFor(t, th, "someone", addrA); d != time.Millisecond {
			t.Errorf("after %d failures, a millisecond before the end: blocked for %v", 6+i, d)
		}
		clock.Advance(time.Millisecond)
		if d := blockedFor(t, th, "someone", addrA); d != 0 {
			t.Errorf("after %d failures: block did not lift (%v left)", 6+i, d)
		}
	}
	// The burst ends after a quiet window: the next failure is the first.
	clock.Advance(DefaultThrottleWindow)
	fail(100)
	if d := blockedFor(t, th, "someone", addrA); d != 0 {
		t.Errorf("first failure of a new burst blocks for %v", d)
	}
}

// TestThrottleUser: failures for one user from many addresses block that
// user from everywhere but addresses it logged in from, and nobody else.
func TestThrottleUser(t *testing.T) {
	th, clock := newTestThrottle(ThrottleConfig{})
	home := netip.MustParseAddr("192.0.2.10")
	th.Succeeded("alice", home)
	for i := range 5 {
		th.Failed("alice", netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}))
	}
	if d := blockedFor(t, th, "alice", addrA); d != time.Second {
		t.Errorf("alice from a new address: blocked for %v, want 1s", d)
	}
	if d := blockedFor(t, th, "bob", netip.AddrFrom4([4]byte{203, 0, 113, 0})); d != 0 {
		t.Errorf("bob from an attacking address (1 failure): blocked for %v", d)
	}
	if d := blockedFor(t, th, "alice", home); d != 0 {
		t.Errorf("alice from the address she logged in from: blocked for %v", d)
	}
	// A known pair is forgotten after KnownFor.
	clock.Advance(DefaultThrottleKnownFor)
	for i := range 5 {
		th.Failed("alice", netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}))
	}
	if d := blockedFor(t, th, "alice", home); d == 0 {
		t.Error("alice still exempt at an address she last logged in from 30 days ago")
	}
	// Failures without a user name count for the address only.
	for range 5 {
		th.Failed("", addrB)
	}
	if d := blockedFor(t, th, "", addrB); d != time.Second {
		t.Errorf("refresh failures: address blocked for %v, want 1s", d)
	}
}

// TestThrottleSharedAddress: a correct password from an address where
// another user is being guessed waits at most the block (never more than a
// minute, however long the guessing goes on) and then gets in, which
// clears the address's count.
func TestThrottleSharedAddress(t *testing.T) {
	th, clock := newTestThrottle(ThrottleConfig{})
	// An attacker at addrA guesses bob's password as fast as it is let.
	for i := range 30 {
		if d := blockedFor(t, th, "bob", addrA); d != 0 {
			if d > DefaultThrottleMaxDelay {
				t.Fatalf("guess %d: blocked for %v, beyond the maximum", i, d)
			}
			clock.Advance(d)
		}
		th.Failed("bob", addrA)
	}
	d := blockedFor(t, th, "alice", addrA)
	if d == 0 || d > DefaultThrottleMaxDelay {
		t.Fatalf("alice at the attacked address: blocked for %v, want a block of at most a minute", d)
	}
	clock.Advance(d)
	if d := blockedFor(t, th, "alice", addrA); d != 0 {
		t.Fatalf("alice after the Retry-After: still blocked for %v", d)
	}
	th.Succeeded("alice", addrA)
	// Cleared: the next four failures at the address do not block it.
	for range 4 {
		th.Failed("mallory", addrA)
	}
	if d := blockedFor(t, th, "alice", addrA); d != 0 {
		t.Errorf("after alice's login and 4 failures: blocked for %v", d)
	}
	// alice's login cleared the address, not bob's burst: his next failure
	// from anywhere blocks him again at once.
	th.Failed("bob", addrB)
	if d := blockedFor(t, th, "bob", addrB); d != DefaultThrottleMaxDelay {
		t.Errorf("bob after one more failure: blocked for %v, want %v", d, DefaultThrottleMaxDelay)
	}
	if d := blockedFor(t, th, "alice", addrB); d != 0 {
		t.Errorf("alice at addrB (1 failure): blocked for %v", d)
	}
}

// TestThrottleIPv6: an IPv6 client is counted by its /64.
func TestThrottleIPv6(t *testing.T) {
	th, _ := newTestThrottle(ThrottleConfig{})
	for i := range 5 {
		th.Failed("", netip.MustParseAddr(fmt.Sprintf("2001:db8:0:1::%x", i+1)))
	}
	if d := blockedFor(t, th, "", netip.MustParseAddr("2001:db8:0:1:ffff::9")); d != time.Second {
		t.Errorf("same /64: blocked for %v, want 1s", d)
	}
	if d := blockedFor(t, th, "", netip.MustParseAddr("2001:db8:0:2::1")); d != 0 {
		t.Errorf("another /64: blocked for %v", d)
	}
}

// TestThrottleLogsOncePerBurst: one warning naming user and address when a
// burst first blocks, none for its further failures, one more for a new
// burst; every failure and refusal is counted.
func TestThrottleLogsOncePerBurst(t *testing.T) {
	var logs bytes.Buffer
	var failures, throttled count
	th, clock := newTestThrottle(ThrottleConfig{Log: slog.New(slog.NewTextHandler(&logs, nil)),
		Failures: &failures, Throttled: &throttled})
	for range 12 {
		if th.Check("bob", addrA) != nil {
			continue
		}
		th.Failed("bob", addrA)
	}
	if n := strings.Count(logs.String(), "msg="); n != 1 {
		t.Fatalf("%d log lines for one burst, want 1:\n%s", n, logs.String())
	}
	if w := `level=WARN msg="repeated failed logins: throttling" user=bob client=198.51.100.1 blocked="[address user]" failures=5 retryAfter=1s`; !strings.Contains(logs.String(), w) {
		t.Errorf("log lacks %s:\n%s", w, logs.String())
	}
	if failures != 5 || throttled != 7 {
		t.Errorf("counted %d failures and %d throttled, want 5 and 7", failures, throttled)
	}
	clock.Advance(DefaultThrottleWindow + DefaultThrottleMaxDelay)
	for range 5 {
		th.Failed("bob", addrA)
	}
	if n := strings.Count(logs.String(), "msg="); n != 2 {
		t.Errorf("%d log lines after a second burst, want 2:\n%s", n, logs.String())
	}
}

// TestThrottleBounded: spraying names and addresses keeps each table at
// MaxEntries, forgetting the least recently used keys first.
func TestThrottleBounded(t *testing.T) {
	th, _ := newTestThrottle(ThrottleConfig{MaxEntries: 8})
	for range 5 {
		th.Failed("bob", addrA) // bob and addrA blocked
	}
	for i := range 5 {
		th.Succeeded(fmt.Sprintf("u%d", i), addrB)
	}
	for i := range 1000 {
		th.Failed(fmt.Sprintf("spray%d", i), netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))
		if i%4 == 0 {
			th.Failed("bob", addrA) // recently used: kept
		}
	}
	for name, tb := range map[string]*table{"users": &th.users, "addresses": &th.addrs, "known": &th.known} {
		if n, m := tb.order.Len(), len(tb.items); n > 8 || m != n {
			t.Errorf("%s table: %d records, %d in the map; want at most 8", name, n, m)
		}
	}
	if blockedFor(t, th, "bob", addrB) == 0 || blockedFor(t, th, "x", addrA) == 0 {
		t.Error("the recently used blocked keys were forgotten")
	}
}

func TestThrottleNil(t *testing.T) {
	var th *Throttle
	th.Failed("bob", addrA)
	th.Succeeded("bob", addrA)
	if err := th.Check("bob", addrA); err != nil {
		t.Errorf("nil Throttle: %v", err)
	}
}

func TestThrottledError(t *testing.T) {
	for d, want := range map[time.Duration]int{time.Millisecond: 1, time.Second: 1, 1500 * time.Millisecond: 2, time.Minute: 60} {
		e := &ThrottledError{RetryAfter: d}
		if e.Seconds() != want {
			t.Errorf("Seconds(%v) = %d, want %d", d, e.Seconds(), want)
		}
	}
	if got := (&ThrottledError{RetryAfter: 2 * time.Second}).Error(); got != "auth: too many failed logins: retry in 2s" {
		t.Errorf("Error() = %q", got)
	}
}

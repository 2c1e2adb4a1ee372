package auth

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestBasicAuthorizerThrottle: in htpasswd mode, repeated wrong passwords
// for a user, or from a client address, make the authorizer refuse further
// logins with a *ThrottledError (429) before checking them, until the block
// lifts; the client address comes from X-Forwarded-For only behind a
// trusted proxy.
func TestBasicAuthorizerThrottle(t *testing.T) {
	h, err := LoadHtpasswd(writeHtpasswd(t, "alice:"+bcryptHash(t, "alice-pw", "$2y$")+"\nbob:"+bcryptHash(t, "bob-pw", "$2y$")+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	proxies, err := ParseTrustedProxies([]string{"10.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	var failures, throttled count
	th, clock := newTestThrottle(ThrottleConfig{Failures: &failures, Throttled: &throttled})
	a := NewBasicAuthorizer(BasicConfig{Users: func() *Htpasswd { return h }, Realm: "berth", Throttle: th, Proxies: proxies})
	need := Required(http.MethodGet, manifestRoute, "a/b")
	try := func(user, password, peer, xff string) error {
		t.Helper()
		r := httptest.NewRequest(http.MethodGet, "/v2/a/b/manifests/v1", nil)
		r.RemoteAddr = peer + ":4000"
		if xff != "" {
			r.Header.Set("X-Forwarded-For", xff)
		}
		if user != "" {
			r.SetBasicAuth(user, password)
		}
		_, err := a.Authorize(r, need)
		return err
	}
	isThrottled := func(err error, want time.Duration) bool {
		te, ok := errors.AsType[*ThrottledError](err)
		return ok && errors.Is(err, ErrTooManyRequests) && !errors.Is(err, ErrUnauthorized) && te.RetryAfter == want
	}

	// Per address: five wrong passwords from one client, then even the right one waits.
	for i := range 5 {
		if err := try(fmt.Sprintf("user%d", i), "guess", "198.51.100.1", ""); !errors.Is(err, errBadCredentials) {
			t.Fatalf("guess %d: %v", i+1, err)
		}
	}
	if err := try("alice", "alice-pw", "198.51.100.1", ""); !isThrottled(err, time.Second) {
		t.Fatalf("alice from the guessing address: %v, want a 1s *ThrottledError", err)
	}
	if err := try("alice", "alice-pw", "198.51.100.2", ""); err != nil {
		t.Errorf("alice from another address: %v", err)
	}
	if err := try("", "", "198.51.100.1", ""); !errors.Is(err, errNoCredentials) {
		t.Errorf("no credentials from the blocked address: %v, want the usual challenge", err)
	}
	clock.Advance(time.Second)
	if err := try("alice", "alice-pw", "198.51.100.1", ""); err != nil {
		t.Errorf("alice after the block: %v", err)
	}

	// Per user, from clients behind the trusted proxy.
	for i := range 5 {
		if err := try("bob", "guess", "10.0.0.1", fmt.Sprintf("192.0.2.99, 203.0.113.%d", i)); !errors.Is(err, errBadCredentials) {
			t.Fatalf("guess %d for bob: %v", i+1, err)
		}
	}
	if err := try("bob", "bob-pw", "10.0.0.1", "203.0.113.50"); !isThrottled(err, time.Second) {
		t.Errorf("bob from a new client: %v, want a 1s *ThrottledError", err)
	}
	if err := try("alice", "alice-pw", "10.0.0.1", "203.0.113.0"); err != nil {
		t.Errorf("alice from one of the guessing clients: %v", err)
	}
	// The proxy itself is not the client: its other clients are not blocked.
	if err := try("alice", "alice-pw", "10.0.0.1", "203.0.113.77"); err != nil {
		t.Errorf("alice from another client of the proxy: %v", err)
	}
	clock.Advance(time.Second)
	if err := try("bob", "bob-pw", "10.0.0.1", "203.0.113.50"); err != nil {
		t.Errorf("bob after the block: %v", err)
	}
	if failures != 10 || throttled != 2 {
		t.Errorf("counted %d failures, %d throttled; want 10 and 2", failures, throttled)
	}
}

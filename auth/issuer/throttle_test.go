package issuer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/auth"
)

type count int

func (c *count) Inc() { *c++ }

// throttledIssuer is an issuer with a throttle on a test clock, behind a
// trusted proxy at 10.0.0.1; bob's password is s3cret, alice's alice-pw.
type throttledIssuer struct {
	iss                 *Issuer
	now                 time.Time
	failures, throttled count
}

func newThrottledIssuer(t *testing.T) *throttledIssuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	users := htpasswdOf(t, "bob:"+hashOf(t, "s3cret"), "alice:"+hashOf(t, "alice-pw"))
	policy, err := auth.ParsePolicy([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	proxies, err := auth.ParseTrustedProxies([]string{"10.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	ti := &throttledIssuer{now: time.Unix(1_750_000_000, 0)}
	clock := func() time.Time { return ti.now }
	ti.iss, err = New(Config{Issuer: testIssuer, Service: testService, Key: key,
		Users:    func() *auth.Htpasswd { return users },
		Policy:   func() *auth.Policy { return policy },
		Now:      clock,
		Proxies:  proxies,
		Throttle: auth.NewThrottle(auth.ThrottleConfig{Now: clock, Failures: &ti.failures, Throttled: &ti.throttled}),
	})
	if err != nil {
		t.Fatal(err)
	}
	return ti
}

// response is what a token request got.
type response struct {
	code       int
	retryAfter string
	body       map[string]any
}

// send serves req as coming from client, through the trusted proxy when
// proxied (with a forged entry to the left that must be ignored).
func (ti *throttledIssuer) send(t *testing.T, req *http.Request, client string, proxied bool) response {
	t.Helper()
	req.RemoteAddr = client + ":4000"
	if proxied {
		req.RemoteAddr = "10.0.0.1:4000"
		req.Header.Set("X-Forwarded-For", "192.0.2.99, "+client)
	}
	rec := httptest.NewRecorder()
	ti.iss.ServeHTTP(rec, req)
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q: %v", rec.Body.String(), err)
	}
	return response{rec.Code, rec.Header().Get("Retry-After"), body}
}

func getToken(user, password string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/auth/token?service="+testService, nil)
	r.SetBasicAuth(user, password)
	return r
}

func postToken(form url.Values) *http.Request {
	form.Set("service", testService)
	form.Set("client_id", "test")
	r := httptest.NewRequest(http.MethodPost, "/auth/token", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return r
}

func postPassword(user, password string) *http.Request {
	return postToken(url.Values{"grant_type": {"password"}, "username": {user}, "password": {password}})
}

// TestTokenThrottleGet: in the GET flow (docker login), the 5th wrong
// password blocks the client: the next login, even right, gets 429 with
// Retry-After and a TOOMANYREQUESTS body, until the time is up.
func TestTokenThrottleGet(t *testing.T) {
	ti := newThrottledIssuer(t)
	const client = "198.51.100.7"
	for i := range 5 {
		if r := ti.send(t, getToken("bob", "wrong"), client, false); r.code != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %d", i+1, r.code)
		}
	}
	r := ti.send(t, getToken("bob", "s3cret"), client, false)
	if r.code != http.StatusTooManyRequests || r.retryAfter != "1" {
		t.Fatalf("after 5 failures: %d, Retry-After %q; want 429 and 1", r.code, r.retryAfter)
	}
	errs, _ := r.body["errors"].([]any)
	if len(errs) != 1 || errs[0].(map[string]any)["code"] != "TOOMANYREQUESTS" {
		t.Errorf("body %v, want a TOOMANYREQUESTS error", r.body)
	}
	if r := ti.send(t, getToken("alice", "alice-pw"), client, false); r.code != http.StatusTooManyRequests {
		t.Errorf("another user from the blocked address: %d, want 429", r.code)
	}
	// Anonymous token requests guess nothing: never throttled.
	if r := ti.send(t, httptest.NewRequest(http.MethodGet, "/auth/token?service="+testService, nil), client, false); r.code != http.StatusOK {
		t.Errorf("anonymous request from the blocked address: %d, want 200", r.code)
	}
	ti.now = ti.now.Add(time.Second)
	if r := ti.send(t, getToken("bob", "s3cret"), client, false); r.code != http.StatusOK {
		t.Errorf("after Retry-After: %d, want 200", r.code)
	}
	if ti.failures != 5 || ti.throttled != 2 {
		t.Errorf("counted %d failures, %d throttled; want 5 and 2", ti.failures, ti.throttled)
	}
}

// TestTokenThrottleUser: bob's password guessed from five addresses (behind
// the proxy) blocks bob from a sixth, not alice; the block lifts.
func TestTokenThrottleUser(t *testing.T) {
	ti := newThrottledIssuer(t)
	for i := range 5 {
		if r := ti.send(t, postPassword("bob", "wrong"), fmt.Sprintf("203.0.113.%d", i), true); r.code != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %d", i+1, r.code)
		}
	}
	r := ti.send(t, postPassword("bob", "s3cret"), "203.0.113.50", true)
	if r.code != http.StatusTooManyRequests || r.retryAfter != "1" || r.body["error"] != "temporarily_unavailable" {
		t.Fatalf("bob from a new address: %d, Retry-After %q, %v; want 429, 1, temporarily_unavailable", r.code, r.retryAfter, r.body)
	}
	if r := ti.send(t, postPassword("alice", "alice-pw"), "203.0.113.0", true); r.code != http.StatusOK {
		t.Errorf("alice from one of the attacking addresses: %d, want 200", r.code)
	}
	ti.now = ti.now.Add(time.Second)
	if r := ti.send(t, postPassword("bob", "s3cret"), "203.0.113.50", true); r.code != http.StatusOK {
		t.Errorf("bob after Retry-After: %d, want 200", r.code)
	}
}

// TestTokenThrottleAddress: one address guessing other users' passwords is
// blocked; bob's right password from there waits only the Retry-After, and
// then gets in; X-Forwarded-For from an untrusted peer changes nothing.
func TestTokenThrottleAddress(t *testing.T) {
	ti := newThrottledIssuer(t)
	const attacker = "198.51.100.66"
	for i := range 5 {
		req := postPassword(fmt.Sprintf("user%d", i), "guess")
		req.Header.Set("X-Forwarded-For", fmt.Sprintf("192.0.2.%d", i)) // not from a trusted proxy: ignored
		if r := ti.send(t, req, attacker, false); r.code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i+1, r.code)
		}
	}
	r := ti.send(t, postPassword("bob", "s3cret"), attacker, false)
	if r.code != http.StatusTooManyRequests {
		t.Fatalf("bob from the guessing address: %d, want 429", r.code)
	}
	if r := ti.send(t, postPassword("bob", "s3cret"), "198.51.100.67", false); r.code != http.StatusOK {
		t.Errorf("bob from another address: %d, want 200", r.code)
	}
	ti.now = ti.now.Add(time.Second)
	if r := ti.send(t, postPassword("bob", "s3cret"), attacker, false); r.code != http.StatusOK {
		t.Errorf("bob from the guessing address after Retry-After %s: %d, want 200", r.retryAfter, r.code)
	}
}

// TestTokenThrottleRefresh: failed refresh tokens count against the client
// address (no user is known), and throttle the refresh grant there.
func TestTokenThrottleRefresh(t *testing.T) {
	ti := newThrottledIssuer(t)
	const client = "198.51.100.8"
	refresh := func() response {
		return ti.send(t, postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"forged.token.value"}}), client, false)
	}
	for i := range 5 {
		if r := refresh(); r.code != http.StatusUnauthorized {
			t.Fatalf("forged refresh token %d: %d", i+1, r.code)
		}
	}
	if r := refresh(); r.code != http.StatusTooManyRequests || r.retryAfter != "1" {
		t.Errorf("after 5 forged refresh tokens: %d, Retry-After %q; want 429, 1", r.code, r.retryAfter)
	}
	if ti.failures != 5 {
		t.Errorf("counted %d failures, want 5", ti.failures)
	}
}

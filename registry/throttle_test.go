package registry_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/berth-registry/berth/auth"
	"github.com/berth-registry/berth/registry"
	"github.com/berth-registry/berth/storage/inmemory"
	"github.com/berth-registry/berth/storage/store"
)

// TestThrottledLogin: in htpasswd mode, a login the throttle refuses is
// answered 429 TOOMANYREQUESTS with Retry-After (no WWW-Authenticate, no
// body for HEAD); once the time is up the right password gets in.
func TestThrottledLogin(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("alice-pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(file, []byte("alice:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	users, err := auth.LoadHtpasswd(file)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_750_000_000, 0)
	th := auth.NewThrottle(auth.ThrottleConfig{Now: func() time.Time { return now }})
	a := auth.NewBasicAuthorizer(auth.BasicConfig{Users: func() *auth.Htpasswd { return users }, Realm: "berth", Throttle: th})
	// Its own registry, not the shared harness: only the authorizer matters here.
	reg, err := registry.New(registry.Options{Store: store.New(inmemory.New(), store.Options{}), Authorizer: a})
	if err != nil {
		t.Fatal(err)
	}
	type answer struct {
		status int
		header http.Header
		body   []byte
	}
	basic := func(method, user, password string) answer {
		t.Helper()
		r := httptest.NewRequest(method, "/v2/", nil)
		r.SetBasicAuth(user, password)
		w := httptest.NewRecorder()
		reg.ServeHTTP(w, r)
		return answer{status: w.Code, header: w.Header(), body: w.Body.Bytes()}
	}
	for range 5 {
		if r := basic("GET", "alice", "wrong"); r.status != http.StatusUnauthorized {
			t.Fatalf("wrong password: %d", r.status)
		}
	}
	r := basic("GET", "alice", "alice-pw")
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "1" || r.header.Get("WWW-Authenticate") != "" {
		t.Fatalf("after 5 failures: %d, Retry-After %q, WWW-Authenticate %q; want 429, 1 and none",
			r.status, r.header.Get("Retry-After"), r.header.Get("WWW-Authenticate"))
	}
	var env struct {
		Errors []struct{ Code, Message string }
	}
	if err := json.Unmarshal(r.body, &env); err != nil || len(env.Errors) != 1 || env.Errors[0].Code != "TOOMANYREQUESTS" {
		t.Errorf("body %s: want one TOOMANYREQUESTS error", r.body)
	}
	if r := basic("HEAD", "alice", "alice-pw"); r.status != http.StatusTooManyRequests || len(r.body) != 0 || r.header.Get("Retry-After") != "1" {
		t.Errorf("HEAD: %d, %d bytes, Retry-After %q", r.status, len(r.body), r.header.Get("Retry-After"))
	}
	now = now.Add(time.Second)
	if r := basic("GET", "alice", "alice-pw"); r.status != http.StatusOK {
		t.Errorf("after Retry-After: %d, want 200", r.status)
	}
}

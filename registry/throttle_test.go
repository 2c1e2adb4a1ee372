package registry_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/berth-registry/berth/auth"
	"github.com/berth-registry/berth/registry"
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
	e := newEnv(t, func(o *registry.Options) { o.Authorizer = a })
	basic := func(method, user, password string) resp {
		t.Helper()
		return e.do(req{method: method, path: "/v2/", header: map[string]string{
			"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))}})
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

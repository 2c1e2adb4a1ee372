package main

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/reload"
	"github.com/berth-registry/berth/registry"
	"github.com/berth-registry/berth/storage/inmemory"
	"github.com/berth-registry/berth/storage/store"
)

// authFiles are the htpasswd and policy files of a test server, written
// with distinct modification times (two writes within one tick of the file
// system's clock could otherwise look unchanged), and the test's clock.
type authFiles struct {
	t                *testing.T
	dir              string
	htpasswd, policy string
	mtime            time.Time
	clock            time.Time
	hashes           map[string]string // password -> bcrypt hash, to keep lines stable
}

func newAuthFiles(t *testing.T) *authFiles {
	dir := t.TempDir()
	return &authFiles{t: t, dir: dir, htpasswd: filepath.Join(dir, "htpasswd"), policy: filepath.Join(dir, "policy.yaml"),
		mtime: time.Now().Add(-time.Hour), clock: time.Now(), hashes: map[string]string{}}
}

func (f *authFiles) now() time.Time { return f.clock }

// tick moves the clock past the interval at which the files are looked at.
func (f *authFiles) tick() { f.clock = f.clock.Add(reload.DefaultInterval) }

func (f *authFiles) write(path, content string) {
	f.t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		f.t.Fatal(err)
	}
	f.mtime = f.mtime.Add(time.Minute)
	if err := os.Chtimes(path, f.mtime, f.mtime); err != nil {
		f.t.Fatal(err)
	}
}

// users writes the htpasswd file with "user:password" pairs.
func (f *authFiles) users(pairs ...string) {
	f.t.Helper()
	var b strings.Builder
	for _, p := range pairs {
		user, password, _ := strings.Cut(p, ":")
		h, ok := f.hashes[password]
		if !ok {
			hb, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
			if err != nil {
				f.t.Fatal(err)
			}
			h = string(hb)
			f.hashes[password] = h
		}
		b.WriteString(user + ":" + h + "\n")
	}
	f.write(f.htpasswd, b.String())
}

// newAuthServer wires auth from cfg as serve does, over an in-memory
// registry, with the files' clock; logs go to logs.
func newAuthServer(t *testing.T, cfg *config.Config, f *authFiles, logs *syncBuffer) http.Handler {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(logs, nil))
	metrics := prometheus.NewRegistry()
	authorizer, iss, err := newAuth(cfg, logger, metrics, f.now)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(registry.Options{Store: store.New(inmemory.New(), store.Options{Logger: logger}),
		Logger: logger, Authorizer: authorizer})
	if err != nil {
		t.Fatal(err)
	}
	return withIssuer(reg, iss)
}

func basicGet(t *testing.T, h http.Handler, path, user, password string) int {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, path, nil)
	r.SetBasicAuth(user, password)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code
}

// TestHtpasswdReload: in htpasswd mode a user added to the file can log in,
// and a removed one cannot, without a restart; a file that does not parse
// keeps the previous users and says why.
func TestHtpasswdReload(t *testing.T) {
	f := newAuthFiles(t)
	f.users("alice:alice-pw")
	cfg := config.Default()
	cfg.Auth.Mode, cfg.Auth.Htpasswd = config.AuthHtpasswd, f.htpasswd
	var logs syncBuffer
	h := newAuthServer(t, &cfg, f, &logs)
	status := func(user, password string) int { return basicGet(t, h, "/v2/", user, password) }

	if got := status("alice", "alice-pw"); got != http.StatusOK {
		t.Fatalf("alice: %d", got)
	}
	if got := status("bob", "bob-pw"); got != http.StatusUnauthorized {
		t.Fatalf("bob before being added: %d", got)
	}

	f.users("alice:alice-pw", "bob:bob-pw")
	f.tick()
	if got := status("bob", "bob-pw"); got != http.StatusOK {
		t.Errorf("bob added: %d, want 200", got)
	}
	if !strings.Contains(logs.String(), `msg="reloaded htpasswd file" file=`+f.htpasswd+" users=2") {
		t.Errorf("no info line for the reload:\n%s", logs.String())
	}

	f.users("bob:bob-pw")
	f.tick()
	if got := status("alice", "alice-pw"); got != http.StatusUnauthorized {
		t.Errorf("alice removed: %d, want 401", got)
	}
	if got := status("bob", "bob-pw"); got != http.StatusOK {
		t.Errorf("bob: %d, want 200", got)
	}

	// A broken file: bob still in, alice still out, and the reason logged.
	f.write(f.htpasswd, "alice:"+f.hashes["alice-pw"]+"\nbob\n")
	f.tick()
	if got := status("bob", "bob-pw"); got != http.StatusOK {
		t.Errorf("bob after a broken file: %d, want 200 (old users kept)", got)
	}
	if got := status("alice", "alice-pw"); got != http.StatusUnauthorized {
		t.Errorf("alice in a broken file: %d, want 401 (old users kept)", got)
	}
	if !strings.Contains(logs.String(), `level=ERROR msg="htpasswd file changed but does not load: keeping the current one" file=`+f.htpasswd) ||
		!strings.Contains(logs.String(), "line 2: not user:hash") {
		t.Errorf("no error line with the reason:\n%s", logs.String())
	}
}

const reloadPolicy = `
rules:
  - repositories: ["team-a/**"]
    users: [alice, bob]
    actions: [%s]
`

// TestIssuerReload: with the built-in issuer, users and policy are read
// again when their files change: a new user logs in, a new rule takes
// effect, a refresh token ends when its user changes password or leaves,
// and a broken file keeps the previous contents with a logged reason.
func TestIssuerReload(t *testing.T) {
	f := newAuthFiles(t)
	f.users("alice:alice-pw")
	f.write(f.policy, strings.Replace(reloadPolicy, "%s", "pull", 1))
	cfg := config.Default()
	cfg.Auth.Mode, cfg.Auth.Htpasswd = config.AuthToken, f.htpasswd
	cfg.Auth.Issuer.Policy, cfg.Auth.Issuer.Key = f.policy, filepath.Join(f.dir, "key.pem")
	var logs syncBuffer
	h := newAuthServer(t, &cfg, f, &logs)

	post := func(form url.Values) (int, map[string]any) {
		t.Helper()
		form.Set("service", cfg.Auth.Token.Service)
		form.Set("client_id", "test")
		r := httptest.NewRequest(http.MethodPost, tokenPath, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		var body map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatalf("token response %q: %v", w.Body.String(), err)
		}
		return w.Code, body
	}
	const scope = "repository:team-a/app:pull,push"
	login := func(user, password string) (int, string, string) {
		t.Helper()
		code, body := post(url.Values{"grant_type": {"password"}, "username": {user}, "password": {password},
			"access_type": {"offline"}, "scope": {scope}})
		refresh, _ := body["refresh_token"].(string)
		granted, _ := body["scope"].(string)
		return code, refresh, granted
	}
	refresh := func(token string) (int, string) {
		t.Helper()
		code, body := post(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}, "scope": {scope}})
		granted, _ := body["scope"].(string)
		return code, granted
	}

	code, aliceRefresh, granted := login("alice", "alice-pw")
	if code != http.StatusOK || aliceRefresh == "" || granted != "repository:team-a/app:pull" {
		t.Fatalf("alice: %d, refresh %t, scope %q", code, aliceRefresh != "", granted)
	}
	if code, _, _ := login("bob", "bob-pw"); code != http.StatusUnauthorized {
		t.Fatalf("bob before being added: %d", code)
	}

	// A new user and a new rule.
	f.users("alice:alice-pw", "bob:bob-pw")
	f.write(f.policy, strings.Replace(reloadPolicy, "%s", "pull, push", 1))
	f.tick()
	if code, _, granted := login("bob", "bob-pw"); code != http.StatusOK || granted != scope {
		t.Errorf("bob added: %d, scope %q; want 200 and %s", code, granted, scope)
	}
	if code, granted := refresh(aliceRefresh); code != http.StatusOK || granted != scope {
		t.Errorf("alice's refresh after the policy change: %d, scope %q; want 200 and %s", code, granted, scope)
	}
	for _, w := range []string{`msg="reloaded policy file" file=` + f.policy, `msg="reloaded htpasswd file" file=` + f.htpasswd} {
		if !strings.Contains(logs.String(), w) {
			t.Errorf("logs lack %s:\n%s", w, logs.String())
		}
	}

	// A broken policy keeps the rule in force.
	f.write(f.policy, "rules:\n  - repositories: [\"team-a/**\"]\n    users: [alice]\n    actions: [pull, fly]\n")
	f.tick()
	if code, _, granted := login("bob", "bob-pw"); code != http.StatusOK || granted != scope {
		t.Errorf("after a broken policy: %d, scope %q; want the previous policy's %s", code, granted, scope)
	}
	if !strings.Contains(logs.String(), `level=ERROR msg="policy file changed but does not load: keeping the current one" file=`+f.policy) ||
		!strings.Contains(logs.String(), `unknown action \"fly\"`) {
		t.Errorf("no error line with the reason:\n%s", logs.String())
	}

	// Alice changes password: her refresh token ends; the new password works.
	f.users("alice:alice-pw2", "bob:bob-pw")
	f.tick()
	if code, _ := refresh(aliceRefresh); code != http.StatusUnauthorized {
		t.Errorf("alice's refresh after a password change: %d, want 401", code)
	}
	code, aliceRefresh2, _ := login("alice", "alice-pw2")
	if code != http.StatusOK {
		t.Fatalf("alice's new password: %d", code)
	}
	if code, _ := refresh(aliceRefresh2); code != http.StatusOK {
		t.Errorf("alice's new refresh token: %d, want 200", code)
	}

	// Alice removed: her refresh token and password end.
	f.users("bob:bob-pw")
	f.tick()
	if code, _ := refresh(aliceRefresh2); code != http.StatusUnauthorized {
		t.Errorf("alice's refresh after her removal: %d, want 401", code)
	}
	if code, _, _ := login("alice", "alice-pw2"); code != http.StatusUnauthorized {
		t.Errorf("alice's password after her removal: %d, want 401", code)
	}

	// A broken htpasswd file keeps bob in and alice out.
	f.write(f.htpasswd, "alice:"+f.hashes["alice-pw2"]+"\nbob:"+f.hashes["bob-pw"]+"\nbob:"+f.hashes["bob-pw"]+"\n")
	f.tick()
	if code, _, _ := login("bob", "bob-pw"); code != http.StatusOK {
		t.Errorf("bob after a broken htpasswd file: %d, want 200", code)
	}
	if code, _, _ := login("alice", "alice-pw2"); code != http.StatusUnauthorized {
		t.Errorf("alice in a broken htpasswd file: %d, want 401", code)
	}
	if !strings.Contains(logs.String(), `level=ERROR msg="htpasswd file changed but does not load: keeping the current one"`) ||
		!strings.Contains(logs.String(), `user \"bob\" appears twice`) {
		t.Errorf("no error line with the reason:\n%s", logs.String())
	}
}

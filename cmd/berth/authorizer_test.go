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
// registry, with the files' clock; logs go to logs, metrics to metrics.
func newAuthServer(t *testing.T, cfg *config.Config, f *authFiles, logs *syncBuffer, metrics *prometheus.Registry) http.Handler {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(logs, nil))
	proxies, err := trustedProxies(cfg)
	if err != nil {
		t.Fatal(err)
	}
	authorizer, iss, err := newAuth(cfg, proxies, logger, metrics, f.now)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(registry.Options{Store: store.New(inmemory.New(), store.Options{Logger: logger}),
		Logger: logger, Authorizer: authorizer, Proxies: proxies})
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
	h := newAuthServer(t, &cfg, f, &logs, prometheus.NewRegistry())
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
	h := newAuthServer(t, &cfg, f, &logs, prometheus.NewRegistry())

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

// counterValue returns the value of the counter name{mode=mode}.
func counterValue(t *testing.T, metrics *prometheus.Registry, name, mode string) float64 {
	t.Helper()
	families, err := metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "mode" && l.GetValue() == mode {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{mode=%q}", name, mode)
	return 0
}

// TestLoginThrottleWired: both modes throttle failed logins by the client
// address that http.trustedProxies lets X-Forwarded-For name, count them in
// berth_auth_failed_logins_total and berth_auth_throttled_logins_total with
// the mode as label, and log the burst once.
func TestLoginThrottleWired(t *testing.T) {
	for _, mode := range []string{config.AuthHtpasswd, config.AuthToken} {
		t.Run(mode, func(t *testing.T) {
			f := newAuthFiles(t)
			f.users("alice:alice-pw")
			f.write(f.policy, strings.Replace(reloadPolicy, "%s", "pull", 1))
			cfg := config.Default()
			cfg.HTTP.TrustedProxies = []string{"10.0.0.0/8"}
			cfg.Auth.Mode, cfg.Auth.Htpasswd = mode, f.htpasswd
			cfg.Auth.Issuer.Policy, cfg.Auth.Issuer.Key = f.policy, filepath.Join(f.dir, "key.pem")
			var logs syncBuffer
			metrics := prometheus.NewRegistry()
			h := newAuthServer(t, &cfg, f, &logs, metrics)
			login := func(password, client string) *httptest.ResponseRecorder {
				t.Helper()
				r := httptest.NewRequest(http.MethodGet, "/v2/", nil)
				if mode == config.AuthToken {
					r = httptest.NewRequest(http.MethodGet, tokenPath+"?service="+cfg.Auth.Token.Service, nil)
				}
				r.SetBasicAuth("alice", password)
				r.RemoteAddr = "10.1.1.1:4000"
				r.Header.Set("X-Forwarded-For", client)
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				return w
			}
			for range 5 {
				if w := login("wrong", "203.0.113.5"); w.Code != http.StatusUnauthorized {
					t.Fatalf("wrong password: %d", w.Code)
				}
			}
			w := login("alice-pw", "203.0.113.5")
			if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "1" {
				t.Fatalf("after 5 failures: %d, Retry-After %q; want 429 and 1", w.Code, w.Header().Get("Retry-After"))
			}
			if w := login("alice-pw", "203.0.113.6"); w.Code != http.StatusTooManyRequests {
				t.Errorf("alice from another client: %d, want 429 (her name is blocked too)", w.Code)
			}
			if got := counterValue(t, metrics, "berth_auth_failed_logins_total", mode); got != 5 {
				t.Errorf("failed logins = %v, want 5", got)
			}
			if got := counterValue(t, metrics, "berth_auth_throttled_logins_total", mode); got != 2 {
				t.Errorf("throttled logins = %v, want 2", got)
			}
			if n := strings.Count(logs.String(), `msg="repeated failed logins: throttling" user=alice client=203.0.113.5`); n != 1 {
				t.Errorf("%d warnings for the burst, want 1:\n%s", n, logs.String())
			}
			f.clock = f.clock.Add(time.Second)
			if w := login("alice-pw", "203.0.113.5"); w.Code != http.StatusOK {
				t.Errorf("after Retry-After: %d, want 200", w.Code)
			}
		})
	}
}

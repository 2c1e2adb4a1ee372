package issuer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/crypto/bcrypt"

	"github.com/berth-registry/berth/auth"
)

const (
	testIssuer  = "berth-test"
	testService = "registry.test"
)

const testPolicy = `
groups:
  team-a: [bob]
rules:
  - repositories: ["team-a/**"]
    groups: [team-a]
    actions: [pull, push]
  - repositories: ["shared/*"]
    users: [bob]
    actions: [pull]
  - repositories: ["public/*"]
    anonymous: true
    authenticated: true
    actions: [pull]
`

type fixture struct {
	iss    *Issuer
	key    *ecdsa.PrivateKey
	failed prometheus.Counter
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	htpath := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpath, []byte("bob:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	users, err := auth.LoadHtpasswd(htpath)
	if err != nil {
		t.Fatal(err)
	}
	policy, err := auth.ParsePolicy([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	failed := prometheus.NewCounter(prometheus.CounterOpts{Name: "failed_logins_total"})
	iss, err := New(Config{
		Issuer: testIssuer, Service: testService, Key: key,
		Users: func() *auth.Htpasswd { return users }, Policy: func() *auth.Policy { return policy },
		Throttle: auth.NewThrottle(auth.ThrottleConfig{Failures: failed}),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{iss: iss, key: key, failed: failed}
}

func (f *fixture) get(t *testing.T, query string, user, password string) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/auth/token?"+query, nil)
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	return f.do(t, req)
}

func (f *fixture) post(t *testing.T, form url.Values) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/auth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return f.do(t, req)
}

func (f *fixture) do(t *testing.T, req *http.Request) (int, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	f.iss.ServeHTTP(rec, req)
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q: %v", rec.Body.String(), err)
	}
	return rec.Code, body
}

// verify parses an access token the way a registry must: ES256 pinned, issuer and audience.
func (f *fixture) verify(t *testing.T, token string) (*auth.Claims, *jwt.Token) {
	t.Helper()
	var c auth.Claims
	tok, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return &f.key.PublicKey, nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer(testIssuer),
		jwt.WithAudience(testService), jwt.WithExpirationRequired())
	if err != nil {
		t.Fatalf("verifying token: %v", err)
	}
	return &c, tok
}

func TestGetFlow(t *testing.T) {
	f := newFixture(t)
	svc := "service=" + testService
	for _, tc := range []struct {
		name, query, user, password string
		want                        []auth.Access
	}{
		{"lacks scope", svc + "&scope=repository:team-b/app:pull", "bob", "s3cret", []auth.Access{}},
		{"partial", svc + "&scope=repository:shared/x:pull,push", "bob", "s3cret",
			[]auth.Access{{Type: "repository", Name: "shared/x", Actions: []string{"pull"}}}},
		{"full", svc + "&scope=repository:team-a/app:push,pull&account=bob", "bob", "s3cret",
			[]auth.Access{{Type: "repository", Name: "team-a/app", Actions: []string{"push", "pull"}}}},
		{"repeated", svc + "&scope=repository:team-a/app:pull&scope=repository:public/x:pull,push&scope=repository:team-b/y:pull", "bob", "s3cret",
			[]auth.Access{{Type: "repository", Name: "team-a/app", Actions: []string{"pull"}},
				{Type: "repository", Name: "public/x", Actions: []string{"pull"}}}},
		{"anonymous private", svc + "&scope=repository:team-a/app:pull", "", "", []auth.Access{}},
		{"anonymous public", svc + "&scope=repository:public/x:pull,push", "", "",
			[]auth.Access{{Type: "repository", Name: "public/x", Actions: []string{"pull"}}}},
		{"no scope", svc, "bob", "s3cret", []auth.Access{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := f.get(t, tc.query, tc.user, tc.password)
			if code != http.StatusOK {
				t.Fatalf("status %d, body %v", code, body)
			}
			if body["token"] != body["access_token"] {
				t.Error("token and access_token differ")
			}
			if n, _ := body["expires_in"].(float64); n < 60 {
				t.Errorf("expires_in = %v, want >= 60", body["expires_in"])
			}
			if _, ok := body["refresh_token"]; ok {
				t.Error("refresh_token without offline_token")
			}
			if _, err := time.Parse(time.RFC3339, body["issued_at"].(string)); err != nil {
				t.Errorf("issued_at: %v", err)
			}
			c, tok := f.verify(t, body["token"].(string))
			if c.Subject != tc.user || c.ID == "" || c.IssuedAt == nil || c.NotBefore == nil {
				t.Errorf("claims %+v", c.RegisteredClaims)
			}
			kid, _ := auth.Thumbprint(&f.key.PublicKey)
			if tok.Header["kid"] != kid {
				t.Errorf("kid = %v, want %s", tok.Header["kid"], kid)
			}
			if !accessEqual(c.Access, tc.want) {
				t.Errorf("access = %+v, want %+v", c.Access, tc.want)
			}
		})
	}
}

func accessEqual(a, b []auth.Access) bool {
	return slices.EqualFunc(a, b, func(x, y auth.Access) bool {
		return x.Type == y.Type && x.Name == y.Name && slices.Equal(x.Actions, y.Actions)
	})
}

func TestRejections(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name, query, user, password string
		status                      int
	}{
		{"wrong password", "service=" + testService, "bob", "nope", http.StatusUnauthorized},
		{"unknown user", "service=" + testService, "mallory", "s3cret", http.StatusUnauthorized},
		{"other service", "service=elsewhere", "bob", "s3cret", http.StatusBadRequest},
		{"bad scope", "service=" + testService + "&scope=nonsense", "bob", "s3cret", http.StatusBadRequest},
		{"account mismatch", "service=" + testService + "&account=alice", "bob", "s3cret", http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := f.get(t, tc.query, tc.user, tc.password)
			if code != tc.status {
				t.Fatalf("status %d, want %d (%v)", code, tc.status, body)
			}
			if _, ok := body["errors"]; !ok {
				t.Errorf("no Docker-style errors in %v", body)
			}
			if strings.Contains(bodyString(body), tc.password) && tc.password != "" {
				t.Error("error body contains the password")
			}
		})
	}
	var m dto.Metric
	if err := f.failed.Write(&m); err != nil {
		t.Fatal(err)
	}
	if n := m.GetCounter().GetValue(); n != 2 {
		t.Errorf("failed logins = %v, want 2", n)
	}
	code, body := f.post(t, url.Values{"grant_type": {"password"}, "username": {"bob"}, "password": {"nope"},
		"service": {testService}, "client_id": {"test"}})
	if code != http.StatusUnauthorized || body["error"] != "invalid_grant" {
		t.Errorf("POST wrong password: %d %v", code, body)
	}
}

func bodyString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestPostAndRefresh(t *testing.T) {
	f := newFixture(t)
	code, body := f.post(t, url.Values{
		"grant_type": {"password"}, "username": {"bob"}, "password": {"s3cret"},
		"service": {testService}, "client_id": {"test"}, "access_type": {"offline"},
		"scope": {"repository:team-a/app:pull,push repository:team-b/x:pull"},
	})
	if code != http.StatusOK {
		t.Fatalf("password grant: %d %v", code, body)
	}
	c, _ := f.verify(t, body["access_token"].(string))
	want := []auth.Access{{Type: "repository", Name: "team-a/app", Actions: []string{"pull", "push"}}}
	if !accessEqual(c.Access, want) || body["scope"] != "repository:team-a/app:pull,push" {
		t.Errorf("access %+v scope %v", c.Access, body["scope"])
	}
	refresh, _ := body["refresh_token"].(string)
	if refresh == "" {
		t.Fatal("no refresh token for access_type=offline")
	}

	// A refresh token presented as an access token: no access, not for the service.
	var rc auth.Claims
	if _, err := jwt.ParseWithClaims(refresh, &rc, func(*jwt.Token) (any, error) { return &f.key.PublicKey, nil },
		jwt.WithValidMethods([]string{"ES256"})); err != nil {
		t.Fatal(err)
	}
	if len(rc.Access) != 0 || slices.Contains(rc.Audience, testService) || rc.Subject != "bob" {
		t.Errorf("refresh claims %+v", rc)
	}
	v, err := auth.NewVerifier(auth.VerifierConfig{Issuer: testIssuer, Audience: testService,
		Keys: []crypto.PublicKey{&f.key.PublicKey}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(refresh); err == nil {
		t.Error("the verifier accepted a refresh token as an access token")
	}
	if _, err := v.Verify(body["access_token"].(string)); err != nil {
		t.Errorf("the verifier refused the access token: %v", err)
	}

	refreshForm := func(service, token string) url.Values {
		return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}, "service": {service},
			"client_id": {"test"}, "scope": {"repository:team-a/app:pull"}}
	}
	code, body = f.post(t, refreshForm(testService, refresh))
	if code != http.StatusOK {
		t.Fatalf("refresh grant: %d %v", code, body)
	}
	c, _ = f.verify(t, body["access_token"].(string))
	if c.Subject != "bob" || len(c.Access) != 1 {
		t.Errorf("refreshed claims %+v", c)
	}
	if code, body = f.post(t, refreshForm("elsewhere", refresh)); code != http.StatusBadRequest && code != http.StatusUnauthorized {
		t.Errorf("refresh with another service: %d %v", code, body)
	}
	// An access token is not a refresh token.
	if code, body = f.post(t, refreshForm(testService, c.ID)); code != http.StatusUnauthorized {
		t.Errorf("garbage refresh token: %d %v", code, body)
	}
	code, body = f.get(t, "service="+testService, "bob", "s3cret")
	if code != http.StatusOK {
		t.Fatal(code)
	}
	if code, body = f.post(t, refreshForm(testService, body["token"].(string))); code != http.StatusUnauthorized {
		t.Errorf("access token used as refresh token: %d %v", code, body)
	}

	// GET flow with offline_token.
	code, body = f.get(t, "service="+testService+"&offline_token=true", "bob", "s3cret")
	if code != http.StatusOK || body["refresh_token"] == nil {
		t.Errorf("offline_token: %d %v", code, body)
	}
	// Anonymous clients get no refresh token.
	if code, body = f.get(t, "service="+testService+"&offline_token=true", "", ""); code != http.StatusOK || body["refresh_token"] != nil {
		t.Errorf("anonymous offline_token: %d %v", code, body)
	}
}

func TestJWKSHandler(t *testing.T) {
	f := newFixture(t)
	rec := httptest.NewRecorder()
	f.iss.JWKSHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/auth/jwks.json", nil))
	b, _ := io.ReadAll(rec.Body)
	keys, err := auth.ParseJWKS(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || !f.key.PublicKey.Equal(keys[0]) {
		t.Errorf("JWKS keys %v", keys)
	}
}

func TestNewRejects(t *testing.T) {
	f := newFixture(t)
	base := f.iss.cfg
	for name, mod := range map[string]func(*Config){
		"short ttl":  func(c *Config) { c.TTL = 30 * time.Second },
		"no key":     func(c *Config) { c.Key = nil },
		"no service": func(c *Config) { c.Service = "" },
		"no policy":  func(c *Config) { c.Policy = nil },
	} {
		c := base
		mod(&c)
		if _, err := New(c); err == nil {
			t.Errorf("%s: New accepted the config", name)
		}
	}
}

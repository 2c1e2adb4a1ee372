package registry_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/berth-registry/berth/auth"
	"github.com/berth-registry/berth/registry"
	"github.com/berth-registry/berth/storage/store"
)

const (
	testRealm   = "https://auth.example/token"
	testService = "berth"
	testIssuer  = "berth-test"
)

// tokens signs Bearer tokens that the registry's authorizer trusts.
type tokens struct {
	t   *testing.T
	key *ecdsa.PrivateKey
	kid string
}

// withTokenAuth turns on token auth with a fresh key; the returned tokens sign for it.
func withTokenAuth(t *testing.T) (envOption, *tokens) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kid, err := auth.Thumbprint(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(auth.VerifierConfig{Issuer: testIssuer, Audience: testService, Keys: []crypto.PublicKey{&key.PublicKey}})
	if err != nil {
		t.Fatal(err)
	}
	a := auth.NewTokenAuthorizer(v, testRealm, testService)
	return func(o *registry.Options, _ *store.Options) { o.Authorizer = a }, &tokens{t: t, key: key, kid: kid}
}

// token returns a token for subject granting scopes ("repository:a/b:pull,push").
func (tk *tokens) token(subject string, scopes ...string) string {
	tk.t.Helper()
	var access []auth.Access
	for _, s := range scopes {
		a, err := auth.ParseScope(s)
		if err != nil {
			tk.t.Fatal(err)
		}
		access = append(access, a)
	}
	now := time.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, &auth.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: testIssuer, Subject: subject, Audience: jwt.ClaimStrings{testService},
			ExpiresAt: jwt.NewNumericDate(now.Add(5 * time.Minute)),
			NotBefore: jwt.NewNumericDate(now), IssuedAt: jwt.NewNumericDate(now),
		},
		Access: access,
	})
	tok.Header["kid"] = tk.kid
	s, err := tok.SignedString(tk.key)
	if err != nil {
		tk.t.Fatal(err)
	}
	return s
}

// as sends r with token as its Bearer credentials.
func (e *env) as(token string, r req) resp {
	e.t.Helper()
	h := map[string]string{"Authorization": "Bearer " + token}
	for k, v := range r.header {
		h[k] = v
	}
	r.header = h
	return e.do(r)
}

// wantChallenge checks a 401 with the WWW-Authenticate header want: the
// code is DENIED when the challenge says insufficient_scope (the test
// tokens all name a user), else UNAUTHORIZED.
func wantChallenge(t *testing.T, r resp, want string) {
	t.Helper()
	code := "UNAUTHORIZED"
	if strings.Contains(want, `error="insufficient_scope"`) {
		code = "DENIED"
	}
	wantError(t, r, http.StatusUnauthorized, code)
	if got := r.header.Get("WWW-Authenticate"); got != want {
		t.Errorf("WWW-Authenticate = %q, want %q", got, want)
	}
}

func TestAuthChallenges(t *testing.T) {
	opt, tk := withTokenAuth(t)
	e := newEnv(t, opt, withMetrics)

	wantChallenge(t, e.get("/v2/"), `Bearer realm="https://auth.example/token",service="berth"`)
	wantChallenge(t, e.get("/v2/a/b/manifests/latest"),
		`Bearer realm="https://auth.example/token",service="berth",scope="repository:a/b:pull"`)
	wantChallenge(t, e.as("not-a-token", req{method: "GET", path: "/v2/"}),
		`Bearer realm="https://auth.example/token",service="berth",error="invalid_token"`)
	// Any valid token opens /v2/, which is where clients start.
	wantStatus(t, e.as(tk.token("alice"), req{method: "GET", path: "/v2/"}), http.StatusOK)

	// Health, readiness and metrics are open.
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		wantStatus(t, e.get(p), http.StatusOK)
	}
}

func TestAuthScopes(t *testing.T) {
	opt, tk := withTokenAuth(t)
	e := newEnv(t, opt, withDeletes, withAccessLog)
	b := newBlob([]byte("layer"))
	upload := req{method: "POST", path: "/v2/a/b/blobs/uploads/?digest=" + b.digest.String(), body: bytes.NewReader(b.data)}

	pull := tk.token("alice", "repository:a/b:pull")
	wantChallenge(t, e.as(pull, upload),
		`Bearer realm="https://auth.example/token",service="berth",scope="repository:a/b:pull,push",error="insufficient_scope"`)

	pushToken := tk.token("alice", "repository:a/b:pull,push")
	upload.body = bytes.NewReader(b.data)
	wantStatus(t, e.as(pushToken, upload), http.StatusCreated)
	wantStatus(t, e.as(pull, req{method: "GET", path: "/v2/a/b/blobs/" + b.digest.String()}), http.StatusOK)
	// A grant on a/b covers neither a/bc nor a/b/c.
	wantChallenge(t, e.as(pull, req{method: "GET", path: "/v2/a/bc/blobs/" + b.digest.String()}),
		`Bearer realm="https://auth.example/token",service="berth",scope="repository:a/bc:pull",error="insufficient_scope"`)

	del := req{method: "DELETE", path: "/v2/a/b/blobs/" + b.digest.String()}
	wantChallenge(t, e.as(pushToken, del),
		`Bearer realm="https://auth.example/token",service="berth",scope="repository:a/b:delete",error="insufficient_scope"`)
	wantStatus(t, e.as(tk.token("alice", "repository:a/b:delete"), del), http.StatusAccepted)

	// The catalog needs its own grant.
	wantChallenge(t, e.as(pushToken, req{method: "GET", path: "/v2/_catalog"}),
		`Bearer realm="https://auth.example/token",service="berth",scope="registry:catalog:*",error="insufficient_scope"`)
	wantStatus(t, e.as(tk.token("admin", "registry:catalog:*"), req{method: "GET", path: "/v2/_catalog"}), http.StatusOK)

	// The access log names the subject, never the token.
	logs := e.logs.String()
	if !strings.Contains(logs, `"subject":"alice"`) || !strings.Contains(logs, `"subject":"admin"`) {
		t.Errorf("access log lacks the subjects:\n%s", logs)
	}
	if strings.Contains(logs, pushToken) || strings.Contains(logs, pull) {
		t.Errorf("access log holds a token:\n%s", logs)
	}
}

func TestAuthMount(t *testing.T) {
	opt, tk := withTokenAuth(t)
	e := newEnv(t, opt)
	b := newBlob([]byte("secret layer"))
	r := e.as(tk.token("owner", "repository:private/app:pull,push"),
		req{method: "POST", path: "/v2/private/app/blobs/uploads/?digest=" + b.digest.String(), body: bytes.NewReader(b.data)})
	wantStatus(t, r, http.StatusCreated)

	mallory := tk.token("mallory", "repository:mine/app:pull,push")
	for _, path := range []string{
		"/v2/mine/app/blobs/uploads/?mount=" + b.digest.String() + "&from=private/app", // from a repository not granted
		"/v2/mine/app/blobs/uploads/?mount=" + b.digest.String(),                       // automatic cross-mount: off with auth
	} {
		r := e.as(mallory, req{method: "POST", path: path})
		wantStatus(t, r, http.StatusAccepted)
		if loc := r.header.Get("Location"); !strings.Contains(loc, "/v2/mine/app/blobs/uploads/") {
			t.Errorf("%s: Location %q is not a new upload", path, loc)
		}
		wantError(t, e.as(mallory, req{method: "GET", path: "/v2/mine/app/blobs/" + b.digest.String()}),
			http.StatusNotFound, "BLOB_UNKNOWN")
	}

	// Refused for want of a token, the challenge asks for the source too,
	// so that a client fetching a token for it can mount; a mount without
	// from asks for nothing more.
	wantChallenge(t, e.do(req{method: "POST", path: "/v2/mine/app/blobs/uploads/?mount=" + b.digest.String() + "&from=private/app"}),
		`Bearer realm="https://auth.example/token",service="berth",scope="repository:mine/app:pull,push repository:private/app:pull"`)
	wantChallenge(t, e.do(req{method: "POST", path: "/v2/mine/app/blobs/uploads/?mount=" + b.digest.String()}),
		`Bearer realm="https://auth.example/token",service="berth",scope="repository:mine/app:pull,push"`)

	// With pull on the source, the mount happens.
	both := tk.token("bob", "repository:mine/app:pull,push", "repository:private/app:pull")
	wantStatus(t, e.as(both, req{method: "POST",
		path: "/v2/mine/app/blobs/uploads/?mount=" + b.digest.String() + "&from=private/app"}), http.StatusCreated)
	wantStatus(t, e.as(both, req{method: "GET", path: "/v2/mine/app/blobs/" + b.digest.String()}), http.StatusOK)
}

// TestAuthRefusalsSayWhy: a refused request tells the person what to do:
// an anonymous one to log in for what it asked, a known user who lacks the
// access who was refused what (DENIED, still a 401 insufficient_scope
// challenge for the token flow), and the access log and a warning name
// that user and the refused scope.
func TestAuthRefusalsSayWhy(t *testing.T) {
	opt, tk := withTokenAuth(t)
	e := newEnv(t, opt, withAccessLog)
	message := func(r resp) string {
		t.Helper()
		var env struct {
			Errors []struct{ Code, Message string } `json:"errors"`
		}
		if err := json.Unmarshal(r.body, &env); err != nil || len(env.Errors) != 1 {
			t.Fatalf("error body %s: %v", r.body, err)
		}
		return env.Errors[0].Message
	}
	b := newBlob([]byte("layer"))
	upload := req{method: "POST", path: "/v2/team/app/blobs/uploads/?digest=" + b.digest.String(), body: bytes.NewReader(b.data)}

	r := e.do(upload)
	wantError(t, r, http.StatusUnauthorized, "UNAUTHORIZED")
	if got, want := message(r), `log in to pull from and push to repository "team/app"`; got != want {
		t.Errorf("anonymous push: %q, want %q", got, want)
	}
	r = e.as("not-a-token", req{method: "GET", path: "/v2/team/app/tags/list"})
	wantError(t, r, http.StatusUnauthorized, "UNAUTHORIZED")
	if got := message(r); !strings.Contains(got, "log in again") {
		t.Errorf("bad token: %q does not say to log in again", got)
	}

	upload.body = bytes.NewReader(b.data)
	r = e.as(tk.token("alice", "repository:team/app:pull"), upload)
	wantChallenge(t, r, `Bearer realm="https://auth.example/token",service="berth",scope="repository:team/app:pull,push",error="insufficient_scope"`)
	if got, want := message(r), `user "alice" may not push to repository "team/app"`; got != want {
		t.Errorf("push without the grant: %q, want %q", got, want)
	}
	r = e.as(tk.token("bob", "repository:team/app:pull"), req{method: "DELETE", path: "/v2/team/app/manifests/latest"})
	if got, want := message(r), `user "bob" may not delete from repository "team/app"`; got != want {
		t.Errorf("delete without the grant: %q, want %q", got, want)
	}

	var denied, logged bool
	for line := range strings.Lines(e.logs.String()) {
		var l map[string]any
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		switch {
		case l["msg"] == "access denied" && l["subject"] == "alice" && l["refused"] == "repository:team/app:push" && l["level"] == "WARN":
			denied = true
		case l["msg"] == "request" && l["subject"] == "alice" && l["status"] == float64(401) && l["method"] == "POST":
			logged = true
		}
	}
	if !denied || !logged {
		t.Errorf("warning naming alice and push: %v; access-log line with subject alice: %v\n%s", denied, logged, e.logs.String())
	}
}

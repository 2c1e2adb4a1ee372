package auth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const testRealm = "https://h/auth/token"

const manifestRoute = "/v2/{name}/manifests/{reference}"

func requestWith(authorization string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/v2/", nil)
	if authorization != "" {
		r.Header.Set("Authorization", authorization)
	}
	return r
}

func TestTokenAuthorizer(t *testing.T) {
	k := verifyKeysOnce()
	esKid := thumb(t, &k.es.PublicKey)
	a := NewTokenAuthorizer(newTestVerifier(t, nil, &k.es.PublicKey), testRealm, testService)
	token := func(access ...Access) string {
		return "Bearer " + sign(t, jwt.SigningMethodES256, k.es, map[string]any{"kid": esKid}, baseClaims(access...))
	}
	ab := func(actions ...string) Access { return Access{TypeRepository, "a/b", actions} }
	expired := baseClaims(ab("*"))
	expired.ExpiresAt = jwt.NewNumericDate(testNow.Add(-2 * time.Minute))
	expiredToken := "Bearer " + sign(t, jwt.SigningMethodES256, k.es, map[string]any{"kid": esKid}, expired)
	huge := "Bearer " + strings.Repeat("A", 8<<20)

	const hdr = `Bearer realm="https://h/auth/token",service="berth"`
	for _, tc := range []struct {
		name       string
		auth       string
		need       []Access
		code       string
		header     string
		cause      error // errors.Is target, when rejected
		wantAccess bool  // accepted
	}{
		{"no token", "", Required("GET", manifestRoute, "a/b"), "",
			hdr + `,scope="repository:a/b:pull"`, errNoCredentials, false},
		{"basic credentials to a token registry", "Basic YWxpY2U6c2VjcmV0", Required("GET", manifestRoute, "a/b"), "",
			hdr + `,scope="repository:a/b:pull"`, errNoCredentials, false},
		{"pull-only token pushing", token(ab("pull")), Required("PUT", manifestRoute, "a/b"), ErrorInsufficientScope,
			hdr + `,scope="repository:a/b:pull,push",error="insufficient_scope"`, errInsufficientScope, false},
		{"a/b token on a/b/c", token(ab("*")), Required("GET", manifestRoute, "a/b/c"), ErrorInsufficientScope,
			hdr + `,scope="repository:a/b/c:pull",error="insufficient_scope"`, errInsufficientScope, false},
		{"a/b token on a/bc", token(ab("*")), Required("GET", manifestRoute, "a/bc"), ErrorInsufficientScope,
			hdr + `,scope="repository:a/bc:pull",error="insufficient_scope"`, errInsufficientScope, false},
		{"DELETE with pull,push", token(ab("pull", "push")), Required("DELETE", manifestRoute, "a/b"), ErrorInsufficientScope,
			hdr + `,scope="repository:a/b:delete",error="insufficient_scope"`, errInsufficientScope, false},
		{"catalog without the grant", token(ab("*")), Required("GET", "/v2/_catalog", ""), ErrorInsufficientScope,
			hdr + `,scope="registry:catalog:*",error="insufficient_scope"`, errInsufficientScope, false},
		{"expired token", expiredToken, Required("GET", manifestRoute, "a/b"), ErrorInvalidToken,
			hdr + `,scope="repository:a/b:pull",error="invalid_token"`, jwt.ErrTokenExpired, false},
		{"garbage token", "Bearer abc.def.ghi", Required("GET", manifestRoute, "a/b"), ErrorInvalidToken,
			hdr + `,scope="repository:a/b:pull",error="invalid_token"`, ErrInvalidToken, false},
		{"empty bearer", "Bearer ", nil, ErrorInvalidToken, hdr + `,error="invalid_token"`, ErrInvalidToken, false},
		{"8 MiB Authorization header", huge, Required("GET", manifestRoute, "a/b"), ErrorInvalidToken,
			hdr + `,scope="repository:a/b:pull",error="invalid_token"`, errHeaderTooLarge, false},
		{"push with pull,push", token(ab("pull", "push")), Required("PUT", manifestRoute, "a/b"), "", "", nil, true},
		{"delete with *", token(ab("*")), Required("DELETE", manifestRoute, "a/b"), "", "", nil, true},
		{"catalog", token(Access{TypeRegistry, "catalog", []string{"*"}}), Required("GET", "/v2/_catalog", ""), "", "", nil, true},
		{"base route, any valid token", token(), Required("GET", "/v2/", ""), "", "", nil, true},
		{"base route, no token", "", Required("GET", "/v2/", ""), "", hdr, errNoCredentials, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := a.Authorize(requestWith(tc.auth), tc.need)
			if tc.wantAccess {
				if err != nil {
					t.Fatalf("Authorize: %v", err)
				}
				if id.Subject != "alice" {
					t.Errorf("subject %q", id.Subject)
				}
				return
			}
			var c *Challenge
			if !errors.As(err, &c) {
				t.Fatalf("Authorize error = %v, want a *Challenge", err)
			}
			if id != nil {
				t.Error("identity returned with a challenge")
			}
			if c.Status != http.StatusUnauthorized || !errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrDenied) {
				t.Errorf("status %d, want 401 UNAUTHORIZED", c.Status)
			}
			if c.Code != tc.code {
				t.Errorf("code %q, want %q", c.Code, tc.code)
			}
			if got := c.Header(); got != tc.header {
				t.Errorf("header\n %s\nwant\n %s", got, tc.header)
			}
			if !errors.Is(err, tc.cause) {
				t.Errorf("error %v does not wrap %v", err, tc.cause)
			}
			if secret := strings.TrimPrefix(tc.auth, "Bearer "); len(secret) > 8 && strings.Contains(err.Error(), secret) {
				t.Error("error contains the token")
			}
			if len(err.Error()) > 1024 {
				t.Errorf("error of %d bytes", len(err.Error()))
			}
		})
	}
}

func TestTokenIdentityMountSource(t *testing.T) {
	k := verifyKeysOnce()
	a := NewTokenAuthorizer(newTestVerifier(t, nil, &k.es.PublicKey), testRealm, testService)
	tok := sign(t, jwt.SigningMethodES256, k.es, map[string]any{"kid": thumb(t, &k.es.PublicKey)},
		baseClaims(Access{TypeRepository, "dst", []string{"pull", "push"}}, Access{TypeRepository, "src", []string{"pull"}}))
	id, err := a.Authorize(requestWith("bearer "+tok), Required("POST", "/v2/{name}/blobs/uploads/", "dst"))
	if err != nil {
		t.Fatal(err)
	}
	if !id.Allowed(Access{TypeRepository, "src", []string{"pull"}}) {
		t.Error("mount source src not allowed")
	}
	if id.Allowed(Access{TypeRepository, "other", []string{"pull"}}) {
		t.Error("mount source other allowed")
	}
}

func TestBasicAuthorizer(t *testing.T) {
	h, err := LoadHtpasswd(writeHtpasswd(t, "alice:"+bcryptHash(t, "s3cret-pw", "$2y$")+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := NewBasicAuthorizer(BasicConfig{Users: func() *Htpasswd { return h }, Realm: "berth"})
	need := Required("DELETE", manifestRoute, "a/b")
	basic := func(user, pw string) string {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.SetBasicAuth(user, pw)
		return r.Header.Get("Authorization")
	}
	for _, tc := range []struct {
		name, auth string
		cause      error
	}{
		{"no credentials", "", errNoCredentials},
		{"bearer token", "Bearer abc", errNoCredentials},
		{"wrong password", basic("alice", "wrong-pw"), errBadCredentials},
		{"unknown user", basic("mallory", "s3cret-pw"), errBadCredentials},
		{"8 MiB Authorization header", "Basic " + strings.Repeat("A", 8<<20), errHeaderTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := a.Authorize(requestWith(tc.auth), need)
			var c *Challenge
			if !errors.As(err, &c) || id != nil {
				t.Fatalf("Authorize = %v, %v; want a *Challenge", id, err)
			}
			if c.Status != http.StatusUnauthorized || !errors.Is(err, ErrUnauthorized) || c.Code != "" {
				t.Errorf("status %d code %q, want 401 and no code", c.Status, c.Code)
			}
			if got := c.Header(); got != `Basic realm="berth"` {
				t.Errorf("header %s", got)
			}
			if !errors.Is(err, tc.cause) {
				t.Errorf("error %v does not wrap %v", err, tc.cause)
			}
			if strings.Contains(err.Error(), "pw") {
				t.Errorf("error %q contains password material", err)
			}
		})
	}
	t.Run("authenticated user gets everything", func(t *testing.T) {
		id, err := a.Authorize(requestWith(basic("alice", "s3cret-pw")), need)
		if err != nil {
			t.Fatal(err)
		}
		if id.Subject != "alice" || !id.Allowed(Access{TypeRegistry, "catalog", []string{"*"}}) ||
			!id.Allowed(Access{TypeRepository, "any/repo", []string{"delete"}}) {
			t.Errorf("identity %+v does not grant everything", id)
		}
	})
}

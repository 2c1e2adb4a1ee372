package issuer

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// TestRefreshCritical: a refresh token re-signed by the issuer's own key
// with a "crit" header is refused, as the registry's verifier refuses such
// access tokens (RFC 7515 section 4.1.11); the same token without it is not.
func TestRefreshCritical(t *testing.T) {
	f := newFixture(t)
	code, body := f.post(t, url.Values{
		"grant_type": {"password"}, "username": {"bob"}, "password": {"s3cret"},
		"service": {testService}, "client_id": {"test"}, "access_type": {"offline"},
	})
	if code != http.StatusOK {
		t.Fatalf("password grant: %d %v", code, body)
	}
	refresh, _ := body["refresh_token"].(string)
	var claims refreshClaims
	orig, err := jwt.ParseWithClaims(refresh, &claims, func(*jwt.Token) (any, error) { return &f.key.PublicKey, nil })
	if err != nil {
		t.Fatal(err)
	}
	resign := func(extra map[string]any) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, &claims)
		for k, v := range orig.Header {
			tok.Header[k] = v
		}
		for k, v := range extra {
			tok.Header[k] = v
		}
		s, err := tok.SignedString(f.key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	grant := func(token string) int {
		code, _ := f.post(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token},
			"service": {testService}, "client_id": {"test"}})
		return code
	}
	if code := grant(resign(nil)); code != http.StatusOK {
		t.Fatalf("re-signed refresh token without crit: %d, want 200", code)
	}
	if code := grant(resign(map[string]any{"crit": []string{"b64"}, "b64": false})); code != http.StatusUnauthorized {
		t.Errorf("refresh token with crit: %d, want 401", code)
	}
}

package auth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// TestVerifyCritical: RFC 7515 section 4.1.11. Berth implements no JWS
// extension, so a token whose "crit" names anything is refused, however
// well it is signed; a token without "crit", or with an empty one, is not.
func TestVerifyCritical(t *testing.T) {
	k := verifyKeysOnce()
	kid := thumb(t, &k.es.PublicKey)
	v := newTestVerifier(t, nil, &k.es.PublicKey)
	for _, tc := range []struct {
		name   string
		header map[string]any // added to {"alg":"ES256","typ":"JWT","kid":kid}
		ok     bool
	}{
		{"no crit", nil, true},
		{"empty crit", map[string]any{"crit": []string{}}, true},
		{"unknown extension, present", map[string]any{"crit": []string{"b64"}, "b64": false}, false},
		{"private extension, present", map[string]any{"crit": []string{"x-berth"}, "x-berth": "1"}, false},
		{"extension among others", map[string]any{"crit": []string{"exp", "b64"}, "exp": 1, "b64": true}, false},
		{"absent parameter", map[string]any{"crit": []string{"x-berth"}}, false},
		{"a JWS parameter", map[string]any{"crit": []string{"kid"}}, false},
		{"crit itself", map[string]any{"crit": []string{"crit"}}, false},
		{"a string, not a list", map[string]any{"crit": "b64", "b64": false}, false},
		{"a number in the list", map[string]any{"crit": []any{1}}, false},
		{"an empty name", map[string]any{"crit": []string{""}}, false},
		{"null", map[string]any{"crit": nil}, false},
		{"an object", map[string]any{"crit": map[string]any{"b64": true}, "b64": true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]any{"kid": kid}
			for name, val := range tc.header {
				h[name] = val
			}
			tok := sign(t, jwt.SigningMethodES256, k.es, h, baseClaims())
			_, err := v.Verify(tok)
			if tc.ok {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidToken) || !errors.Is(err, errCritical) {
				t.Fatalf("Verify error = %v, want ErrInvalidToken and errCritical", err)
			}
			// Through the authorizer: a 401 invalid_token challenge.
			a := NewTokenAuthorizer(v, testRealm, testService)
			r := httptest.NewRequest(http.MethodGet, "/v2/a/b/manifests/v1", nil)
			r.Header.Set("Authorization", "Bearer "+tok)
			_, aerr := a.Authorize(r, Required(http.MethodGet, manifestRoute, "a/b"))
			if ch, ok := errors.AsType[*Challenge](aerr); !ok || ch.Code != ErrorInvalidToken {
				t.Fatalf("Authorize error = %v, want an invalid_token challenge", aerr)
			}
		})
	}
}

// TestCheckCriticalReasons: each refusal says why, without echoing values.
func TestCheckCriticalReasons(t *testing.T) {
	for _, tc := range []struct {
		header map[string]any
		want   string
	}{
		{map[string]any{"crit": []any{"b64"}, "b64": false}, `"crit" header not satisfied: names the extension "b64", which this verifier does not implement`},
		{map[string]any{"crit": []any{"x"}}, `"crit" header not satisfied: names "x", which the header does not carry`},
		{map[string]any{"crit": []any{"alg"}, "alg": "ES256"}, `"crit" header not satisfied: names "alg", which is not an extension`},
		{map[string]any{"crit": "x", "x": 1}, `"crit" header not satisfied: not a list of header parameter names`},
	} {
		err := CheckCritical(tc.header)
		if err == nil || err.Error() != tc.want {
			t.Errorf("CheckCritical(%v) = %v, want %s", tc.header, err, tc.want)
		}
	}
	if err := CheckCritical(map[string]any{"alg": "ES256"}); err != nil {
		t.Errorf("no crit: %v", err)
	}
}

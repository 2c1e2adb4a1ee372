package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	testIssuer  = "berth-issuer"
	testService = "berth"
)

var testNow = time.Unix(1_750_000_000, 0)

type verifyKeys struct {
	es       *ecdsa.PrivateKey
	rs       *rsa.PrivateKey
	ed       ed25519.PrivateKey
	attacker *ecdsa.PrivateKey
}

var verifyKeysOnce = sync.OnceValue(func() verifyKeys {
	es, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	rs, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	attacker, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return verifyKeys{es: es, rs: rs, ed: ed, attacker: attacker}
})

func thumb(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	tp, err := Thumbprint(pub)
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

func baseClaims(access ...Access) *Claims {
	return &Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    testIssuer,
			Subject:   "alice",
			Audience:  jwt.ClaimStrings{testService},
			ExpiresAt: jwt.NewNumericDate(testNow.Add(5 * time.Minute)),
			NotBefore: jwt.NewNumericDate(testNow),
			IssuedAt:  jwt.NewNumericDate(testNow),
		},
		Access: access,
	}
}

// sign signs claims with key under method, with the given header members added.
func sign(t testing.TB, method jwt.SigningMethod, key any, header map[string]any, claims jwt.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newTestVerifier(t testing.TB, roots *x509.CertPool, keys ...crypto.PublicKey) *Verifier {
	t.Helper()
	v, err := NewVerifier(VerifierConfig{
		Issuer: testIssuer, Audience: testService, Keys: keys, Roots: roots,
		Now: func() time.Time { return testNow },
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// jwkOf returns pub as one JWK object, for an embedded "jwk" header.
func jwkOf(t testing.TB, pub crypto.PublicKey) map[string]any {
	t.Helper()
	b, err := MarshalJWKS(pub)
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("MarshalJWKS: %s, %v", b, err)
	}
	return set.Keys[0]
}

// certChain returns a root CA and a leaf for leafKey signed by it, with the leaf's key usage.
func certChain(t testing.TB, leafKey crypto.PublicKey, usage x509.KeyUsage) (root, leaf *x509.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"},
		NotBefore: testNow.Add(-time.Hour), NotAfter: testNow.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	root, _ = x509.ParseCertificate(caDER)
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "token signer"},
		NotBefore: testNow.Add(-time.Hour), NotAfter: testNow.Add(time.Hour), KeyUsage: usage,
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, root, leafKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ = x509.ParseCertificate(leafDER)
	return root, leaf
}

func TestVerify(t *testing.T) {
	k := verifyKeysOnce()
	esKid, rsKid, edKid := thumb(t, &k.es.PublicKey), thumb(t, &k.rs.PublicKey), thumb(t, k.ed.Public())
	all := newTestVerifier(t, nil, &k.es.PublicKey, &k.rs.PublicKey, k.ed.Public())
	esOnly := newTestVerifier(t, nil, &k.es.PublicKey)

	pubDER, err := x509.MarshalPKIXPublicKey(&k.es.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})

	with := func(f func(c *Claims)) *Claims { c := baseClaims(); f(c); return c }
	kid := func(s string) map[string]any { return map[string]any{"kid": s} }

	for _, tc := range []struct {
		name  string
		v     *Verifier
		token string
		want  error // nil: accepted; else errors.Is target (besides ErrInvalidToken)
	}{
		{"ES256 by kid", all, sign(t, jwt.SigningMethodES256, k.es, kid(esKid), baseClaims()), nil},
		{"RS256 by kid", all, sign(t, jwt.SigningMethodRS256, k.rs, kid(rsKid), baseClaims()), nil},
		{"EdDSA by kid", all, sign(t, jwt.SigningMethodEdDSA, k.ed, kid(edKid), baseClaims()), nil},
		{"alg none", all, sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, kid(esKid), baseClaims()), jwt.ErrTokenSignatureInvalid},
		{"HS256 keyed with the public key", all, sign(t, jwt.SigningMethodHS256, pubPEM, kid(esKid), baseClaims()), jwt.ErrTokenSignatureInvalid},
		{"HS256 keyed with the public DER", all, sign(t, jwt.SigningMethodHS256, pubDER, kid(esKid), baseClaims()), jwt.ErrTokenSignatureInvalid},
		{"RS256 when only ES256 is configured", esOnly, sign(t, jwt.SigningMethodRS256, k.rs, kid(rsKid), baseClaims()), jwt.ErrTokenSignatureInvalid},
		{"RS256 naming the ES256 key", all, sign(t, jwt.SigningMethodRS256, k.rs, kid(esKid), baseClaims()), errAlgMismatch},
		{"ES384 naming the ES256 key", all, sign(t, jwt.SigningMethodES384, mustP384(t), kid(esKid), baseClaims()), jwt.ErrTokenSignatureInvalid},
		{"missing exp", all, sign(t, jwt.SigningMethodES256, k.es, kid(esKid), with(func(c *Claims) { c.ExpiresAt = nil })), jwt.ErrTokenRequiredClaimMissing},
		{"expired beyond leeway", all, sign(t, jwt.SigningMethodES256, k.es, kid(esKid), with(func(c *Claims) {
			c.ExpiresAt = jwt.NewNumericDate(testNow.Add(-61 * time.Second))
		})), jwt.ErrTokenExpired},
		{"expired within leeway", all, sign(t, jwt.SigningMethodES256, k.es, kid(esKid), with(func(c *Claims) {
			c.ExpiresAt = jwt.NewNumericDate(testNow.Add(-59 * time.Second))
		})), nil},
		{"nbf in the future", all, sign(t, jwt.SigningMethodES256, k.es, kid(esKid), with(func(c *Claims) {
			c.NotBefore = jwt.NewNumericDate(testNow.Add(5 * time.Minute))
		})), jwt.ErrTokenNotValidYet},
		{"nbf within leeway", all, sign(t, jwt.SigningMethodES256, k.es, kid(esKid), with(func(c *Claims) {
			c.NotBefore = jwt.NewNumericDate(testNow.Add(30 * time.Second))
		})), nil},
		{"iat in the future", all, sign(t, jwt.SigningMethodES256, k.es, kid(esKid), with(func(c *Claims) {
			c.IssuedAt = jwt.NewNumericDate(testNow.Add(5 * time.Minute))
		})), jwt.ErrTokenUsedBeforeIssued},
		{"wrong aud", all, sign(t, jwt.SigningMethodES256, k.es, kid(esKid), with(func(c *Claims) {
			c.Audience = jwt.ClaimStrings{"other-registry"}
		})), jwt.ErrTokenInvalidAudience},
		{"aud among several", all, sign(t, jwt.SigningMethodES256, k.es, kid(esKid), with(func(c *Claims) {
			c.Audience = jwt.ClaimStrings{"other-registry", testService}
		})), nil},
		{"missing aud", all, sign(t, jwt.SigningMethodES256, k.es, kid(esKid), with(func(c *Claims) { c.Audience = nil })), jwt.ErrTokenRequiredClaimMissing},
		{"foreign iss", all, sign(t, jwt.SigningMethodES256, k.es, kid(esKid), with(func(c *Claims) { c.Issuer = "evil" })), jwt.ErrTokenInvalidIssuer},
		{"missing iss", all, sign(t, jwt.SigningMethodES256, k.es, kid(esKid), with(func(c *Claims) { c.Issuer = "" })), jwt.ErrTokenRequiredClaimMissing},
		{"unknown kid", all, sign(t, jwt.SigningMethodES256, k.attacker, kid(thumb(t, &k.attacker.PublicKey)), baseClaims()), errUnknownKey},
		{"no kid", all, sign(t, jwt.SigningMethodES256, k.es, nil, baseClaims()), errNoKeyID},
		{"trusted kid, foreign signature", all, sign(t, jwt.SigningMethodES256, k.attacker, kid(esKid), baseClaims()), jwt.ErrTokenSignatureInvalid},
		{"embedded jwk reusing a trusted kid", all, sign(t, jwt.SigningMethodES256, k.attacker,
			map[string]any{"kid": esKid, "jwk": jwkOf(t, &k.attacker.PublicKey)}, baseClaims()), errJWKMismatch},
		{"embedded jwk without kid, foreign", all, sign(t, jwt.SigningMethodES256, k.attacker,
			map[string]any{"jwk": jwkOf(t, &k.attacker.PublicKey)}, baseClaims()), errJWKMismatch},
		{"embedded jwk of a trusted key, other kid", all, sign(t, jwt.SigningMethodES256, k.es,
			map[string]any{"kid": rsKid, "jwk": jwkOf(t, &k.es.PublicKey)}, baseClaims()), errJWKMismatch},
		{"embedded jwk equal to a trusted key", all, sign(t, jwt.SigningMethodES256, k.es,
			map[string]any{"kid": esKid, "jwk": jwkOf(t, &k.es.PublicKey)}, baseClaims()), nil},
		{"x5c without configured roots", all, sign(t, jwt.SigningMethodES256, k.es,
			map[string]any{"x5c": []string{"AAAA"}}, baseClaims()), errX5CDisabled},
		{"garbage", all, "not.a.token", jwt.ErrTokenMalformed},
		{"empty", all, "", jwt.ErrTokenMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.v.Verify(tc.token)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if c.Subject != "alice" {
					t.Errorf("subject %q", c.Subject)
				}
				return
			}
			if !errors.Is(err, ErrInvalidToken) || !errors.Is(err, tc.want) {
				t.Fatalf("Verify error = %v, want ErrInvalidToken and %v", err, tc.want)
			}
			if c != nil {
				t.Errorf("claims returned with an error")
			}
			if tc.token != "" && strings.Contains(err.Error(), tc.token) {
				t.Errorf("error contains the token")
			}
			if tc.token == "" {
				return // "Bearer " alone is no credentials, covered by TestTokenAuthorizer
			}
			// Through the authorizer the same token gets a 401 whose
			// challenge names the scope the request needs and says
			// invalid_token, and the error maps to UNAUTHORIZED.
			a := NewTokenAuthorizer(tc.v, testRealm, testService)
			r := httptest.NewRequest(http.MethodGet, "/v2/a/b/manifests/v1", nil)
			r.Header.Set("Authorization", "Bearer "+tc.token)
			_, aerr := a.Authorize(r, Required(http.MethodGet, manifestRoute, "a/b"))
			var ch *Challenge
			if !errors.As(aerr, &ch) || ch.Status != http.StatusUnauthorized || ch.Code != ErrorInvalidToken ||
				!errors.Is(aerr, ErrUnauthorized) || errors.Is(aerr, ErrDenied) {
				t.Fatalf("Authorize error = %#v, want a 401 invalid_token challenge", aerr)
			}
			const want = `Bearer realm="https://h/auth/token",service="berth",scope="repository:a/b:pull",error="invalid_token"`
			if got := ch.Header(); got != want {
				t.Errorf("WWW-Authenticate = %s, want %s", got, want)
			}
		})
	}
}

func mustP384(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestVerifyKeyURLsNeverFetched(t *testing.T) {
	k := verifyKeysOnce()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("key URL fetched: %s %s", r.Method, r.URL)
		w.Write(mustJWKS(t, &k.attacker.PublicKey))
	}))
	defer srv.Close()
	v := newTestVerifier(t, nil, &k.es.PublicKey)
	for _, hdr := range []string{"jku", "x5u"} {
		t.Run(hdr, func(t *testing.T) {
			for _, signer := range []*ecdsa.PrivateKey{k.attacker, k.es} {
				tok := sign(t, jwt.SigningMethodES256, signer,
					map[string]any{hdr: srv.URL + "/keys", "kid": thumb(t, &k.es.PublicKey)}, baseClaims())
				_, err := v.Verify(tok)
				if !errors.Is(err, ErrInvalidToken) || !errors.Is(err, errKeyURL) {
					t.Fatalf("Verify error = %v, want errKeyURL", err)
				}
			}
		})
	}
}

func mustJWKS(t testing.TB, pub crypto.PublicKey) []byte {
	b, err := MarshalJWKS(pub)
	if err != nil {
		t.Error(err)
	}
	return b
}

func TestVerifyX5C(t *testing.T) {
	k := verifyKeysOnce()
	root, leaf := certChain(t, &k.rs.PublicKey, x509.KeyUsageDigitalSignature)
	otherRoot, _ := certChain(t, &k.rs.PublicKey, x509.KeyUsageDigitalSignature)
	_, certSignOnly := certChain(t, &k.rs.PublicKey, x509.KeyUsageCertSign)
	pool := func(c *x509.Certificate) *x509.CertPool { p := x509.NewCertPool(); p.AddCert(c); return p }
	x5c := func(certs ...*x509.Certificate) map[string]any {
		var l []string
		for _, c := range certs {
			l = append(l, base64.StdEncoding.EncodeToString(c.Raw))
		}
		return map[string]any{"x5c": l}
	}

	t.Run("chain to a configured root", func(t *testing.T) {
		v := newTestVerifier(t, pool(root))
		tok := sign(t, jwt.SigningMethodRS256, k.rs, x5c(leaf), baseClaims())
		if _, err := v.Verify(tok); err != nil {
			t.Fatalf("Verify: %v", err)
		}
	})
	t.Run("chain to an unknown root", func(t *testing.T) {
		v := newTestVerifier(t, pool(otherRoot), &k.es.PublicKey)
		tok := sign(t, jwt.SigningMethodRS256, k.rs, x5c(leaf), baseClaims())
		_, err := v.Verify(tok)
		var unknown x509.UnknownAuthorityError
		if !errors.Is(err, ErrInvalidToken) || !errors.As(err, &unknown) {
			t.Fatalf("Verify error = %v, want x509.UnknownAuthorityError", err)
		}
	})
	t.Run("leaf not for signatures", func(t *testing.T) {
		v := newTestVerifier(t, x509.NewCertPool())
		v.cfg.Roots.AddCert(certSignOnly) // trust it directly: only the usage check can refuse it
		tok := sign(t, jwt.SigningMethodRS256, k.rs, x5c(certSignOnly), baseClaims())
		if _, err := v.Verify(tok); !errors.Is(err, errX5CUsage) {
			t.Fatalf("Verify error = %v, want errX5CUsage", err)
		}
	})
	t.Run("alg other than the leaf's", func(t *testing.T) {
		v := newTestVerifier(t, pool(root))
		tok := sign(t, jwt.SigningMethodES256, k.es, x5c(leaf), baseClaims())
		if _, err := v.Verify(tok); !errors.Is(err, errAlgMismatch) {
			t.Fatalf("Verify error = %v, want errAlgMismatch", err)
		}
	})
	t.Run("leaf signed by someone else", func(t *testing.T) {
		v := newTestVerifier(t, pool(root))
		rs2, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		tok := sign(t, jwt.SigningMethodRS256, rs2, x5c(leaf), baseClaims())
		if _, err := v.Verify(tok); !errors.Is(err, jwt.ErrTokenSignatureInvalid) {
			t.Fatalf("Verify error = %v, want signature invalid", err)
		}
	})
}

func TestNewVerifierConfig(t *testing.T) {
	k := verifyKeysOnce()
	for _, tc := range []struct {
		name string
		cfg  VerifierConfig
	}{
		{"no issuer", VerifierConfig{Audience: testService, Keys: []crypto.PublicKey{&k.es.PublicKey}}},
		{"no audience", VerifierConfig{Issuer: testIssuer, Keys: []crypto.PublicKey{&k.es.PublicKey}}},
		{"no keys", VerifierConfig{Issuer: testIssuer, Audience: testService}},
		{"P-384 key", VerifierConfig{Issuer: testIssuer, Audience: testService, Keys: []crypto.PublicKey{&mustP384(t).PublicKey}}},
		{"negative leeway", VerifierConfig{Issuer: testIssuer, Audience: testService, Keys: []crypto.PublicKey{&k.es.PublicKey}, Leeway: -time.Second}},
	} {
		if _, err := NewVerifier(tc.cfg); err == nil {
			t.Errorf("%s: NewVerifier accepted it", tc.name)
		}
	}
}

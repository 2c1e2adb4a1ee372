package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// rfc7638Key is the example RSA key of RFC 7638 section 3.1.
const rfc7638Key = `{"keys":[{
  "kty": "RSA",
  "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
  "e": "AQAB",
  "alg": "RS256",
  "kid": "2011-04-29"
}]}`

func TestThumbprintRFC7638(t *testing.T) {
	keys, err := ParseJWKS([]byte(rfc7638Key))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Thumbprint(keys[0])
	if err != nil {
		t.Fatal(err)
	}
	if want := "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"; got != want {
		t.Errorf("Thumbprint = %s, want %s", got, want)
	}
}

func testKeys(t *testing.T) []crypto.PublicKey {
	t.Helper()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ed, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return []crypto.PublicKey{ec.Public(), rk.Public(), ed}
}

func TestJWKSRoundTrip(t *testing.T) {
	keys := testKeys(t)
	b, err := MarshalJWKS(keys...)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	wantAlg := []string{"ES256", "RS256", "EdDSA"}
	for i, k := range doc.Keys {
		tp, _ := Thumbprint(keys[i])
		if k["kid"] != tp || k["alg"] != wantAlg[i] || k["use"] != "sig" {
			t.Errorf("key %d: kid=%q alg=%q use=%q, want %q %q sig", i, k["kid"], k["alg"], k["use"], tp, wantAlg[i])
		}
	}
	got, err := ParseJWKS(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(keys) {
		t.Fatalf("got %d keys, want %d", len(got), len(keys))
	}
	for i := range keys {
		eq, ok := keys[i].(interface{ Equal(crypto.PublicKey) bool })
		if !ok || !eq.Equal(got[i]) {
			t.Errorf("key %d: round trip gave %#v", i, got[i])
		}
	}
}

func TestThumbprintKinds(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range testKeys(t) {
		tp, err := Thumbprint(k)
		if err != nil {
			t.Fatal(err)
		}
		if len(tp) != 43 || seen[tp] {
			t.Errorf("thumbprint %q: wrong length or duplicate", tp)
		}
		seen[tp] = true
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := Thumbprint(p384.Public()); !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("P-384: err = %v, want ErrUnsupportedKey", err)
	}
}

func TestParseJWKSRejects(t *testing.T) {
	for name, doc := range map[string]string{
		"private d":   `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}]}`,
		"unknown kty": `{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`,
		"other kty":   `{"keys":[{"kty":"XYZ"}]}`,
		"bad curve":   `{"keys":[{"kty":"EC","crv":"P-521","x":"AA","y":"AA"}]}`,
		"off curve":   `{"keys":[{"kty":"EC","crv":"P-256","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","y":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE"}]}`,
		"no keys":     `{}`,
		"not json":    `keys`,
	} {
		if _, err := ParseJWKS([]byte(doc)); err == nil {
			t.Errorf("%s: ParseJWKS accepted %s", name, doc)
		}
	}
}

func TestLoadOrCreateSigningKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	path := filepath.Join(dir, "signing.pem")
	k1, err := LoadOrCreateSigningKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := k1.Public().(*ecdsa.PublicKey); !ok {
		t.Errorf("created key is %T, want ECDSA", k1.Public())
	}
	for p, want := range map[string]os.FileMode{path: 0o600, dir: 0o700} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), want)
		}
	}
	k2, err := LoadOrCreateSigningKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Public().(*ecdsa.PublicKey).Equal(k2.Public()) {
		t.Error("reloading gave a different key")
	}

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateSigningKey(path); !errors.Is(err, ErrKeyPermissions) {
		t.Errorf("0644 key: err = %v, want ErrKeyPermissions", err)
	}

	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateSigningKey(bad); err == nil || !strings.Contains(err.Error(), "PEM") {
		t.Errorf("garbage key file: err = %v", err)
	}
}

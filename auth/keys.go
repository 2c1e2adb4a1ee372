package auth

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
)

// ErrUnsupportedKey is returned for key types other than ECDSA P-256, RSA and Ed25519, and
// for JWKs whose kty or crv is unknown.
var ErrUnsupportedKey = errors.New("auth: unsupported key type")

// ErrKeyPermissions is returned by LoadOrCreateSigningKey when an existing key file can be
// read or written by its group or by others.
var ErrKeyPermissions = errors.New("auth: signing key file is accessible by group or others")

// jwk is the public subset of RFC 7517/7518 members Berth reads and writes.
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
	Kid string `json:"kid,omitempty"`
	Alg string `json:"alg,omitempty"`
	Use string `json:"use,omitempty"`
}

var b64 = base64.RawURLEncoding

// toJWK returns the required public members of pub (RFC 7638 section 3.2) and its JWS alg.
func toJWK(pub crypto.PublicKey) (jwk, string, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return jwk{}, "", fmt.Errorf("%w: ECDSA curve %s", ErrUnsupportedKey, k.Curve.Params().Name)
		}
		raw, err := k.Bytes() // uncompressed point: 0x04 || X || Y, coordinates 32 bytes each
		if err != nil {
			return jwk{}, "", fmt.Errorf("%w: %v", ErrUnsupportedKey, err)
		}
		return jwk{Kty: "EC", Crv: "P-256", X: b64.EncodeToString(raw[1:33]), Y: b64.EncodeToString(raw[33:65])}, "ES256", nil
	case *rsa.PublicKey:
		e := big.NewInt(int64(k.E)).Bytes()
		return jwk{Kty: "RSA", N: b64.EncodeToString(k.N.Bytes()), E: b64.EncodeToString(e)}, "RS256", nil
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return jwk{}, "", fmt.Errorf("%w: Ed25519 key of %d bytes", ErrUnsupportedKey, len(k))
		}
		return jwk{Kty: "OKP", Crv: "Ed25519", X: b64.EncodeToString(k)}, "EdDSA", nil
	case *ed25519.PublicKey:
		return toJWK(*k)
	}
	return jwk{}, "", fmt.Errorf("%w: %T", ErrUnsupportedKey, pub)
}

// Algorithm returns the JWS algorithm Berth uses with pub: ES256, RS256 or EdDSA.
func Algorithm(pub crypto.PublicKey) (string, error) {
	_, alg, err := toJWK(pub)
	return alg, err
}

// Thumbprint returns the RFC 7638 JWK thumbprint of pub: the SHA-256 of the JSON object of
// its required members in lexicographic order, without whitespace, base64url-encoded
// without padding. It is used as the "kid" of tokens and JWKS entries.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	k, _, err := toJWK(pub)
	if err != nil {
		return "", err
	}
	// Built by hand: the member order and the absence of whitespace are part of the hash input.
	// base64url values never need JSON escaping.
	var canon string
	switch k.Kty {
	case "EC":
		canon = `{"crv":"` + k.Crv + `","kty":"EC","x":"` + k.X + `","y":"` + k.Y + `"}`
	case "RSA":
		canon = `{"e":"` + k.E + `","kty":"RSA","n":"` + k.N + `"}`
	case "OKP":
		canon = `{"crv":"` + k.Crv + `","kty":"OKP","x":"` + k.X + `"}`
	}
	sum := sha256.Sum256([]byte(canon))
	return b64.EncodeToString(sum[:]), nil
}

// privateMembers are JWK members that only private keys carry (RFC 7518 sections 6.2.2, 6.3.2, RFC 8037).
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// ParseJWKS decodes a JWK Set document ({"keys":[...]}) into public keys (*ecdsa.PublicKey,
// *rsa.PublicKey, ed25519.PublicKey). A key carrying private members, or of an unknown kty
// or curve, makes the whole document an error: a set that leaks private keys is refused.
func ParseJWKS(b []byte) ([]crypto.PublicKey, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("auth: parsing JWK set: %w", err)
	}
	if doc.Keys == nil {
		return nil, errors.New(`auth: parsing JWK set: no "keys" member`)
	}
	keys := make([]crypto.PublicKey, 0, len(doc.Keys))
	for i, raw := range doc.Keys {
		k, err := parseJWK(raw)
		if err != nil {
			return nil, fmt.Errorf("auth: JWK set key %d: %w", i, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func parseJWK(raw json.RawMessage) (crypto.PublicKey, error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return nil, err
	}
	for _, m := range privateMembers {
		if _, ok := members[m]; ok {
			return nil, fmt.Errorf("private member %q present", m)
		}
	}
	var k jwk
	if err := json.Unmarshal(raw, &k); err != nil {
		return nil, err
	}
	decode := func(name, v string) ([]byte, error) {
		if v == "" {
			return nil, fmt.Errorf("missing %q", name)
		}
		out, err := b64.DecodeString(v)
		if err != nil {
			return nil, fmt.Errorf("member %q: %w", name, err)
		}
		return out, nil
	}
	switch k.Kty {
	case "EC":
		if k.Crv != "P-256" {
			return nil, fmt.Errorf("%w: EC curve %q", ErrUnsupportedKey, k.Crv)
		}
		x, err := decode("x", k.X)
		if err != nil {
			return nil, err
		}
		y, err := decode("y", k.Y)
		if err != nil {
			return nil, err
		}
		if len(x) != 32 || len(y) != 32 {
			return nil, errors.New("P-256 coordinates must be 32 bytes")
		}
		point := append(append([]byte{4}, x...), y...)
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
		if err != nil {
			return nil, err
		}
		return pub, nil
	case "RSA":
		n, err := decode("n", k.N)
		if err != nil {
			return nil, err
		}
		e, err := decode("e", k.E)
		if err != nil {
			return nil, err
		}
		if len(e) > 4 {
			return nil, errors.New("RSA exponent too large")
		}
		exp := int(new(big.Int).SetBytes(e).Int64())
		if exp < 3 || exp%2 == 0 {
			return nil, errors.New("invalid RSA exponent")
		}
		nn := new(big.Int).SetBytes(n)
		if nn.BitLen() < 2048 {
			return nil, fmt.Errorf("RSA modulus of %d bits is too small", nn.BitLen())
		}
		return &rsa.PublicKey{N: nn, E: exp}, nil
	case "OKP":
		if k.Crv != "Ed25519" {
			return nil, fmt.Errorf("%w: OKP curve %q", ErrUnsupportedKey, k.Crv)
		}
		x, err := decode("x", k.X)
		if err != nil {
			return nil, err
		}
		if len(x) != ed25519.PublicKeySize {
			return nil, errors.New("Ed25519 key must be 32 bytes")
		}
		return ed25519.PublicKey(x), nil
	}
	return nil, fmt.Errorf("%w: kty %q", ErrUnsupportedKey, k.Kty)
}

// MarshalJWKS encodes public keys as a JWK Set, each with "kid" = Thumbprint, its "alg"
// (ES256, RS256 or EdDSA) and "use":"sig".
func MarshalJWKS(keys ...crypto.PublicKey) ([]byte, error) {
	doc := struct {
		Keys []jwk `json:"keys"`
	}{Keys: make([]jwk, 0, len(keys))}
	for _, pub := range keys {
		k, alg, err := toJWK(pub)
		if err != nil {
			return nil, err
		}
		if k.Kid, err = Thumbprint(pub); err != nil {
			return nil, err
		}
		k.Alg, k.Use = alg, "sig"
		doc.Keys = append(doc.Keys, k)
	}
	return json.Marshal(doc)
}

// LoadOrCreateSigningKey reads a PEM "PRIVATE KEY" (PKCS#8) from path. If the file does not
// exist, it creates an ECDSA P-256 key there with mode 0600, creating missing directories
// with mode 0700. An existing file readable or writable by group or others is refused with
// ErrKeyPermissions rather than silently used.
func LoadOrCreateSigningKey(path string) (crypto.Signer, error) {
	b, err := readKeyFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return createSigningKey(path)
	}
	if err != nil {
		return nil, err
	}
	return parseSigningKey(path, b)
}

func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("auth: signing key %s is not a regular file", path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %v, want 0600", ErrKeyPermissions, path, fi.Mode().Perm())
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(f); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func parseSigningKey(path string, b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("auth: signing key %s: no PEM PRIVATE KEY block", path)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("auth: signing key %s: %w", path, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: %T in %s", ErrUnsupportedKey, key, path)
	}
	if _, _, err := toJWK(signer.Public()); err != nil {
		return nil, fmt.Errorf("auth: signing key %s: %w", path, err)
	}
	return signer, nil
}

func createSigningKey(path string) (crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("auth: creating signing key directory: %w", err)
	}
	// O_EXCL: if another process created the key meanwhile, use that one rather than overwrite it.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return LoadOrCreateSigningKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: creating signing key: %w", err)
	}
	werr := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(path)
		return nil, fmt.Errorf("auth: writing signing key: %w", werr)
	}
	return key, nil
}

package auth

import (
	"crypto"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ErrInvalidToken wraps every reason Verify refuses a token.
var ErrInvalidToken = errors.New("auth: invalid token")

// Reasons the key lookup refuses a token; each is wrapped in ErrInvalidToken.
var (
	errNoKeyID      = errors.New("token names no key (kid, jwk or x5c)")
	errUnknownKey   = errors.New("kid is not the thumbprint of a configured key")
	errKeyURL       = errors.New("jku and x5u headers are not accepted: keys are never fetched")
	errJWKMismatch  = errors.New("embedded jwk is not a configured key")
	errAlgMismatch  = errors.New("alg does not match the key type")
	errX5CDisabled  = errors.New("x5c header present but no trusted roots are configured")
	errX5CMalformed = errors.New("malformed x5c header")
	errX5CUsage     = errors.New("x5c leaf certificate is not usable for digital signatures")
)

// Claims are the JWT claims Berth issues and accepts: the registered claims plus the
// Docker token "access" list.
type Claims struct {
	jwt.RegisteredClaims
	Access []Access `json:"access"`
}

// DefaultLeeway is the clock skew allowed on exp, nbf and iat when VerifierConfig.Leeway is zero.
const DefaultLeeway = 60 * time.Second

// maxX5C bounds the certificates of an x5c header, so a token cannot make Verify parse
// an arbitrary number of them.
const maxX5C = 8

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	Issuer   string             // required: the "iss" tokens must carry
	Audience string             // required: the service; "aud" must contain it
	Keys     []crypto.PublicKey // ECDSA P-256, RSA or Ed25519 keys, selected by their RFC 7638 thumbprint (kid)
	Roots    *x509.CertPool     // x5c chains must reach these; nil: tokens with x5c are refused
	Leeway   time.Duration      // clock skew on exp, nbf, iat; 0: DefaultLeeway
	Now      func() time.Time   // nil: time.Now
}

// Verifier checks bearer tokens. It is safe for concurrent use.
type Verifier struct {
	cfg    VerifierConfig
	keys   map[string]crypto.PublicKey // by RFC 7638 thumbprint
	parser *jwt.Parser
}

// NewVerifier checks cfg and returns a Verifier. Algorithms are pinned per key type:
// ES256 for ECDSA P-256, RS256 for RSA, EdDSA for Ed25519; none and HMAC are never
// accepted.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("auth: verifier needs an issuer and an audience")
	}
	if len(cfg.Keys) == 0 && cfg.Roots == nil {
		return nil, errors.New("auth: verifier needs keys or x5c roots")
	}
	if cfg.Leeway < 0 {
		return nil, errors.New("auth: negative leeway")
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = DefaultLeeway
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	v := &Verifier{cfg: cfg, keys: make(map[string]crypto.PublicKey, len(cfg.Keys))}
	var algs []string
	for i, k := range cfg.Keys {
		if p, ok := k.(*ed25519.PublicKey); ok && p != nil {
			k = *p // jwt's EdDSA wants the value type
		}
		kid, err := Thumbprint(k)
		if err != nil {
			return nil, fmt.Errorf("auth: verifier key %d: %w", i, err)
		}
		alg, err := Algorithm(k)
		if err != nil {
			return nil, fmt.Errorf("auth: verifier key %d: %w", i, err)
		}
		v.keys[kid] = k
		if !slices.Contains(algs, alg) {
			algs = append(algs, alg)
		}
	}
	if cfg.Roots != nil {
		// An x5c leaf may be of any supported type; the key lookup still pins alg to it.
		algs = []string{"ES256", "RS256", "EdDSA"}
	}
	v.parser = jwt.NewParser(
		jwt.WithValidMethods(algs),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(cfg.Now),
	)
	return v, nil
}

// Verify checks token's signature and claims and returns the claims. The key is chosen,
// in this order, by:
//
//   - x5c: the chain must verify to the configured roots at the current time, and the
//     leaf must allow digital signatures; the leaf key verifies the token (a kid next to
//     it is not used);
//   - jwk: the embedded key must be one of the configured keys (same thumbprint and
//     equal material), and a kid next to it must be that key's thumbprint;
//   - kid: the RFC 7638 thumbprint of a configured key.
//
// A jku or x5u header makes the token invalid: keys are never fetched; so does a
// "crit" header naming anything (see CheckCritical). The alg must be
// the one pinned to the chosen key's type. exp is required; iss must equal the issuer;
// aud must contain the audience; exp, nbf and iat are checked with the leeway.
// Every error wraps ErrInvalidToken and never contains the token.
func (v *Verifier) Verify(token string) (*Claims, error) {
	claims := &Claims{}
	if _, err := v.parser.ParseWithClaims(token, claims, v.key); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	return claims, nil
}

// key is the jwt.Keyfunc: it selects the verification key from the header and pins alg.
func (v *Verifier) key(t *jwt.Token) (any, error) {
	if err := CheckCritical(t.Header); err != nil {
		return nil, err
	}
	if _, ok := t.Header["jku"]; ok {
		return nil, errKeyURL
	}
	if _, ok := t.Header["x5u"]; ok {
		return nil, errKeyURL
	}
	var key crypto.PublicKey
	var err error
	kid, hasKid := t.Header["kid"]
	switch x5c, jwkHdr := t.Header["x5c"], t.Header["jwk"]; {
	case x5c != nil:
		key, err = v.x5cKey(x5c)
	case jwkHdr != nil:
		key, err = v.jwkKey(jwkHdr, kid, hasKid)
	case hasKid:
		s, _ := kid.(string)
		k, ok := v.keys[s]
		if !ok || s == "" {
			return nil, errUnknownKey
		}
		key = k
	default:
		return nil, errNoKeyID
	}
	if err != nil {
		return nil, err
	}
	alg, err := Algorithm(key)
	if err != nil {
		return nil, err
	}
	if t.Method == nil || t.Method.Alg() != alg {
		return nil, errAlgMismatch
	}
	return key, nil
}

func (v *Verifier) jwkKey(hdr, kid any, hasKid bool) (crypto.PublicKey, error) {
	raw, err := json.Marshal(map[string]any{"keys": []any{hdr}})
	if err != nil {
		return nil, errJWKMismatch
	}
	keys, err := ParseJWKS(raw)
	if err != nil || len(keys) != 1 {
		return nil, errJWKMismatch
	}
	tp, err := Thumbprint(keys[0])
	if err != nil {
		return nil, errJWKMismatch
	}
	trusted, ok := v.keys[tp]
	if !ok || !publicKeysEqual(trusted, keys[0]) {
		return nil, errJWKMismatch
	}
	if hasKid {
		if s, _ := kid.(string); s != tp {
			return nil, errJWKMismatch
		}
	}
	return trusted, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

func (v *Verifier) x5cKey(hdr any) (crypto.PublicKey, error) {
	if v.cfg.Roots == nil {
		return nil, errX5CDisabled
	}
	list, ok := hdr.([]any)
	if !ok || len(list) == 0 || len(list) > maxX5C {
		return nil, errX5CMalformed
	}
	certs := make([]*x509.Certificate, 0, len(list))
	for _, e := range list {
		s, ok := e.(string)
		if !ok {
			return nil, errX5CMalformed
		}
		der, err := base64.StdEncoding.DecodeString(s) // x5c is standard base64, not base64url (RFC 7515 4.1.6)
		if err != nil {
			return nil, errX5CMalformed
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errX5CMalformed, err)
		}
		certs = append(certs, c)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	leaf := certs[0]
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         v.cfg.Roots,
		Intermediates: inter,
		CurrentTime:   v.cfg.Now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, fmt.Errorf("x5c chain: %w", err)
	}
	// RFC 5280 4.2.1.3: no keyUsage extension means no restriction.
	if leaf.KeyUsage != 0 && leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return nil, errX5CUsage
	}
	return leaf.PublicKey, nil
}

package issuer

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"

	"github.com/golang-jwt/jwt/v5"

	"github.com/berth-registry/berth/auth"
)

// signer signs JWTs with any crypto.Signer (an in-memory key, an HSM, a KMS), so the
// issuer does not depend on the concrete private key types jwt's signing methods want.
type signer struct {
	key    crypto.Signer
	alg    string // ES256, RS256 or EdDSA
	kid    string // RFC 7638 thumbprint of the public key
	method jwt.SigningMethod
}

func newSigner(key crypto.Signer) (*signer, error) {
	if key == nil {
		return nil, errors.New("issuer: no signing key")
	}
	pub := key.Public()
	alg, err := auth.Algorithm(pub)
	if err != nil {
		return nil, fmt.Errorf("issuer: signing key: %w", err)
	}
	kid, err := auth.Thumbprint(pub)
	if err != nil {
		return nil, fmt.Errorf("issuer: signing key: %w", err)
	}
	return &signer{key: key, alg: alg, kid: kid, method: jwt.GetSigningMethod(alg)}, nil
}

// sign returns the compact JWS of claims with the given "typ" header and kid.
func (s *signer) sign(typ string, claims jwt.Claims) (string, error) {
	tok := jwt.NewWithClaims(s.method, claims)
	tok.Header["kid"] = s.kid
	tok.Header["typ"] = typ
	input, err := tok.SigningString()
	if err != nil {
		return "", err
	}
	sig, err := s.signature([]byte(input))
	if err != nil {
		return "", fmt.Errorf("issuer: signing token: %w", err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

func (s *signer) signature(input []byte) ([]byte, error) {
	switch s.alg {
	case "EdDSA":
		return s.key.Sign(rand.Reader, input, crypto.Hash(0))
	case "RS256":
		h := sha256.Sum256(input)
		return s.key.Sign(rand.Reader, h[:], crypto.SHA256)
	case "ES256":
		h := sha256.Sum256(input)
		der, err := s.key.Sign(rand.Reader, h[:], crypto.SHA256)
		if err != nil {
			return nil, err
		}
		// crypto.Signer returns ASN.1 DER; JWS wants R || S, 32 bytes each (RFC 7518 3.4).
		var rs struct{ R, S *big.Int }
		if rest, err := asn1.Unmarshal(der, &rs); err != nil || len(rest) != 0 {
			return nil, errors.New("malformed ECDSA signature")
		}
		if rs.R.Sign() <= 0 || rs.S.Sign() <= 0 || rs.R.BitLen() > 256 || rs.S.BitLen() > 256 {
			return nil, errors.New("malformed ECDSA signature")
		}
		out := make([]byte, 64)
		rs.R.FillBytes(out[:32])
		rs.S.FillBytes(out[32:])
		return out, nil
	}
	return nil, fmt.Errorf("unsupported algorithm %s", s.alg)
}

// public returns the verification key in the form jwt's methods accept.
func (s *signer) public() crypto.PublicKey {
	return s.key.Public()
}

// Sign returns an access token carrying claims, signed with key exactly as the token
// endpoint signs its access tokens: alg pinned to the key type, "kid" the RFC 7638
// thumbprint, "typ" JWT. It grants whatever claims says, without a policy: it is for
// operators' scripts and tests (berth auth token), not for answering requests.
func Sign(key crypto.Signer, claims *auth.Claims) (string, error) {
	s, err := newSigner(key)
	if err != nil {
		return "", err
	}
	return s.sign("JWT", claims)
}

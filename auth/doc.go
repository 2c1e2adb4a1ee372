// Package auth decides whether an HTTP request may perform the actions it needs:
// Docker-style bearer tokens (JWT, verified by Verifier) or htpasswd Basic auth, behind
// the Authorizer interface, with Challenge as the typed error that renders WWW-Authenticate.
// Throttle slows down password guessing in htpasswd mode and at the issuer, by user and by
// client address (TrustedProxies.ClientAddr).
//
// It may import the standard library, golang-jwt/jwt, golang.org/x/crypto and yaml.v3
// (the policy file) only; the HTTP layer (registry/) imports it, never the reverse
// (storage/depcheck_test.go). The token server lives in auth/issuer.
package auth

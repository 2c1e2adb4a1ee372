// Package issuer is Berth's token server: the Docker token endpoint (/auth/token, GET
// flow and OAuth2 POST flow) and its JWK Set (/auth/jwks.json), granting by auth.Policy.
//
// It grants nothing on a repository name that the registry's own grammar refuses
// (manifest.ValidateName), since other verifiers trust its tokens. Failed logins are
// counted and throttled by an auth.Throttle, as in htpasswd mode.
//
// It may import the standard library, auth, manifest (the name grammar) and
// golang-jwt/jwt only; registry/ and the storage packages stay out (depcheck_test.go).
package issuer

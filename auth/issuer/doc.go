// Package issuer is Berth's token server: the Docker token endpoint (/auth/token, GET
// flow and OAuth2 POST flow) and its JWK Set (/auth/jwks.json), granting by auth.Policy.
//
// It may import the standard library, auth, golang-jwt/jwt and the Prometheus client only;
// registry/ and the storage packages stay out.
package issuer

package config

import (
	"net"
	"slices"
	"time"
)

// Authentication modes accepted in Auth.Mode.
const (
	// AuthNone serves everyone without credentials.
	AuthNone = "none"
	// AuthHtpasswd accepts the users of Auth.Htpasswd over HTTP Basic
	// authentication and grants them everything.
	AuthHtpasswd = "htpasswd"
	// AuthToken accepts Bearer tokens (the Docker token specification),
	// from the built-in issuer or an external one.
	AuthToken = "token"
)

var authModes = []string{AuthNone, AuthHtpasswd, AuthToken}

// Auth configures who may use the registry.
type Auth struct {
	// Mode is none, htpasswd or token. Default: none.
	Mode string `yaml:"mode"`
	// AllowInsecureNone permits mode none on an http.addr that is not a
	// loopback address (behind a proxy that authenticates, for example).
	// Default: false.
	AllowInsecureNone bool `yaml:"allowInsecureNone"`
	// Htpasswd is the path of an htpasswd file (bcrypt entries): the users
	// of htpasswd mode and of the built-in token issuer. Default: "".
	Htpasswd string `yaml:"htpasswd"`
	// Token configures the checking of Bearer tokens in token mode.
	Token Token `yaml:"token"`
	// Issuer configures the built-in token issuer of token mode.
	Issuer Issuer `yaml:"issuer"`
}

// Token configures how token mode checks Bearer tokens.
type Token struct {
	// Realm is the token endpoint's URL, sent to clients in the
	// WWW-Authenticate challenge. Empty with the built-in issuer means
	// http(s)://<http.addr>/auth/token, which needs a concrete host and port
	// in http.addr. Required with an external issuer. Default: "".
	Realm string `yaml:"realm"`
	// Service is the name tokens must be issued for (their audience).
	// Default: berth.
	Service string `yaml:"service"`
	// Issuer is the "iss" tokens must carry; the built-in issuer signs with
	// it. Default: berth.
	Issuer string `yaml:"issuer"`
	// JWKS is the path of a JSON Web Key Set of further trusted public keys
	// (an external issuer's). Default: "".
	JWKS string `yaml:"jwks"`
	// RootCertBundle is the path of PEM certificates that tokens carrying
	// an x5c chain must verify to. Default: "".
	RootCertBundle string `yaml:"rootCertBundle"`
}

// Issuer configures the built-in token issuer, served at /auth/token (and
// its public key at /auth/jwks.json).
type Issuer struct {
	// Enabled serves the built-in issuer in token mode. Default: true.
	Enabled bool `yaml:"enabled"`
	// Key is the path of the PEM signing key, created (ECDSA P-256, mode
	// 0600) if missing. Relative to the working directory.
	// Default: ./data/auth-key.pem.
	Key string `yaml:"key"`
	// Policy is the path of the access policy (see configs/policy.yaml).
	// Required with the issuer. Default: "".
	Policy string `yaml:"policy"`
	// TTL is the lifetime of the access tokens issued: at least 1m.
	// Default: 5m.
	TTL time.Duration `yaml:"ttl"`
	// RefreshTTL is the lifetime of the refresh tokens issued to clients
	// that ask for offline access (docker login keeps one as its
	// identitytoken): at least TTL. A refresh token also ends when its user
	// leaves the htpasswd file or changes password. Default: 720h (30 days).
	RefreshTTL time.Duration `yaml:"refreshTTL"`
}

// minIssuerTTL is the shortest access-token lifetime the issuer accepts.
const minIssuerTTL = time.Minute

func defaultAuth() Auth {
	return Auth{
		Mode: AuthNone,
		Token: Token{
			Service: "berth",
			Issuer:  "berth",
		},
		Issuer: Issuer{
			Enabled:    true,
			Key:        "./data/auth-key.pem",
			TTL:        5 * time.Minute,
			RefreshTTL: 30 * 24 * time.Hour,
		},
	}
}

// TokenRealm returns auth.token.realm, or the one derived from http.addr for
// the built-in issuer when it is empty.
func (c *Config) TokenRealm() string {
	if c.Auth.Token.Realm != "" {
		return c.Auth.Token.Realm
	}
	scheme := "http"
	if c.HTTP.TLS.Enabled() {
		scheme = "https"
	}
	return scheme + "://" + c.HTTP.Addr + "/auth/token"
}

func (c *Config) validateAuth(report reportFunc) {
	a := &c.Auth
	if !slices.Contains(authModes, a.Mode) {
		report("auth.mode", "%q is not %s", a.Mode, oneOf(authModes))
		return
	}
	switch a.Mode {
	case AuthNone:
		if !a.AllowInsecureNone && !loopback(c.HTTP.Addr) {
			report("auth.mode", "none on %q serves everyone on the network: set auth.mode to htpasswd or token, "+
				"listen on a loopback address, or set auth.allowInsecureNone: true", c.HTTP.Addr)
		}
	case AuthHtpasswd:
		if a.Htpasswd == "" {
			report("auth.htpasswd", "required with auth.mode htpasswd")
		}
	case AuthToken:
		if a.Token.Service == "" {
			report("auth.token.service", "required with auth.mode token")
		}
		if a.Token.Issuer == "" {
			report("auth.token.issuer", "required with auth.mode token")
		}
		if !a.Issuer.Enabled {
			if a.Token.Realm == "" {
				report("auth.token.realm", "required when auth.issuer.enabled is false: the URL of the token endpoint")
			}
			if a.Token.JWKS == "" && a.Token.RootCertBundle == "" {
				report("auth.token", "set jwks or rootCertBundle when auth.issuer.enabled is false: nothing could verify a token")
			}
			return
		}
		if a.Htpasswd == "" {
			report("auth.htpasswd", "required with the built-in issuer (auth.issuer.enabled)")
		}
		if a.Issuer.Policy == "" {
			report("auth.issuer.policy", "required with the built-in issuer (auth.issuer.enabled)")
		}
		if a.Issuer.Key == "" {
			report("auth.issuer.key", "required with the built-in issuer (auth.issuer.enabled)")
		}
		if a.Issuer.TTL < minIssuerTTL {
			report("auth.issuer.ttl", "%s is below the minimum %s", a.Issuer.TTL, minIssuerTTL)
		}
		if a.Issuer.RefreshTTL < a.Issuer.TTL {
			report("auth.issuer.refreshTTL", "%s is below auth.issuer.ttl (%s)", a.Issuer.RefreshTTL, a.Issuer.TTL)
		}
		if a.Token.Realm == "" {
			host, port, err := net.SplitHostPort(c.HTTP.Addr)
			if err == nil && (host == "" || net.ParseIP(host).IsUnspecified() || port == "0") {
				report("auth.token.realm", "cannot be derived from http.addr %q: set it to the URL clients reach /auth/token at", c.HTTP.Addr)
			}
		}
	}
}

// loopback reports whether the host of addr is a loopback address or localhost.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return true // reported by http.addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

package main

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berth-registry/berth/auth"
	"github.com/berth-registry/berth/auth/issuer"
	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/reload"
)

// basicRealm is the protection space of the Basic challenge in htpasswd mode.
const basicRealm = "berth"

// Paths of the built-in token issuer, served next to the registry.
const (
	tokenPath = "/auth/token"
	jwksPath  = "/auth/jwks.json"
)

// newAuth builds what cfg.Auth.Mode asks for: the registry's authorizer (nil
// in mode none) and, in token mode with the built-in issuer, the issuer
// (nil otherwise). Files are read here; a bad one fails the start. The
// htpasswd and policy files are read again when they change (looked at on
// use, at most once a second by the clock now), as the TLS pair is. The
// login throttle counts clients by the address proxies give them.
func newAuth(cfg *config.Config, proxies *auth.TrustedProxies, logger *slog.Logger, metrics *prometheus.Registry, now func() time.Time) (auth.Authorizer, *issuer.Issuer, error) {
	a := cfg.Auth
	switch a.Mode {
	case config.AuthNone:
		return nil, nil, nil
	case config.AuthHtpasswd:
		users, err := watchHtpasswd(a.Htpasswd, logger, now)
		if err != nil {
			return nil, nil, fmt.Errorf("auth.htpasswd: %w", err)
		}
		throttle, err := newLoginThrottle(cfg, logger, metrics, now)
		if err != nil {
			return nil, nil, err
		}
		return auth.NewBasicAuthorizer(auth.BasicConfig{Users: users.Get, Realm: basicRealm,
			Throttle: throttle, Proxies: proxies}), nil, nil
	case config.AuthToken:
	default:
		return nil, nil, fmt.Errorf("auth.mode: unknown mode %q", a.Mode)
	}

	var keys []crypto.PublicKey
	var iss *issuer.Issuer
	if a.Issuer.Enabled {
		key, err := auth.LoadOrCreateSigningKey(a.Issuer.Key)
		if err != nil {
			return nil, nil, fmt.Errorf("auth.issuer.key: %w", err)
		}
		if iss, err = newIssuer(cfg, key, proxies, logger, metrics, now); err != nil {
			return nil, nil, err
		}
		keys = append(keys, key.Public())
	}
	if a.Token.JWKS != "" {
		b, err := os.ReadFile(a.Token.JWKS)
		if err != nil {
			return nil, nil, fmt.Errorf("auth.token.jwks: %w", err)
		}
		more, err := auth.ParseJWKS(b)
		if err != nil {
			return nil, nil, fmt.Errorf("auth.token.jwks: %s: %w", a.Token.JWKS, err)
		}
		keys = append(keys, more...)
	}
	var roots *x509.CertPool
	if a.Token.RootCertBundle != "" {
		b, err := os.ReadFile(a.Token.RootCertBundle)
		if err != nil {
			return nil, nil, fmt.Errorf("auth.token.rootCertBundle: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(b) {
			return nil, nil, fmt.Errorf("auth.token.rootCertBundle: %s holds no PEM certificate", a.Token.RootCertBundle)
		}
	}
	v, err := auth.NewVerifier(auth.VerifierConfig{
		Issuer: a.Token.Issuer, Audience: a.Token.Service, Keys: keys, Roots: roots,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("auth.token: %w", err)
	}
	return auth.NewTokenAuthorizer(v, cfg.TokenRealm(), a.Token.Service), iss, nil
}

// newIssuer builds the built-in token issuer signing with key: users, policy,
// and the login throttle with its counters on metrics.
func newIssuer(cfg *config.Config, key crypto.Signer, proxies *auth.TrustedProxies, logger *slog.Logger, metrics *prometheus.Registry, now func() time.Time) (*issuer.Issuer, error) {
	a := cfg.Auth
	users, err := watchHtpasswd(a.Htpasswd, logger, now)
	if err != nil {
		return nil, fmt.Errorf("auth.htpasswd: %w", err)
	}
	policy, err := reload.New([]string{a.Issuer.Policy},
		func() (*auth.Policy, error) { return auth.LoadPolicy(a.Issuer.Policy) },
		reload.Options[*auth.Policy]{What: "policy file", Log: logger, Now: now})
	if err != nil {
		return nil, fmt.Errorf("auth.issuer.policy: %w", err)
	}
	throttle, err := newLoginThrottle(cfg, logger, metrics, now)
	if err != nil {
		return nil, err
	}
	iss, err := issuer.New(issuer.Config{
		Issuer:     a.Token.Issuer,
		Service:    a.Token.Service,
		Key:        key,
		Users:      users.Get,
		Policy:     policy.Get,
		TTL:        a.Issuer.TTL,
		RefreshTTL: a.Issuer.RefreshTTL,
		Now:        now,
		Throttle:   throttle,
		Proxies:    proxies,
		Log:        logger,
	})
	if err != nil {
		return nil, fmt.Errorf("auth.issuer: %w", err)
	}
	return iss, nil
}

// trustedProxies parses http.trustedProxies: the proxies whose
// X-Forwarded-For names the client, for the login throttle and the logs.
func trustedProxies(cfg *config.Config) (*auth.TrustedProxies, error) {
	proxies, err := auth.ParseTrustedProxies(cfg.HTTP.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("http.trustedProxies: %w", err)
	}
	return proxies, nil
}

// newLoginThrottle builds the throttle of failed logins of cfg.Auth.Mode
// (htpasswd: the registry's Basic auth; token: the built-in issuer), with
// its two counters on metrics labelled by the mode.
func newLoginThrottle(cfg *config.Config, logger *slog.Logger, metrics *prometheus.Registry, now func() time.Time) (*auth.Throttle, error) {
	failed := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "berth_auth_failed_logins_total",
		Help: "Logins refused for a wrong user name, password or refresh token, by auth mode (htpasswd: registry requests; token: the built-in issuer).",
	}, []string{"mode"})
	throttled := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "berth_auth_throttled_logins_total",
		Help: "Logins refused with 429 Too Many Requests, unchecked, because their user or client address failed too often, by auth mode.",
	}, []string{"mode"})
	for _, c := range []prometheus.Collector{failed, throttled} {
		if err := metrics.Register(c); err != nil {
			return nil, err
		}
	}
	mode := cfg.Auth.Mode
	return auth.NewThrottle(auth.ThrottleConfig{
		Failures:  failed.WithLabelValues(mode),
		Throttled: throttled.WithLabelValues(mode),
		Log:       logger,
		Now:       now,
	}), nil
}

// watchHtpasswd loads the htpasswd file at path, and again when it changes.
func watchHtpasswd(path string, logger *slog.Logger, now func() time.Time) (*reload.Value[*auth.Htpasswd], error) {
	return reload.New([]string{path},
		func() (*auth.Htpasswd, error) { return auth.LoadHtpasswd(path) },
		reload.Options[*auth.Htpasswd]{What: "htpasswd file", Log: logger, Now: now,
			Describe: func(h *auth.Htpasswd) []any { return []any{"users", h.Len()} }})
}

// withIssuer serves the issuer's two paths and everything else with next.
// Exact paths, no http.ServeMux: the registry must see every other path as
// it was sent (a ServeMux would clean and redirect it).
func withIssuer(next http.Handler, iss *issuer.Issuer) http.Handler {
	if iss == nil {
		return next
	}
	jwks := iss.JWKSHandler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case tokenPath:
			iss.ServeHTTP(w, r)
		case jwksPath:
			jwks.ServeHTTP(w, r)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// authAttrs describes the auth mode for the "listening" log line.
func authAttrs(cfg *config.Config) []any {
	attrs := []any{"auth", cfg.Auth.Mode}
	if cfg.Auth.Mode == config.AuthToken {
		attrs = append(attrs, "realm", cfg.TokenRealm(), "service", cfg.Auth.Token.Service,
			"issuer", cfg.Auth.Issuer.Enabled)
	}
	return attrs
}

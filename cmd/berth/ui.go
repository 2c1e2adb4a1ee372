package main

import (
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/berth-registry/berth/auth/issuer"
	"github.com/berth-registry/berth/gc"
	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/registry/proxy"
	"github.com/berth-registry/berth/registry/ui"
	"github.com/berth-registry/berth/storage/store"
)

// uiParts are what the web UI is built from.
type uiParts struct {
	st     *store.Store
	iss    *issuer.Issuer    // nil: not token auth with the built-in issuer
	cache  *proxy.Cache      // names the upstream of a cached repository (nil: none)
	usage  *gc.UsageReporter // shared with the registry's usage API
	nextGC func() time.Time  // nil: no periodic collection in the server
}

// withUI serves the web UI at /ui/ in front of next, when cfg enables it.
// Without auth everyone may use it; under token auth with the built-in
// issuer (iss) visitors sign in with the issuer's users and see and do
// what its policy grants them. Under htpasswd auth or an external token
// issuer the UI stays off (it has no way to know the grants), and says so
// in the log.
func withUI(next http.Handler, cfg *config.Config, parts uiParts, logger *slog.Logger) (http.Handler, error) {
	iss := parts.iss
	if !cfg.UI.Enabled {
		return next, nil
	}
	var access ui.Access
	var sessionKey []byte
	switch {
	case cfg.Auth.Mode == config.AuthNone:
	case iss != nil:
		access = iss
		key, err := iss.DeriveKey("berth ui session")
		if err != nil {
			logger.Warn("web UI: the signing key cannot derive a session key; sessions end with the process", "error", err)
		}
		sessionKey = key
	default:
		logger.Info("web UI off: it signs visitors in through the built-in token issuer, which this auth mode does not run", "auth", cfg.Auth.Mode)
		return next, nil
	}
	src := ui.NewStoreSource(parts.st, parts.cache.UpstreamOf).WithStorage(parts.usage, parts.nextGC)
	h, err := ui.New(ui.Options{Source: src, Logger: logger,
		DeleteEnabled: cfg.Storage.Delete.Enabled, Access: access, SessionKey: sessionKey})
	if err != nil {
		return nil, err
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ui" || strings.HasPrefix(r.URL.Path, ui.Prefix) {
			h.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	}), nil
}

package main

import (
	"log/slog"
	"net/http"
	"strings"

	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/registry/ui"
	"github.com/berth-registry/berth/storage/store"
)

// withUI serves the web UI at /ui/ in front of next, when cfg enables it
// and no auth is configured (the UI's sign-in is still to come: under auth
// it stays off, and says so in the log).
func withUI(next http.Handler, cfg *config.Config, st *store.Store, logger *slog.Logger) (http.Handler, error) {
	if !cfg.UI.Enabled {
		return next, nil
	}
	if cfg.Auth.Mode != config.AuthNone {
		logger.Info("web UI off: it has no sign-in yet, and auth is on", "auth", cfg.Auth.Mode)
		return next, nil
	}
	upstream := func(repo string) string {
		for _, u := range cfg.Proxy.Upstreams {
			if strings.HasPrefix(repo, u.Prefix+"/") {
				return u.Name
			}
		}
		return ""
	}
	h, err := ui.New(ui.Options{Source: ui.NewStoreSource(st, upstream), Logger: logger, DeleteEnabled: cfg.Storage.Delete.Enabled})
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

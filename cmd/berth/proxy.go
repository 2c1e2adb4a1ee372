package main

import (
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/registry/proxy"
	"github.com/berth-registry/berth/storage/store"
)

// newCache builds the pull-through cache of cfg.Proxy (nil without
// upstreams). Errors name the upstream and never hold a credential.
func newCache(cfg config.Proxy, st *store.Store, logger *slog.Logger, metrics *prometheus.Registry) (*proxy.Cache, error) {
	ups := make([]proxy.Upstream, 0, len(cfg.Upstreams))
	for _, u := range cfg.Upstreams {
		key := "proxy.upstreams " + u.Name
		creds, err := proxy.LoadCredentials(proxy.CredentialSource{Username: u.Username, Password: u.Password,
			PasswordFile: u.PasswordFile, DockerConfig: u.DockerConfig}, u.URL, u.Prefix)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		tr, err := proxy.TLSTransport(u.TLS.CAFile, u.TLS.InsecureSkipVerify)
		if err != nil {
			return nil, fmt.Errorf("%s: tls: %w", key, err)
		}
		ups = append(ups, proxy.Upstream{
			Name: u.Name, URL: u.URL, Prefix: u.Prefix, Credentials: creds, Transport: tr,
			TagFreshness: u.TagFreshness, ReadTimeout: u.ReadTimeout,
			Include: u.Include, Exclude: u.Exclude, AllowPush: u.AllowPush, ExpireAfter: u.ExpireAfter,
		})
	}
	return proxy.New(proxy.Options{Store: st, Upstreams: ups, Logger: logger, Metrics: metrics,
		UserAgent: "berth/" + buildVersion() + " (proxy)"})
}

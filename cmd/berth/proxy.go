package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/registry/proxy"
	"github.com/berth-registry/berth/runner/pull"
	"github.com/berth-registry/berth/storage/store"
)

// newCache builds the pull-through cache of cfg.Proxy (nil without
// upstreams): credentials read from their files, TLS settings applied.
// Errors name the upstream and never hold a credential.
func newCache(cfg config.Proxy, st *store.Store, logger *slog.Logger, metrics *prometheus.Registry) (*proxy.Cache, error) {
	ups := make([]proxy.Upstream, 0, len(cfg.Upstreams))
	for _, u := range cfg.Upstreams {
		key := "proxy.upstreams " + u.Name
		creds, err := upstreamCredentials(u)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		tr, err := upstreamTransport(u.TLS)
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

// upstreamCredentials returns the credentials an upstream's config names.
func upstreamCredentials(u config.Upstream) (pull.Credentials, error) {
	switch {
	case u.PasswordFile != "":
		b, err := os.ReadFile(u.PasswordFile)
		if err != nil {
			return pull.Credentials{}, fmt.Errorf("passwordFile: %w", err)
		}
		return pull.Credentials{Username: u.Username, Password: strings.TrimRight(string(b), "\r\n")}, nil
	case u.DockerConfig != "":
		dc, err := pull.LoadDockerConfig(u.DockerConfig)
		if err != nil {
			return pull.Credentials{}, fmt.Errorf("dockerConfig: %w", err)
		}
		pu, err := url.Parse(u.URL)
		if err != nil {
			return pull.Credentials{}, err
		}
		host := pu.Host
		if u.Prefix == "docker.io" {
			host = "docker.io" // docker logs in to Docker Hub under its index name
		}
		return dc.Credentials(host)
	}
	return pull.Credentials{Username: u.Username, Password: u.Password}, nil
}

// upstreamTransport returns the transport of an upstream with custom TLS
// settings, nil (the default) without.
func upstreamTransport(c config.UpstreamTLS) (http.RoundTripper, error) {
	if c.CAFile == "" && !c.InsecureSkipVerify {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.InsecureSkipVerify} //nolint:gosec // the operator asked for it
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, err
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("caFile %s holds no PEM certificate", c.CAFile)
		}
		tc.RootCAs = pool
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = tc
	return t, nil
}

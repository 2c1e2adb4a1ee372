package main

import (
	"crypto/tls"
	"log/slog"
	"time"

	"github.com/berth-registry/berth/internal/reload"
)

// certCheckInterval is how often, at most, a handshake looks at the
// certificate files.
const certCheckInterval = reload.DefaultInterval

// certReloader serves the TLS certificate in certFile and keyFile and loads
// them again when either file changes (a renewal by certbot or
// cert-manager), without a restart. A new pair that does not load (a
// half-written file, a key that does not match) is logged and the previous
// one is kept. It is safe for concurrent use.
type certReloader struct {
	now  func() time.Time // time.Now; tests move it before the first handshake
	pair *reload.Value[*tls.Certificate]
}

// newCertReloader loads the pair, which must be valid.
func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{now: time.Now}
	load := func() (*tls.Certificate, error) {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, err // "open FILE: ...", as serve has always said
		}
		return &cert, nil
	}
	pair, err := reload.New([]string{certFile, keyFile}, load, reload.Options[*tls.Certificate]{
		What:     "TLS certificate",
		Log:      log,
		Now:      func() time.Time { return r.now() },
		Interval: certCheckInterval,
		Describe: func(c *tls.Certificate) []any {
			if c.Leaf == nil {
				return nil
			}
			return []any{"subject", c.Leaf.Subject.String(), "notAfter", c.Leaf.NotAfter.UTC().Format(time.RFC3339)}
		},
	})
	if err != nil {
		return nil, err
	}
	r.pair = pair
	return r, nil
}

// GetCertificate is tls.Config.GetCertificate: the current pair, after a
// reload if a file changed since the last look, at most once per
// certCheckInterval.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.pair.Get(), nil
}

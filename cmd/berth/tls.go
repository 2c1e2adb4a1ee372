package main

import (
	"crypto/tls"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certCheckInterval is how often, at most, a handshake looks at the
// certificate files.
const certCheckInterval = time.Second

// certReloader serves the TLS certificate in certFile and keyFile and loads
// them again when either file changes (a renewal by certbot or
// cert-manager), without a restart. A new pair that does not load (a
// half-written file, a key that does not match) is logged and the previous
// one is kept. It is safe for concurrent use.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger
	now               func() time.Time // time.Now; tests move it

	mu        sync.Mutex
	cert      *tls.Certificate
	certStamp fileStamp
	keyStamp  fileStamp
	checked   time.Time // last look at the files
}

// fileStamp is what tells that a file changed.
type fileStamp struct {
	modTime time.Time
	size    int64
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{modTime: fi.ModTime(), size: fi.Size()}, nil
}

// newCertReloader loads the pair, which must be valid.
func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log, now: time.Now}
	cs, ks, serr := r.stamps() // before loading: a change meanwhile is seen at the next check
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err // "open FILE: ...", as serve has always said
	}
	if serr != nil {
		return nil, serr
	}
	r.cert, r.certStamp, r.keyStamp, r.checked = &cert, cs, ks, r.now()
	return r, nil
}

func (r *certReloader) stamps() (cert, key fileStamp, err error) {
	if cert, err = stampOf(r.certFile); err != nil {
		return
	}
	key, err = stampOf(r.keyFile)
	return
}

// GetCertificate is tls.Config.GetCertificate: the current pair, after a
// reload if a file changed since the last look, at most once per
// certCheckInterval.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.now(); now.Sub(r.checked) >= certCheckInterval || now.Before(r.checked) {
		r.checked = now
		r.reloadIfChanged()
	}
	return r.cert, nil
}

// reloadIfChanged loads the pair again if either file's stamp changed.
// Called with r.mu held.
func (r *certReloader) reloadIfChanged() {
	cs, ks, err := r.stamps()
	if err != nil {
		// Mid-replacement, perhaps: look again next time.
		r.log.Warn("TLS certificate files unreadable: keeping the current certificate", "error", err)
		return
	}
	if cs == r.certStamp && ks == r.keyStamp {
		return
	}
	// Remembered even if the pair fails to load: one warning per change,
	// and the next write to either file is tried again.
	r.certStamp, r.keyStamp = cs, ks
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		r.log.Warn("TLS certificate files changed but do not load: keeping the current certificate",
			"certificate", r.certFile, "key", r.keyFile, "error", err)
		return
	}
	r.cert = &cert
	attrs := []any{"certificate", r.certFile}
	if cert.Leaf != nil {
		attrs = append(attrs, "subject", cert.Leaf.Subject.String(),
			"notAfter", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	r.log.Info("reloaded TLS certificate", attrs...)
}

package config

import (
	"net"
	"net/netip"
	"strconv"
	"time"
)

// HTTP configures the listener and the HTTP server. There is deliberately no
// overall read or write timeout: blob uploads and downloads can take as long
// as gigabytes take; slow clients are bounded by ReadHeaderTimeout,
// BodyTimeout and IdleTimeout instead.
type HTTP struct {
	// Addr is the TCP address to listen on, host:port. An empty host listens
	// on every interface; port 0 picks a free port (logged at start).
	// Default: 127.0.0.1:5000.
	Addr string `yaml:"addr"`
	// ReadHeaderTimeout bounds how long a client may take to send a
	// request's headers. Must be positive. Default: 30s.
	ReadHeaderTimeout time.Duration `yaml:"readHeaderTimeout"`
	// BodyTimeout cuts a request body from which nothing arrives for this
	// long: 408, and an upload keeps what arrived, so the client can
	// resume. Must be positive. Default: 1m.
	BodyTimeout time.Duration `yaml:"bodyTimeout"`
	// IdleTimeout closes keep-alive connections idle this long. Must be
	// positive. Default: 2m.
	IdleTimeout time.Duration `yaml:"idleTimeout"`
	// DrainTimeout is how long a SIGTERM or SIGINT waits for in-flight
	// requests (uploads, downloads) to finish before their connections are
	// closed. 0 closes them at once. Default: 5m.
	DrainTimeout time.Duration `yaml:"drainTimeout"`
	// MaxConnections caps the client connections open at once; 0 is no
	// cap. A connection beyond it waits in the listen queue until one
	// closes (an idle keep-alive connection is closed first to make room):
	// clients see a slower connect, never an error. Set it under the
	// process's open-files limit (ulimit -n), which stores and uploads use
	// too. Must not be negative. Default: 0.
	MaxConnections int `yaml:"maxConnections"`
	// TLS turns on HTTPS.
	TLS TLS `yaml:"tls"`
	// TrustedProxies lists the reverse proxies in front of berth, as IP
	// addresses or CIDR prefixes (10.0.0.5, 10.0.0.0/8, fd00::/8). A request
	// whose TCP peer is one of them comes from the right-most
	// X-Forwarded-For entry that is not itself listed; X-Forwarded-For from
	// any other peer is ignored. Failed logins are throttled per client
	// address. Default: [] (the TCP peer is the client).
	TrustedProxies []string `yaml:"trustedProxies"`
}

// TLS names a PEM certificate chain and its private key. Set both to serve
// HTTPS, or neither to serve plain HTTP (behind a TLS-terminating proxy).
type TLS struct {
	// Certificate is the path of the PEM certificate chain, leaf first.
	// Default: "" (no TLS).
	Certificate string `yaml:"certificate"`
	// Key is the path of the PEM private key of the certificate.
	// Default: "" (no TLS).
	Key string `yaml:"key"`
}

// Enabled reports whether HTTPS is configured.
func (t TLS) Enabled() bool { return t.Certificate != "" && t.Key != "" }

func defaultHTTP() HTTP {
	return HTTP{
		Addr:              "127.0.0.1:5000",
		ReadHeaderTimeout: 30 * time.Second,
		BodyTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
		DrainTimeout:      5 * time.Minute,
		TrustedProxies:    []string{},
	}
}

func (h *HTTP) validate(report reportFunc) {
	if _, port, err := net.SplitHostPort(h.Addr); err != nil {
		report("http.addr", "%q is not host:port", h.Addr)
	} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		report("http.addr", "%q: port %q is not a number from 0 to 65535", h.Addr, port)
	}
	if h.ReadHeaderTimeout <= 0 {
		report("http.readHeaderTimeout", "%s must be positive", h.ReadHeaderTimeout)
	}
	if h.BodyTimeout <= 0 {
		report("http.bodyTimeout", "%s must be positive", h.BodyTimeout)
	}
	if h.IdleTimeout <= 0 {
		report("http.idleTimeout", "%s must be positive", h.IdleTimeout)
	}
	if h.MaxConnections < 0 {
		report("http.maxConnections", "%d must not be negative (0 is no cap)", h.MaxConnections)
	}
	if h.DrainTimeout < 0 {
		report("http.drainTimeout", "%s must not be negative", h.DrainTimeout)
	}
	if (h.TLS.Certificate == "") != (h.TLS.Key == "") {
		report("http.tls", "set both certificate and key, or neither")
	}
	for _, p := range h.TrustedProxies {
		if _, err := netip.ParseAddr(p); err == nil {
			continue
		}
		if _, err := netip.ParsePrefix(p); err != nil {
			report("http.trustedProxies", "%q is not an IP address or a CIDR prefix such as 10.0.0.0/8", p)
		}
	}
}

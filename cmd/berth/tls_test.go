package main

import (
	"bytes"
	"crypto/tls"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCertReloader: a replaced pair is served after the next check, at
// most once per second; a new pair that does not load keeps the old one.
func TestCertReloader(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	// stamp gives the files distinct mtimes: two writes within one clock
	// tick of the file system would otherwise look unchanged.
	mtime := time.Now().Add(-time.Hour)
	stamp := func() {
		t.Helper()
		mtime = mtime.Add(time.Minute)
		for _, f := range []string{certFile, keyFile} {
			if err := os.Chtimes(f, mtime, mtime); err != nil {
				t.Fatal(err)
			}
		}
	}
	writeSelfSigned(t, certFile, keyFile)
	stamp()

	var logs syncBuffer
	r, err := newCertReloader(certFile, keyFile, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	r.now = func() time.Time { return clock }
	get := func() []byte {
		t.Helper()
		c, err := r.GetCertificate(&tls.ClientHelloInfo{})
		if err != nil || c == nil {
			t.Fatalf("GetCertificate: %v, %v", c, err)
		}
		return c.Certificate[0]
	}
	first := get()

	writeSelfSigned(t, certFile, keyFile)
	stamp()
	if !bytes.Equal(get(), first) {
		t.Error("reloaded before a second passed")
	}
	clock = clock.Add(certCheckInterval)
	second := get()
	if bytes.Equal(second, first) {
		t.Fatal("replaced pair not reloaded")
	}
	if !strings.Contains(logs.String(), "reloaded TLS certificate") {
		t.Errorf("no log of the reload:\n%s", logs.String())
	}

	// A certificate with a key that does not match it, then garbage.
	otherDir := t.TempDir()
	writeSelfSigned(t, filepath.Join(otherDir, "c"), filepath.Join(otherDir, "k"))
	otherKey, err := os.ReadFile(filepath.Join(otherDir, "k"))
	if err != nil {
		t.Fatal(err)
	}
	for name, write := range map[string]func() error{
		"mismatched key": func() error { return os.WriteFile(keyFile, otherKey, 0o600) },
		"garbage":        func() error { return os.WriteFile(certFile, []byte("not PEM"), 0o600) },
	} {
		if err := write(); err != nil {
			t.Fatal(err)
		}
		stamp()
		clock = clock.Add(certCheckInterval)
		if !bytes.Equal(get(), second) {
			t.Errorf("%s: not serving the previous pair", name)
		}
	}
	if n := strings.Count(logs.String(), "does not load"); n != 2 {
		t.Errorf("%d warnings for two bad pairs, want 2:\n%s", n, logs.String())
	}
	// Unchanged bad files are not loaded (nor warned about) again.
	clock = clock.Add(certCheckInterval)
	get()
	if n := strings.Count(logs.String(), "does not load"); n != 2 {
		t.Errorf("%d warnings after a check without changes, want 2", n)
	}

	// Fixed: the new valid pair is served.
	writeSelfSigned(t, certFile, keyFile)
	stamp()
	clock = clock.Add(certCheckInterval)
	if third := get(); bytes.Equal(third, second) {
		t.Error("fixed pair not reloaded")
	}
}

func TestCertReloaderInvalidAtStart(t *testing.T) {
	dir := t.TempDir()
	if _, err := newCertReloader(filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem"), slog.New(slog.DiscardHandler)); err == nil {
		t.Error("missing files: no error")
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeSelfSigned(t, certFile, keyFile)
	if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := newCertReloader(certFile, keyFile, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("invalid key: no error")
	}
}

// TestCertReloaderHandshake: a TLS client gets the reloaded certificate.
func TestCertReloaderHandshake(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeSelfSigned(t, certFile, keyFile)
	r, err := newCertReloader(certFile, keyFile, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	r.now = func() time.Time { return clock }
	pool := writeSelfSigned(t, certFile, keyFile)
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(certFile, later, later); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(certCheckInterval)

	c1, c2 := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = tls.Server(c1, &tls.Config{GetCertificate: r.GetCertificate, MinVersion: tls.VersionTLS12}).Handshake()
		c1.Close()
	}()
	err = tls.Client(c2, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}).Handshake()
	// Closing the raw conn, not the tls.Conn: no close_notify to wait for on a pipe.
	c2.Close()
	<-done
	if err != nil {
		t.Fatalf("handshake with the reloaded certificate: %v", err)
	}
}

package pull

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// dialTo returns a transport that connects every address to addr, so that a test server
// on loopback can stand for a registry with a non-loopback name.
func dialTo(addr string) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	return t
}

func TestSchemeSelection(t *testing.T) {
	v2 := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v2/" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("{}"))
	})
	plain := httptest.NewServer(v2)
	defer plain.Close()
	tlsSrv := httptest.NewUnstartedServer(v2)
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	tlsSrv.StartTLS()
	defer tlsSrv.Close()
	ctx := context.Background()

	t.Run("loopback is plain HTTP", func(t *testing.T) {
		c := NewClient(ClientOptions{})
		st, err := c.registry(ctx, strings.TrimPrefix(plain.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(st.base, "http://") {
			t.Errorf("base %q, want http", st.base)
		}
	})
	t.Run("other hosts need HTTPS", func(t *testing.T) {
		c := NewClient(ClientOptions{Transport: dialTo(plain.Listener.Addr().String())})
		if _, err := c.registry(ctx, "registry.test"); err == nil {
			t.Fatal("a plain HTTP server was accepted for a non-loopback registry")
		}
	})
	t.Run("Insecure falls back to plain HTTP", func(t *testing.T) {
		c := NewClient(ClientOptions{Insecure: true, Transport: dialTo(plain.Listener.Addr().String())})
		st, err := c.registry(ctx, "registry.test")
		if err != nil {
			t.Fatal(err)
		}
		if st.base != "http://registry.test" {
			t.Errorf("base %q, want http://registry.test", st.base)
		}
	})
	t.Run("HTTPS verifies certificates", func(t *testing.T) {
		c := NewClient(ClientOptions{Transport: dialTo(tlsSrv.Listener.Addr().String())})
		if _, err := c.registry(ctx, "registry.test"); err == nil {
			t.Fatal("an untrusted certificate was accepted")
		}
		tr := dialTo(tlsSrv.Listener.Addr().String())
		tr.TLSClientConfig = tlsSrv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
		tr.TLSClientConfig.ServerName = "example.com" // in httptest's certificate
		c = NewClient(ClientOptions{Transport: tr})
		st, err := c.registry(ctx, "registry.test")
		if err != nil {
			t.Fatal(err)
		}
		if st.base != "https://registry.test" {
			t.Errorf("base %q, want https://registry.test", st.base)
		}
	})
	t.Run("Insecure skips verification of the default transport", func(t *testing.T) {
		c := NewClient(ClientOptions{Insecure: true})
		tr := c.http.Transport.(*http.Transport)
		if tr.TLSClientConfig == nil || !tr.TLSClientConfig.InsecureSkipVerify {
			t.Error("InsecureSkipVerify is not set")
		}
		if cfg := NewClient(ClientOptions{}).http.Transport.(*http.Transport).TLSClientConfig; cfg != nil && cfg.InsecureSkipVerify {
			t.Error("a secure client skips verification")
		}
	})
}

func TestTokenRealmOverPlainHTTP(t *testing.T) {
	ch := challenge{scheme: "bearer", params: map[string]string{"realm": "http://auth.test/token", "service": "s"}}
	creds := Credentials{Username: "u", Password: "p"}
	// No server exists: the refusal must come before any request.
	_, err := NewClient(ClientOptions{}).fetchToken(context.Background(), "registry.test", ch, nil, creds, false)
	if !errors.Is(err, ErrInsecure) {
		t.Errorf("err = %v, want ErrInsecure", err)
	}
}

func TestOrigin(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"https://r.test/v2/", "https://r.test:443/x", true},
		{"http://r.test/v2/", "http://R.TEST:80/x", true},
		{"https://r.test/", "http://r.test/", false},
		{"http://127.0.0.1:5000/", "http://127.0.0.1:5001/", false},
		{"https://r.test/", "https://s3.r.test/", false},
	} {
		a, _ := url.Parse(tc.a)
		b, _ := url.Parse(tc.b)
		if got := origin(a) == origin(b); got != tc.same {
			t.Errorf("same origin %s, %s = %t, want %t", tc.a, tc.b, got, tc.same)
		}
	}
}

func TestRedactDropsQuery(t *testing.T) {
	u, _ := url.Parse("https://user:pw@s3.test/bucket/blob?X-Amz-Signature=secret#f")
	if got := redact(u); got != "https://s3.test/bucket/blob" {
		t.Errorf("redact = %q", got)
	}
}

// TestTransportErrorsRedacted: a request that fails below HTTP (nothing
// listens) reports its URL without the query, which may hold a presigned
// signature or a token request's account.
func TestTransportErrorsRedacted(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	c := NewClient(ClientOptions{Retries: -1})
	req, err := c.newRequest(t.Context(), http.MethodGet, "http://"+addr+"/token?account=alice&X-Amz-Signature=s3cr3t", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = c.send(req, "", "")
	if err == nil {
		t.Fatal("a request to a closed port succeeded")
	}
	if msg := err.Error(); strings.Contains(msg, "alice") || strings.Contains(msg, "s3cr3t") {
		t.Errorf("error %q shows the URL's query", msg)
	}
}

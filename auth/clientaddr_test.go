package auth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestClientAddr(t *testing.T) {
	proxies, err := ParseTrustedProxies([]string{"10.0.0.0/8", "192.0.2.7", "fd00::/8", "::ffff:172.16.0.0/108"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		proxies *TrustedProxies
		peer    string
		xff     []string // X-Forwarded-For lines
		want    string
	}{
		{"no proxies: the peer", nil, "198.51.100.1:4000", []string{"203.0.113.9"}, "198.51.100.1"},
		{"untrusted peer: X-Forwarded-For ignored", proxies, "198.51.100.1:4000", []string{"203.0.113.9"}, "198.51.100.1"},
		{"trusted peer without header", proxies, "10.1.2.3:4000", nil, "10.1.2.3"},
		{"trusted peer", proxies, "10.1.2.3:4000", []string{"203.0.113.9"}, "203.0.113.9"},
		{"single trusted address", proxies, "192.0.2.7:4000", []string{"203.0.113.9"}, "203.0.113.9"},
		{"neighbour of the single address", proxies, "192.0.2.8:4000", []string{"203.0.113.9"}, "192.0.2.8"},
		{"client-written entries to the left are ignored", proxies, "10.1.2.3:4000", []string{"1.1.1.1, 203.0.113.9"}, "203.0.113.9"},
		{"chain of trusted proxies", proxies, "10.1.2.3:4000", []string{"1.1.1.1, 203.0.113.9, 10.9.9.9, 192.0.2.7"}, "203.0.113.9"},
		{"several header lines", proxies, "10.1.2.3:4000", []string{"1.1.1.1", "203.0.113.9, 10.9.9.9"}, "203.0.113.9"},
		{"every hop trusted: the left-most", proxies, "10.1.2.3:4000", []string{"10.5.5.5, 10.9.9.9"}, "10.5.5.5"},
		{"garbage behind a trusted hop: that hop", proxies, "10.1.2.3:4000", []string{"evil, 10.9.9.9"}, "10.9.9.9"},
		{"garbage written by the peer: the peer", proxies, "10.1.2.3:4000", []string{"203.0.113.9, unknown"}, "10.1.2.3"},
		{"garbage left of the client is never reached", proxies, "10.1.2.3:4000", []string{"<script>, 203.0.113.9"}, "203.0.113.9"},
		{"entries with ports and spaces", proxies, "10.1.2.3:4000", []string{" 203.0.113.9:5555 ,  10.9.9.9 "}, "203.0.113.9"},
		{"IPv6 peer and client", proxies, "[fd00::1]:4000", []string{"2001:db8::5"}, "2001:db8::5"},
		{"IPv6 client with port", proxies, "[fd00::1]:4000", []string{"[2001:db8::5]:443"}, "2001:db8::5"},
		{"IPv4-mapped peer", proxies, "[::ffff:10.1.2.3]:4000", []string{"::ffff:203.0.113.9"}, "203.0.113.9"},
		{"mapped prefix", proxies, "172.16.1.1:4000", []string{"203.0.113.9"}, "203.0.113.9"},
		{"zone dropped", nil, "[fe80::1%eth0]:4000", nil, "fe80::1"},
		{"no address", proxies, "@", []string{"203.0.113.9"}, "invalid IP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tc.peer
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := tc.proxies.ClientAddr(r); got.String() != tc.want {
				t.Errorf("ClientAddr = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestParseTrustedProxies(t *testing.T) {
	for _, bad := range []string{"proxy.example", "10.0.0.0/33", "10.0.0.1:80", ""} {
		if _, err := ParseTrustedProxies([]string{"10.0.0.1", bad}); !errors.Is(err, ErrInvalidProxy) {
			t.Errorf("%q: err = %v, want ErrInvalidProxy", bad, err)
		}
	}
	p, err := ParseTrustedProxies([]string{"10.0.0.1/8"}) // host bits set: the prefix
	if err != nil || !p.trusted(netip.MustParseAddr("10.200.0.1")) {
		t.Errorf("10.0.0.1/8: %v, %v", p, err)
	}
	if p, err := ParseTrustedProxies(nil); err != nil || p.trusted(netip.MustParseAddr("10.0.0.1")) {
		t.Errorf("empty list: %v, %v", p, err)
	}
}

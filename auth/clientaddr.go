package auth

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// ErrInvalidProxy is wrapped by ParseTrustedProxies for an entry that is neither an IP
// address nor a CIDR prefix.
var ErrInvalidProxy = errors.New("auth: invalid trusted proxy")

// TrustedProxies are the reverse proxies whose X-Forwarded-For header is believed
// (http.trustedProxies). A nil *TrustedProxies trusts none. It is immutable and safe
// for concurrent use.
type TrustedProxies struct {
	prefixes []netip.Prefix
}

// ParseTrustedProxies parses IP addresses ("10.0.0.5", "::1") and CIDR prefixes
// ("10.0.0.0/8", "fd00::/8"). An entry that is neither is an error naming it.
func ParseTrustedProxies(list []string) (*TrustedProxies, error) {
	p := &TrustedProxies{}
	for _, s := range list {
		if a, err := netip.ParseAddr(s); err == nil {
			a = a.Unmap().WithZone("")
			p.prefixes = append(p.prefixes, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%w: %q is not an IP address or a CIDR prefix", ErrInvalidProxy, s)
		}
		if pfx.Addr().Is4In6() && pfx.Bits() >= 96 {
			pfx = netip.PrefixFrom(pfx.Addr().Unmap(), pfx.Bits()-96)
		}
		p.prefixes = append(p.prefixes, pfx.Masked())
	}
	return p, nil
}

// trusted reports whether a is one of the proxies.
func (p *TrustedProxies) trusted(a netip.Addr) bool {
	if p == nil || !a.IsValid() {
		return false
	}
	for _, pfx := range p.prefixes {
		if pfx.Contains(a) {
			return true
		}
	}
	return false
}

// ClientAddr returns the address of the client that sent r. It is the TCP peer
// (r.RemoteAddr) unless the peer is a trusted proxy; then it is the right-most
// X-Forwarded-For entry (all the header's lines, in order) that is not itself a trusted
// proxy: each trusted proxy appends the address it saw, so everything to the left of
// the first untrusted hop may have been written by the client and is ignored. When
// every entry is trusted, the left-most one is the client; when an entry does not
// parse, the trusted hop that wrote it is. IPv4-mapped IPv6 addresses are returned as
// IPv4, without zone. The zero Addr means r.RemoteAddr does not hold an address.
//
// The registry's access log can use it too, so that logs and throttling agree.
func (p *TrustedProxies) ClientAddr(r *http.Request) netip.Addr {
	peer := parseAddr(r.RemoteAddr)
	if !p.trusted(peer) {
		return peer
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		a := parseAddr(strings.TrimSpace(hops[i]))
		if !a.IsValid() {
			return client // the trusted hop that wrote garbage
		}
		client = a
		if !p.trusted(a) {
			return a
		}
	}
	return client
}

// parseAddr parses "ip", "ip:port" or "[ip]:port"; the zero Addr if none.
func parseAddr(s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return netip.Addr{}
		}
		a = ap.Addr()
	}
	return a.Unmap().WithZone("")
}

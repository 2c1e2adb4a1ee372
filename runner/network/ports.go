package network

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Protocols of a published port.
const (
	TCP = "tcp"
	UDP = "udp"
)

// PortMapping is one published port: HostIP:HostPort on the host to
// ContainerPort of the container, as docker's -p says it.
type PortMapping struct {
	// HostIP is the host address the port is published on; the zero
	// Addr means every address (0.0.0.0).
	HostIP netip.Addr `json:"hostIP,omitzero"`
	// HostPort is the host port; 0 picks a free one. With HostPortEnd,
	// the first free port of HostPort..HostPortEnd.
	HostPort    uint16 `json:"hostPort,omitempty"`
	HostPortEnd uint16 `json:"hostPortEnd,omitempty"`
	// ContainerPort is the port in the container.
	ContainerPort uint16 `json:"containerPort"`
	// Proto is TCP or UDP.
	Proto string `json:"proto"`
}

// String writes m the way `docker port` does: 80/tcp -> 0.0.0.0:8080.
func (m PortMapping) String() string {
	ip := m.HostIP
	if !ip.IsValid() {
		ip = netip.IPv4Unspecified()
	}
	return fmt.Sprintf("%d/%s -> %s", m.ContainerPort, m.Proto, netip.AddrPortFrom(ip, m.HostPort))
}

// ParsePublish parses a -p value in docker's grammar:
//
//	[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]
//
// where the ports may be ranges (8000-8009:80-89 maps port by port; a
// host range to one container port takes the first free host port of the
// range), HOST_PORT may be empty (127.0.0.1::80) or absent for a free
// port, HOST_IP an IPv4 address or a bracketed IPv6 one, PROTO tcp (the
// default) or udp. Errors wrap ErrInvalid and quote s.
func ParsePublish(s string) ([]PortMapping, error) {
	bad := func(why string, args ...any) ([]PortMapping, error) {
		return nil, fmt.Errorf("%w: publish %q: %s", ErrInvalid, s, fmt.Sprintf(why, args...))
	}
	rest, proto := s, TCP
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		rest, proto = rest[:i], strings.ToLower(rest[i+1:])
		if proto != TCP && proto != UDP {
			return bad("protocol %q: want tcp or udp", proto)
		}
	}
	var ipPart string
	if strings.HasPrefix(rest, "[") {
		end := strings.Index(rest, "]:")
		if end < 0 {
			return bad("an IPv6 host address must be [ADDR]:HOST_PORT:CONTAINER_PORT")
		}
		ipPart, rest = rest[1:end], rest[end+2:]
		if !strings.Contains(rest, ":") {
			return bad("an IPv6 host address must be [ADDR]:HOST_PORT:CONTAINER_PORT")
		}
	}
	parts := strings.Split(rest, ":")
	var hostPart, ctrPart string
	switch {
	case ipPart != "" && len(parts) == 2:
		hostPart, ctrPart = parts[0], parts[1]
	case ipPart == "" && len(parts) == 1:
		ctrPart = parts[0]
	case ipPart == "" && len(parts) == 2:
		hostPart, ctrPart = parts[0], parts[1]
	case ipPart == "" && len(parts) == 3:
		ipPart, hostPart, ctrPart = parts[0], parts[1], parts[2]
	default:
		return bad("want [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp]")
	}
	var hostIP netip.Addr
	if ipPart != "" {
		a, err := netip.ParseAddr(ipPart)
		if err != nil || a.Zone() != "" {
			return bad("host address %q is not an IP address", ipPart)
		}
		if !a.IsUnspecified() {
			hostIP = a.Unmap()
		}
	}
	if ctrPart == "" {
		return bad("no container port")
	}
	c0, c1, err := portRange(ctrPart)
	if err != nil {
		return bad("container port %s", err)
	}
	var h0, h1 uint16
	if hostPart != "" {
		if h0, h1, err = portRange(hostPart); err != nil {
			return bad("host port %s", err)
		}
	}
	m := PortMapping{HostIP: hostIP, Proto: proto}
	switch {
	case hostPart == "":
		var out []PortMapping
		for p := int(c0); p <= int(c1); p++ {
			m.ContainerPort = uint16(p)
			out = append(out, m)
		}
		return out, nil
	case c0 == c1 && h0 != h1:
		m.HostPort, m.HostPortEnd, m.ContainerPort = h0, h1, c0
		return []PortMapping{m}, nil
	case h1-h0 != c1-c0:
		return bad("the host range %s and the container range %s differ in length", hostPart, ctrPart)
	}
	var out []PortMapping
	for i := 0; i <= int(c1-c0); i++ {
		m.HostPort, m.ContainerPort = h0+uint16(i), c0+uint16(i)
		out = append(out, m)
	}
	return out, nil
}

// portRange parses "N" or "N-M" (1 <= N <= M <= 65535).
func portRange(s string) (lo, hi uint16, err error) {
	a, b, isRange := strings.Cut(s, "-")
	p := func(x string) (uint16, error) {
		n, err := strconv.ParseUint(x, 10, 16)
		if err != nil || n == 0 {
			return 0, fmt.Errorf("%q: want a number from 1 to 65535", x)
		}
		return uint16(n), nil
	}
	if lo, err = p(a); err != nil {
		return 0, 0, err
	}
	hi = lo
	if isRange {
		if hi, err = p(b); err != nil {
			return 0, 0, err
		}
		if hi < lo {
			return 0, 0, fmt.Errorf("range %q ends before it starts", s)
		}
	}
	return lo, hi, nil
}

// ParseExposed parses an image config's ExposedPorts key: "80/tcp",
// "53/udp", or "8080" (tcp), or a range "8000-8002/tcp". Errors wrap
// ErrInvalid.
func ParseExposed(s string) ([]PortMapping, error) {
	port, proto, _ := strings.Cut(s, "/")
	if proto == "" {
		proto = TCP
	}
	proto = strings.ToLower(proto)
	if proto != TCP && proto != UDP {
		return nil, fmt.Errorf("%w: exposed port %q: protocol %q is not tcp or udp", ErrInvalid, s, proto)
	}
	lo, hi, err := portRange(port)
	if err != nil {
		return nil, fmt.Errorf("%w: exposed port %q: %s", ErrInvalid, s, err)
	}
	var out []PortMapping
	for p := int(lo); p <= int(hi); p++ {
		out = append(out, PortMapping{ContainerPort: uint16(p), Proto: proto})
	}
	return out, nil
}

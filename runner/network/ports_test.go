package network_test

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/berth-registry/berth/runner/network"
)

func TestParsePublish(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	m := func(ip netip.Addr, host, ctr uint16, proto string) network.PortMapping {
		return network.PortMapping{HostIP: ip, HostPort: host, ContainerPort: ctr, Proto: proto}
	}
	var any netip.Addr
	for _, tc := range []struct {
		in   string
		want []network.PortMapping
	}{
		{"80", []network.PortMapping{m(any, 0, 80, "tcp")}},
		{"8080:80", []network.PortMapping{m(any, 8080, 80, "tcp")}},
		{"127.0.0.1:8080:80", []network.PortMapping{m(lo, 8080, 80, "tcp")}},
		{"127.0.0.1::80/udp", []network.PortMapping{m(lo, 0, 80, "udp")}},
		{"0.0.0.0:53:53/UDP", []network.PortMapping{m(any, 53, 53, "udp")}},
		{"[::1]:8080:80", []network.PortMapping{m(netip.MustParseAddr("::1"), 8080, 80, "tcp")}},
		{"8000-8001:80-81", []network.PortMapping{m(any, 8000, 80, "tcp"), m(any, 8001, 81, "tcp")}},
		{"80-81", []network.PortMapping{m(any, 0, 80, "tcp"), m(any, 0, 81, "tcp")}},
		{"9000-9009:80", []network.PortMapping{{HostPort: 9000, HostPortEnd: 9009, ContainerPort: 80, Proto: "tcp"}}},
	} {
		got, err := network.ParsePublish(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParsePublish(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestParsePublishErrors(t *testing.T) {
	for in, want := range map[string]string{
		"":                  "no container port",
		"8080:":             "no container port",
		"80/sctp":           `protocol "sctp"`,
		"x:80":              `host port "x"`,
		"8080:0":            `container port "0"`,
		"8080:70000":        `"70000"`,
		"localhost:8080:80": `host address "localhost"`,
		"1:2:3:4":           "want [HOST_IP:]",
		"8000-8002:80-81":   "differ in length",
		"90-80:80":          "ends before it starts",
		"[::1]8080:80":      "IPv6",
	} {
		_, err := network.ParsePublish(in)
		if !errors.Is(err, network.ErrInvalid) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "\""+in+"\"") {
			t.Errorf("ParsePublish(%q): %v; want ErrInvalid naming the spec and %q", in, err, want)
		}
	}
}

func TestParseExposed(t *testing.T) {
	got, err := network.ParseExposed("53/udp")
	if err != nil || len(got) != 1 || got[0].ContainerPort != 53 || got[0].Proto != "udp" {
		t.Errorf("53/udp: %+v, %v", got, err)
	}
	if got, err := network.ParseExposed("8080"); err != nil || got[0].Proto != "tcp" {
		t.Errorf("8080: %+v, %v", got, err)
	}
	if _, err := network.ParseExposed("80/icmp"); !errors.Is(err, network.ErrInvalid) {
		t.Errorf("80/icmp: %v", err)
	}
}

func TestPortMappingString(t *testing.T) {
	p := network.PortMapping{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 8080, ContainerPort: 80, Proto: "tcp"}
	if s := p.String(); s != "80/tcp -> 127.0.0.1:8080" {
		t.Errorf("%q", s)
	}
	p.HostIP = netip.Addr{}
	if s := p.String(); s != "80/tcp -> 0.0.0.0:8080" {
		t.Errorf("%q", s)
	}
}

package network

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// vethName is the host end of a container's veth pair.
func vethName(id string) string { return "bth" + shortID(id) }

// linkErr names what failed, and turns a missing privilege into
// ErrUnsupported.
func linkErr(what string, err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w: %s: %v (a bridge network needs CAP_NET_ADMIN; use --network none or host)", ErrUnsupported, what, err)
	}
	if errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("%w: %s: %v", ErrUnsupported, what, err)
	}
	return fmt.Errorf("network: %s: %w", what, err)
}

func ipNet(p netip.Prefix, a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(p.Bits(), a.BitLen())}
}

// ensureBridge makes nw's bridge with its gateway address and brings it
// up (nothing to do when it is so already).
func ensureBridge(nw Network) (netlink.Link, error) {
	br, err := netlink.LinkByName(nw.Bridge)
	if _, missing := err.(netlink.LinkNotFoundError); missing {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = nw.Bridge
		err = netlink.LinkAdd(&netlink.Bridge{LinkAttrs: attrs})
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, linkErr("creating bridge "+nw.Bridge, err)
		}
		br, err = netlink.LinkByName(nw.Bridge)
	}
	if err != nil {
		return nil, linkErr("bridge "+nw.Bridge, err)
	}
	if _, ok := br.(*netlink.Bridge); !ok {
		return nil, fmt.Errorf("%w: %s is a %s, not a bridge", ErrExists, nw.Bridge, br.Type())
	}
	addrs, err := netlink.AddrList(br, netlink.FAMILY_V4)
	if err != nil {
		return nil, linkErr("addresses of "+nw.Bridge, err)
	}
	have := false
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP)
		ones, _ := a.Mask.Size()
		if ip.Unmap() == nw.Gateway && ones == nw.Subnet.Bits() {
			have = true
		}
	}
	if !have {
		err := netlink.AddrAdd(br, &netlink.Addr{IPNet: ipNet(nw.Subnet, nw.Gateway)})
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, linkErr("address "+nw.Gateway.String()+" on "+nw.Bridge, err)
		}
	}
	if br.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(br); err != nil {
			return nil, linkErr("bringing up "+nw.Bridge, err)
		}
	}
	return br, nil
}

// connect gives the network namespace of pid an eth0 on br: a veth pair
// whose host end (vethName(id)) is on the bridge and whose other end is
// made in the namespace, with ip and a default route via the gateway.
func connect(pid int, id string, br netlink.Link, nw Network, ip netip.Addr) error {
	ns, err := netns.GetFromPid(pid)
	if err != nil {
		return fmt.Errorf("network: the namespace of pid %d: %w", pid, err)
	}
	defer ns.Close()
	name := vethName(id)
	attrs := netlink.NewLinkAttrs()
	attrs.Name, attrs.MasterIndex, attrs.MTU = name, br.Attrs().Index, br.Attrs().MTU
	veth := &netlink.Veth{LinkAttrs: attrs, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns))}
	err = netlink.LinkAdd(veth)
	if errors.Is(err, unix.EEXIST) {
		deleteLink(name) // left by a crashed run
		err = netlink.LinkAdd(veth)
	}
	if err != nil {
		return linkErr("creating veth "+name, err)
	}
	host, err := netlink.LinkByName(name)
	if err == nil {
		err = netlink.LinkSetUp(host)
	}
	if err != nil {
		deleteLink(name)
		return linkErr("bringing up "+name, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		deleteLink(name)
		return linkErr("entering the container's namespace", err)
	}
	defer h.Close()
	err = func() error {
		eth0, err := h.LinkByName("eth0")
		if err != nil {
			return err
		}
		if err := h.AddrAdd(eth0, &netlink.Addr{IPNet: ipNet(nw.Subnet, ip)}); err != nil {
			return err
		}
		if err := h.LinkSetUp(eth0); err != nil {
			return err
		}
		return h.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: nw.Gateway.AsSlice()})
	}()
	if err != nil {
		deleteLink(name)
		return linkErr("eth0 in the container", err)
	}
	return nil
}

// deleteLink deletes the link called name; a missing one is no error.
func deleteLink(name string) error {
	l, err := netlink.LinkByName(name)
	if _, missing := err.(netlink.LinkNotFoundError); missing {
		return nil
	}
	if err == nil {
		err = netlink.LinkDel(l)
	}
	if err != nil && !errors.Is(err, unix.ENODEV) {
		return linkErr("deleting "+name, err)
	}
	return nil
}

// hostPrefixes are the IPv4 destinations of the host's routes (but the
// default route), which a new network's subnet may not overlap.
func hostPrefixes() ([]netip.Prefix, error) {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, linkErr("listing routes", err)
	}
	var out []netip.Prefix
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		a, ok := netip.AddrFromSlice(r.Dst.IP)
		ones, _ := r.Dst.Mask.Size()
		if ok && ones > 0 {
			out = append(out, netip.PrefixFrom(a.Unmap(), ones).Masked())
		}
	}
	return out, nil
}

// enableForwarding turns on IPv4 forwarding (as docker does), without
// which the NAT to the outside forwards nothing.
func enableForwarding() error {
	const knob = "/proc/sys/net/ipv4/ip_forward"
	if b, err := os.ReadFile(knob); err == nil && len(b) > 0 && b[0] == '1' {
		return nil
	}
	if err := os.WriteFile(knob, []byte("1\n"), 0o644); err != nil {
		return linkErr("enabling ip_forward", err)
	}
	return nil
}

// lockFile takes an exclusive flock on name (created) until the returned
// function is called.
func lockFile(name string) (func(), error) {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

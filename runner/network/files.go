package network

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// hostsBase are the lines every container's /etc/hosts starts with.
const hostsBase = `127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
fe00::0	ip6-localnet
ff00::0	ip6-mcastprefix
ff02::1	ip6-allnodes
ff02::2	ip6-allrouters
`

// hostsFile is the /etc/hosts of self on nw among members: the
// container's own address with its hostname and names, then (on a
// user-defined network, not the default one, as docker) every other
// member's address with its names.
func hostsFile(nw Network, self Lease, hostname string, members []Lease) []byte {
	var b bytes.Buffer
	b.WriteString(hostsBase)
	b.WriteString(self.IP.String())
	seen := map[string]bool{}
	for _, n := range append([]string{hostname}, self.Names...) {
		if n != "" && !seen[n] {
			seen[n] = true
			b.WriteString("\t" + n)
		}
	}
	b.WriteByte('\n')
	if nw.Default {
		return b.Bytes()
	}
	for _, m := range members {
		if m.ID == self.ID || len(m.Names) == 0 {
			continue
		}
		fmt.Fprintf(&b, "%s\t%s\n", m.IP, strings.Join(m.Names, "\t"))
	}
	return b.Bytes()
}

// hostsWriter returns a function that rewrites each member's hosts file
// for the members given (in place: the container sees it through a bind
// mount of that inode).
//
// On the default network, whose members do not see each other, it is nil:
// each container's hosts file is written once, by Attach.
func hostsWriter(nw Network) func([]Lease) {
	if nw.Default {
		return nil
	}
	return func(members []Lease) {
		for _, m := range members {
			if m.Hosts == "" {
				continue
			}
			writeInPlace(m.Hosts, hostsFile(nw, m, m.Hostname, members))
		}
	}
}

// writeInPlace overwrites the file at name without replacing its inode.
func writeInPlace(name string, b []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Truncate(int64(len(b)))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Resolvers docker falls back to when the host has none a container can
// reach.
var fallbackResolvers = []string{"8.8.8.8", "8.8.4.4"}

// resolvConf returns a container's /etc/resolv.conf made from the host's
// (hostConf, the contents of /etc/resolv.conf): its search and options
// lines, and its nameservers but loopback ones (127.0.0.53 of
// systemd-resolved is the host's own); where none is left, altConf (the
// contents of /run/systemd/resolve/resolv.conf, the resolvers behind
// systemd-resolved, or nil) is tried, then docker's fallback resolvers.
func resolvConf(hostConf, altConf []byte) []byte {
	out, n := filterResolv(hostConf)
	if n == 0 && altConf != nil {
		out, n = filterResolv(altConf)
	}
	if n == 0 {
		for _, r := range fallbackResolvers {
			out = append(out, "nameserver "+r)
		}
	}
	return []byte(strings.Join(out, "\n") + "\n")
}

func filterResolv(conf []byte) (lines []string, servers int) {
	sc := bufio.NewScanner(bytes.NewReader(conf))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ";") {
			continue
		}
		switch f[0] {
		case "nameserver":
			if len(f) < 2 {
				continue
			}
			a, err := netip.ParseAddr(f[1])
			if err != nil || a.IsLoopback() || a.Is6() {
				continue // IPv6: the bridge network is IPv4 only
			}
			servers++
			lines = append(lines, "nameserver "+a.String())
		case "search", "domain", "options":
			lines = append(lines, line)
		}
	}
	return lines, servers
}

// hostResolvConf reads the host's resolver configuration for resolvConf.
func hostResolvConf() []byte {
	host, _ := os.ReadFile("/etc/resolv.conf")
	alt, err := os.ReadFile("/run/systemd/resolve/resolv.conf")
	if err != nil {
		alt = nil
	}
	return resolvConf(host, alt)
}

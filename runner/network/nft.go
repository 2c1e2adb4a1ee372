package network

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// Table is berth's own nftables table (family ip). Its rules carry a
// comment naming what they are for: "berth:net:<bridge>" for a network's
// masquerade and forward rules, "berth:ctr:<id>" for a container's
// published ports; clean-up deletes by that comment.
const Table = "berth"

// nftBase makes the table and its base chains (idempotent).
const nftBase = `add table ip berth
add chain ip berth postrouting { type nat hook postrouting priority srcnat; policy accept; }
add chain ip berth prerouting { type nat hook prerouting priority dstnat; policy accept; }
add chain ip berth forward { type filter hook forward priority filter; policy accept; }
`

func netTag(nw Network) string { return "berth:net:" + nw.Bridge }
func ctrTag(id string) string  { return "berth:ctr:" + shortID(id) }

// nft runs the nft tool with script as its input (-f -).
func nft(script string) error {
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Run(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return fmt.Errorf("%w: the nft tool is not installed (nftables is needed for a bridge network's NAT)", ErrUnsupported)
		}
		msg := strings.TrimSpace(errOut.String())
		if strings.Contains(msg, "Operation not permitted") {
			return fmt.Errorf("%w: nft: %s (a bridge network needs CAP_NET_ADMIN)", ErrUnsupported, msg)
		}
		return fmt.Errorf("network: nft: %v: %s", err, msg)
	}
	return nil
}

// nftRule is a rule of berth's table as `nft -j` lists it.
type nftRule struct {
	Chain   string `json:"chain"`
	Handle  int    `json:"handle"`
	Comment string `json:"comment"`
}

// rulesTagged lists the rules of berth's table whose comment is one of
// tags (none when the table does not exist).
func rulesTagged(tags ...string) ([]nftRule, error) {
	out, err := exec.Command("nft", "-j", "-a", "list", "table", "ip", Table).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && (bytes.Contains(ee.Stderr, []byte("No such file")) || bytes.Contains(ee.Stderr, []byte("does not exist"))) {
			return nil, nil
		}
		if errors.Is(err, exec.ErrNotFound) {
			return nil, fmt.Errorf("%w: the nft tool is not installed", ErrUnsupported)
		}
		return nil, fmt.Errorf("network: nft list table %s: %v", Table, err)
	}
	var doc struct {
		Nftables []struct {
			Rule *nftRule `json:"rule"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("network: nft's JSON: %w", err)
	}
	var rules []nftRule
	for _, e := range doc.Nftables {
		if e.Rule == nil {
			continue
		}
		for _, t := range tags {
			if e.Rule.Comment == t {
				rules = append(rules, *e.Rule)
			}
		}
	}
	return rules, nil
}

// deleteScript deletes rules.
func deleteScript(rules []nftRule) string {
	var b strings.Builder
	for _, r := range rules {
		fmt.Fprintf(&b, "delete rule ip %s %s handle %d\n", Table, r.Chain, r.Handle)
	}
	return b.String()
}

// networkRules are nw's rules: masquerade what leaves its subnet for
// another interface, and accept its forwarded traffic.
func networkRules(nw Network) string {
	tag := netTag(nw)
	return fmt.Sprintf(`add rule ip berth postrouting ip saddr %[1]s oifname != "%[2]s" masquerade comment "%[3]s"
add rule ip berth forward iifname "%[2]s" accept comment "%[3]s"
add rule ip berth forward oifname "%[2]s" ct state established,related accept comment "%[3]s"
add rule ip berth forward oifname "%[2]s" ct status dnat accept comment "%[3]s"
`, nw.Subnet, nw.Bridge, tag)
}

// portRules are the DNAT rules that bring traffic from other machines
// to the container's published ports (those on loopback, or on IPv6
// addresses, only reach the forwarder).
func portRules(id string, ip fmt.Stringer, ports []PortMapping) string {
	var b strings.Builder
	for _, p := range ports {
		if !needsDNAT(p) {
			continue
		}
		match := "fib daddr type local"
		if p.HostIP.IsValid() {
			match = "ip daddr " + p.HostIP.String()
		}
		fmt.Fprintf(&b, "add rule ip berth prerouting %s %s dport %d dnat to %s:%d comment \"%s\"\n",
			match, p.Proto, p.HostPort, ip, p.ContainerPort, ctrTag(id))
	}
	return b.String()
}

// needsDNAT reports whether p gets a kernel DNAT rule.
func needsDNAT(p PortMapping) bool {
	return !p.HostIP.IsValid() || (p.HostIP.Is4() && !p.HostIP.IsLoopback())
}

// setupRules makes sure berth's table has nw's rules and adds the
// container's port rules, in one transaction.
func setupRules(nw Network, id string, ip fmt.Stringer, ports []PortMapping) error {
	have, err := rulesTagged(netTag(nw), ctrTag(id))
	if err != nil {
		return err
	}
	script := nftBase
	haveNet := false
	var stale []nftRule
	for _, r := range have {
		if r.Comment == netTag(nw) {
			haveNet = true
		} else {
			stale = append(stale, r) // a crashed run's
		}
	}
	script += deleteScript(stale)
	if !haveNet {
		script += networkRules(nw)
	}
	script += portRules(id, ip, ports)
	return nft(script)
}

// removeRules deletes the rules tagged with tags.
func removeRules(tags ...string) error {
	rules, err := rulesTagged(tags...)
	if err != nil || len(rules) == 0 {
		return err
	}
	return nft(deleteScript(rules))
}

// removeNetworkRules deletes nw's rules.
func removeNetworkRules(nw Network) error { return removeRules(netTag(nw)) }

// cleanupContainer removes what a container left on the host: its port
// rules and the host end of its veth (gone with its namespace, unless
// another container shares it).
func cleanupContainer(id string) error {
	return errors.Join(removeRules(ctrTag(id)), deleteLink(vethName(id)))
}

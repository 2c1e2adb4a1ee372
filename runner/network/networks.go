package network

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Network modes a container may ask for besides a network's name.
const (
	// ModeNone is a network namespace with only loopback.
	ModeNone = "none"
	// ModeHost is the host's network namespace.
	ModeHost = "host"
	// ModeBridge is the default bridge network (Config.Bridge).
	ModeBridge = "bridge"
	// ModeContainerPrefix, followed by a container's name or id, shares
	// that running container's network namespace.
	ModeContainerPrefix = "container:"
)

// Defaults of Config.
const (
	DefaultBridge  = "berth0"
	DefaultSubnet  = "172.30.0.0/16"
	DefaultPoolDir = "/run/berth/ipam"
)

// Environment variables that override the config file.
const (
	EnvBridge  = "BERTH_BRIDGE"
	EnvSubnet  = "BERTH_BRIDGE_SUBNET"
	EnvPoolDir = "BERTH_IPAM_DIR"
)

// Config is <state>/network.json, the default bridge network's settings
// (every field optional; environment variables override each).
type Config struct {
	// Bridge is the default network's bridge (BERTH_BRIDGE; berth0).
	Bridge string `json:"bridge,omitempty"`
	// Subnet is its IPv4 subnet (BERTH_BRIDGE_SUBNET; 172.30.0.0/16);
	// the gateway, on the bridge, is its first address.
	Subnet string `json:"subnet,omitempty"`
	// PoolDir is where the address pools live, one file per bridge
	// (BERTH_IPAM_DIR; /run/berth/ipam). Bridges are the host's, shared
	// by every state directory, and so are their pools; on a tmpfs they
	// go with a reboot, as the bridges and containers do.
	PoolDir string `json:"poolDir,omitempty"`
}

// Network is a bridge network containers join.
type Network struct {
	// Name is how users call it ("bridge" for the default one).
	Name string `json:"name"`
	// ID is a random hex id (the default network's is its bridge name).
	ID string `json:"id"`
	// Bridge is the host's bridge interface.
	Bridge string `json:"bridge"`
	// Subnet and Gateway are its IPv4 subnet and the bridge's address.
	Subnet  netip.Prefix `json:"subnet"`
	Gateway netip.Addr   `json:"gateway"`
	// Created is when `berth network create` made it (zero for the
	// default network).
	Created time.Time `json:"created,omitzero"`
	// Default marks the default bridge network, whose members are not
	// told each other's names (as docker's default bridge).
	Default bool `json:"default,omitempty"`
}

// Networks are the networks of a state directory: the default bridge
// network, from its Config, and the user-defined ones, each a file
// <state>/networks/<name>.json.
type Networks struct {
	dir     string
	poolDir string
	def     Network
}

// Open opens the networks of stateDir: its network.json (absent: the
// defaults; unknown fields are an error) with the environment's overrides
// read through getenv (nil: none).
func Open(stateDir string, getenv func(string) string) (*Networks, error) {
	var cfg Config
	name := filepath.Join(stateDir, "network.json")
	b, err := os.ReadFile(name)
	switch {
	case err == nil:
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, name, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	if getenv != nil {
		for _, o := range []struct {
			env string
			to  *string
		}{{EnvBridge, &cfg.Bridge}, {EnvSubnet, &cfg.Subnet}, {EnvPoolDir, &cfg.PoolDir}} {
			if v := getenv(o.env); v != "" {
				*o.to = v
			}
		}
	}
	if cfg.Bridge == "" {
		cfg.Bridge = DefaultBridge
	}
	if cfg.Subnet == "" {
		cfg.Subnet = DefaultSubnet
	}
	if cfg.PoolDir == "" {
		cfg.PoolDir = DefaultPoolDir
	}
	if !validIfName(cfg.Bridge) {
		return nil, fmt.Errorf("%w: bridge name %q (1 to 15 letters, digits, '-', '_' or '.')", ErrInvalid, cfg.Bridge)
	}
	subnet, gw, err := parseSubnet(cfg.Subnet)
	if err != nil {
		return nil, err
	}
	if !filepath.IsAbs(cfg.PoolDir) {
		return nil, fmt.Errorf("%w: pool directory %q is not absolute", ErrInvalid, cfg.PoolDir)
	}
	return &Networks{
		dir:     filepath.Join(stateDir, "networks"),
		poolDir: cfg.PoolDir,
		def:     Network{Name: ModeBridge, ID: cfg.Bridge, Bridge: cfg.Bridge, Subnet: subnet, Gateway: gw, Default: true},
	}, nil
}

// parseSubnet parses an IPv4 CIDR with room for a gateway and a
// container (at most /30) and returns it with its gateway.
func parseSubnet(s string) (netip.Prefix, netip.Addr, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() || p.Bits() > 30 || p.Bits() < 8 {
		return netip.Prefix{}, netip.Addr{}, fmt.Errorf("%w: subnet %q: want an IPv4 CIDR from /8 to /30 such as 172.30.0.0/16", ErrInvalid, s)
	}
	if p != p.Masked() {
		return netip.Prefix{}, netip.Addr{}, fmt.Errorf("%w: subnet %q has host bits set (did you mean %s?)", ErrInvalid, s, p.Masked())
	}
	return p, p.Addr().Next(), nil
}

var ifNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)

func validIfName(s string) bool { return ifNameRE.MatchString(s) && s != "." && s != ".." }

// nameRE is docker's grammar for network names.
var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// Default is the default bridge network.
func (n *Networks) Default() Network { return n.def }

// Get returns the network called name ("bridge": the default one; a
// unique id prefix works too). A missing one is ErrNotFound.
func (n *Networks) Get(name string) (Network, error) {
	if name == ModeBridge || name == n.def.ID {
		return n.def, nil
	}
	if nameRE.MatchString(name) && len(name) <= 128 {
		if nw, err := n.read(filepath.Join(n.dir, name+".json")); err == nil {
			return nw, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return Network{}, err
		}
	}
	all, err := n.List()
	if err != nil {
		return Network{}, err
	}
	var found []Network
	for _, nw := range all {
		if len(name) >= 3 && strings.HasPrefix(nw.ID, name) {
			found = append(found, nw)
		}
	}
	if len(found) == 1 {
		return found[0], nil
	}
	return Network{}, fmt.Errorf("%w: %s", ErrNotFound, name)
}

func (n *Networks) read(name string) (Network, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return Network{}, err
	}
	var nw Network
	if err := json.Unmarshal(b, &nw); err != nil {
		return Network{}, fmt.Errorf("%s: %w", name, err)
	}
	return nw, nil
}

// List returns the default network, then the user-defined ones by name.
func (n *Networks) List() ([]Network, error) {
	out := []Network{n.def}
	ents, err := os.ReadDir(n.dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	var user []Network
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		nw, err := n.read(filepath.Join(n.dir, e.Name()))
		if err != nil {
			continue
		}
		user = append(user, nw)
	}
	sort.Slice(user, func(i, j int) bool { return user[i].Name < user[j].Name })
	return append(out, user...), nil
}

// Create makes a user-defined network called name on subnet ("" picks a
// free /24 of 172.31.0.0/16). The name follows docker's grammar and may
// not be a mode (none, host, bridge); the subnet may not overlap another
// network's, nor a route of the host (ErrExists). The bridge is made when
// the first container joins.
func (n *Networks) Create(name, subnet string) (Network, error) {
	if !nameRE.MatchString(name) || len(name) > 128 {
		return Network{}, fmt.Errorf("%w: network name %q: want letters, digits, '_', '.' or '-', starting with a letter or digit", ErrInvalid, name)
	}
	switch name {
	case ModeNone, ModeHost, ModeBridge, "default":
		return Network{}, fmt.Errorf("%w: network name %q is reserved", ErrInvalid, name)
	}
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		return Network{}, err
	}
	unlock, err := lockFile(filepath.Join(n.dir, ".lock"))
	if err != nil {
		return Network{}, err
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(n.dir, name+".json")); err == nil {
		return Network{}, fmt.Errorf("%w: network %s", ErrExists, name)
	}
	all, err := n.List()
	if err != nil {
		return Network{}, err
	}
	taken, err := hostPrefixes()
	if err != nil {
		return Network{}, err
	}
	for _, nw := range all {
		taken = append(taken, nw.Subnet)
	}
	var p netip.Prefix
	var gw netip.Addr
	if subnet != "" {
		if p, gw, err = parseSubnet(subnet); err != nil {
			return Network{}, err
		}
		for _, t := range taken {
			if t.Overlaps(p) {
				return Network{}, fmt.Errorf("%w: subnet %s overlaps %s, in use on this host", ErrExists, p, t)
			}
		}
	} else {
		for i := 0; i < 256 && !p.IsValid(); i++ {
			c := netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 31, byte(i), 0}), 24)
			free := true
			for _, t := range taken {
				free = free && !t.Overlaps(c)
			}
			if free {
				p, gw = c, c.Addr().Next()
			}
		}
		if !p.IsValid() {
			return Network{}, fmt.Errorf("%w: no free /24 left in 172.31.0.0/16; give --subnet", ErrExhausted)
		}
	}
	idb := make([]byte, 32)
	rand.Read(idb)
	id := hex.EncodeToString(idb)
	nw := Network{Name: name, ID: id, Bridge: "br-" + id[:12], Subnet: p, Gateway: gw, Created: time.Now().UTC()}
	b, err := json.MarshalIndent(nw, "", "\t")
	if err != nil {
		return Network{}, err
	}
	tmp := filepath.Join(n.dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return Network{}, err
	}
	return nw, os.Rename(tmp, filepath.Join(n.dir, name+".json"))
}

// Remove removes a user-defined network: its bridge and NAT rules, and
// its file. One that a running container is on is ErrInUse; the default
// one cannot be removed (ErrInvalid).
func (n *Networks) Remove(name string) (Network, error) {
	nw, err := n.Get(name)
	if err != nil {
		return Network{}, err
	}
	if nw.Default {
		return Network{}, fmt.Errorf("%w: the default network %s cannot be removed", ErrInvalid, nw.Name)
	}
	pool := n.Pool(nw)
	if _, err := pool.Sweep(nil); err != nil {
		return Network{}, err
	}
	leases, err := pool.Leases()
	if err != nil {
		return Network{}, err
	}
	if len(leases) > 0 {
		ids := make([]string, len(leases))
		for i, l := range leases {
			ids[i] = shortID(l.ID)
		}
		return Network{}, fmt.Errorf("%w: network %s has running containers: %s", ErrInUse, nw.Name, strings.Join(ids, ", "))
	}
	if err := removeNetworkRules(nw); err != nil {
		return Network{}, err
	}
	if err := deleteLink(nw.Bridge); err != nil {
		return Network{}, err
	}
	if err := os.Remove(filepath.Join(n.dir, nw.Name+".json")); err != nil {
		return Network{}, err
	}
	return nw, nil
}

// Pool returns nw's address pool (see Pool), whose dead leases are
// reclaimed: their rules and veths removed.
func (n *Networks) Pool(nw Network) *Pool {
	p := NewPool(filepath.Join(n.poolDir, nw.Bridge+".json"), nw.Subnet, nw.Gateway)
	p.Reclaim = func(l Lease) { cleanupContainer(l.ID) }
	return p
}

// Reclaim drops the leases of every container of these networks whose
// holder is gone (a crashed berth), with their NAT rules and veths, and
// updates the other members' hosts files. It is cheap when nothing is
// dead: a read of each pool under its lock.
func (n *Networks) Reclaim() error {
	all, err := n.List()
	if err != nil {
		return err
	}
	var errs []error
	for _, nw := range all {
		if _, err := os.Stat(filepath.Join(n.poolDir, nw.Bridge+".json")); err != nil {
			continue
		}
		_, err := n.Pool(nw).Sweep(hostsWriter(nw))
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

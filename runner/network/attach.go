package network

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/vishvananda/netlink"
)

// Files in a container's directory.
const (
	settingsFile = "network.json"
	hostsName    = "hosts"
	resolvName   = "resolv.conf"
)

// Settings are a container's network as its run or create flags asked,
// kept in its directory (network.json).
type Settings struct {
	// Mode is ModeNone, ModeHost, ModeBridge, ModeContainerPrefix+ref or
	// the name of a user-defined network.
	Mode string `json:"mode"`
	// Ports are its published ports (-p, and -P's exposed ports with
	// HostPort 0).
	Ports []PortMapping `json:"ports,omitempty"`
}

// Bridged reports whether the mode puts the container on a bridge
// network (the default one or a user-defined one).
func (s Settings) Bridged() bool {
	return s.Mode != "" && s.Mode != ModeNone && s.Mode != ModeHost && !strings.HasPrefix(s.Mode, ModeContainerPrefix)
}

// SaveSettings writes s into the container directory dir.
func SaveSettings(dir string, s Settings) error {
	b, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, settingsFile), b, 0o644)
}

// LoadSettings reads the settings of the container directory dir; a
// container made before networks existed has Mode ModeNone.
func LoadSettings(dir string) (Settings, error) {
	b, err := os.ReadFile(filepath.Join(dir, settingsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return Settings{Mode: ModeNone}, nil
	}
	if err != nil {
		return Settings{}, err
	}
	var s Settings
	if err := json.Unmarshal(b, &s); err != nil {
		return Settings{}, fmt.Errorf("%s: %w", filepath.Join(dir, settingsFile), err)
	}
	return s, nil
}

// Request is what a container asks of a bridge network as it starts.
type Request struct {
	// ID is the container's id.
	ID string
	// Names are what the other members call it (its name, its aliases).
	Names []string
	// Hostname is its hostname, which its own /etc/hosts resolves.
	Hostname string
	// Lock is its lock file, which its holder keeps flocked while it runs.
	Lock string
	// Dir is its directory, where its hosts and resolv.conf are written.
	Dir string
	// Ports are the ports to publish.
	Ports []PortMapping
}

// Attachment is a running container's place on a bridge network: its
// address lease, its published ports (their forwarders and NAT rules),
// and, once Connect ran, its veth pair.
type Attachment struct {
	nw    Network
	pool  *Pool
	br    netlink.Link
	lease Lease
	fwd   []*forwarder
	dir   string
}

// Attach prepares the container r on the network called name (see
// Networks.Get): binds its published ports, leases it an address, writes
// its /etc/hosts and /etc/resolv.conf (and the other members' hosts
// files), makes the bridge and the NAT rules. Connect then gives its
// namespace an eth0, and Detach undoes it all. A taken host port is
// ErrPortAllocated; a host that cannot make a bridge, ErrUnsupported.
func (n *Networks) Attach(name string, r Request) (a *Attachment, err error) {
	nw, err := n.Get(name)
	if err != nil {
		return nil, err
	}
	a = &Attachment{nw: nw, pool: n.Pool(nw), dir: r.Dir}
	defer func() {
		if err != nil {
			a.Detach()
		}
	}()
	var ports []PortMapping
	for _, p := range r.Ports {
		f, q, err := listen(p)
		if err != nil {
			return a, err
		}
		a.fwd = append(a.fwd, f)
		ports = append(ports, q)
	}
	if err := os.WriteFile(filepath.Join(r.Dir, resolvName), hostResolvConf(), 0o644); err != nil {
		return a, err
	}
	lease := Lease{ID: r.ID, Names: r.Names, Hostname: r.Hostname, Lock: r.Lock,
		Hosts: filepath.Join(r.Dir, hostsName), Ports: ports}
	if a.lease, err = a.pool.Allocate(lease, hostsWriter(nw)); err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return a, fmt.Errorf("%w: network %s: %v (a bridge network needs root; use --network none or host)", ErrUnsupported, nw.Name, err)
		}
		return a, fmt.Errorf("network %s: %w", nw.Name, err)
	}
	if nw.Default {
		if err := writeInPlace(lease.Hosts, hostsFile(nw, a.lease, r.Hostname, nil)); err != nil {
			return a, err
		}
	}
	if a.br, err = ensureBridge(nw); err != nil {
		return a, err
	}
	if err := enableForwarding(); err != nil {
		return a, err
	}
	if err := setupRules(nw, r.ID, a.lease.IP, ports); err != nil {
		return a, err
	}
	for i, f := range a.fwd {
		f.serve(netip.AddrPortFrom(a.lease.IP, ports[i].ContainerPort).String())
	}
	return a, nil
}

// Mounts are the container's /etc/hosts and /etc/resolv.conf, bind
// mounts of the files Attach wrote.
func (a *Attachment) Mounts() []specs.Mount { return fileMounts(a.dir) }

// SharedMounts are the /etc/hosts and /etc/resolv.conf of the running
// container whose directory is dir, for a container that shares its
// network namespace (none when it has none).
func SharedMounts(dir string) []specs.Mount {
	if _, err := os.Stat(filepath.Join(dir, hostsName)); err != nil {
		return nil
	}
	return fileMounts(dir)
}

func fileMounts(dir string) []specs.Mount {
	m := func(dst, name string) specs.Mount {
		return specs.Mount{Destination: dst, Type: "bind", Source: filepath.Join(dir, name),
			Options: []string{"rbind", "rprivate", "nosuid", "nodev", "noexec", "rw"}}
	}
	return []specs.Mount{m("/etc/hosts", hostsName), m("/etc/resolv.conf", resolvName)}
}

// Connect gives the network namespace of pid (the container's init,
// before it execs) its eth0 on the network.
func (a *Attachment) Connect(pid int) error {
	return connect(pid, a.lease.ID, a.br, a.nw, a.lease.IP)
}

// IP is the container's address.
func (a *Attachment) IP() netip.Addr { return a.lease.IP }

// Ports are the published ports, with the host ports chosen.
func (a *Attachment) Ports() []PortMapping { return a.lease.Ports }

// Network is the network attached to.
func (a *Attachment) Network() Network { return a.nw }

// Detach undoes Attach (and Connect): stops the forwarders, deletes the
// container's NAT rules and veth, releases its address and rewrites the
// other members' hosts files. It may be called more than once.
func (a *Attachment) Detach() error {
	var errs []error
	for _, f := range a.fwd {
		f.close()
	}
	a.fwd = nil
	id := a.lease.ID
	if id == "" {
		return nil // no lease was taken
	}
	if slices.ContainsFunc(a.lease.Ports, needsDNAT) {
		errs = append(errs, removeRules(ctrTag(id)))
	}
	errs = append(errs, deleteLink(vethName(id)))
	errs = append(errs, a.pool.Release(id, hostsWriter(a.nw)))
	a.lease = Lease{}
	return errors.Join(errs...)
}

// Lease returns the lease of the container id on the network its
// settings name, if it has one (it runs).
func (n *Networks) Lease(s Settings, id string) (Lease, bool, error) {
	if !s.Bridged() {
		return Lease{}, false, nil
	}
	nw, err := n.Get(s.Mode)
	if err != nil {
		return Lease{}, false, err
	}
	leases, err := n.Pool(nw).Leases()
	if err != nil {
		return Lease{}, false, err
	}
	for _, l := range leases {
		if l.ID == id && LockHeld(l.Lock) {
			return l, true, nil
		}
	}
	return Lease{}, false, nil
}

// ParsePortFilter parses the PORT[/PROTO] argument of `berth port`.
func ParsePortFilter(s string) (uint16, string, error) {
	port, proto, _ := strings.Cut(s, "/")
	if proto == "" {
		proto = TCP
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 || (proto != TCP && proto != UDP) {
		return 0, "", fmt.Errorf("%w: port %q: want PORT[/tcp|udp]", ErrInvalid, s)
	}
	return uint16(n), proto, nil
}

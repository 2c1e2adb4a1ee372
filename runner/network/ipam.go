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

	"golang.org/x/sys/unix"
)

// Lease is one container's address on a network, as the pool's file
// keeps it.
type Lease struct {
	// ID is the container's id.
	ID string `json:"id"`
	// Names are what the container is called on the network (its name,
	// then its aliases), written into the members' /etc/hosts.
	Names []string `json:"names,omitempty"`
	// Hostname is its hostname, on its own line of its /etc/hosts only.
	Hostname string `json:"hostname,omitempty"`
	// IP is its address.
	IP netip.Addr `json:"ip"`
	// Lock is the container's lock file, which its holder keeps flocked
	// while it runs: a lease whose lock nobody holds is a dead one's.
	Lock string `json:"lock,omitempty"`
	// Hosts is the host path of its /etc/hosts ("" for none), rewritten
	// when the network's members change.
	Hosts string `json:"hosts,omitempty"`
	// Ports are its published ports (for crash clean-up and `berth port`).
	Ports []PortMapping `json:"ports,omitempty"`
}

// poolFile is a pool's file.
type poolFile struct {
	Subnet netip.Prefix `json:"subnet"`
	Last   netip.Addr   `json:"last,omitzero"` // the last address handed out
	Leases []Lease      `json:"leases"`
}

// Pool hands out the addresses of one subnet, keeping its leases in a
// file (path) that a flock on path+".lock" guards, so that concurrent
// berth processes never hand out one address twice. Addresses are taken
// in turn after the last one given (as docker does), skipping the
// network and broadcast addresses and the gateway.
type Pool struct {
	path    string
	subnet  netip.Prefix
	gateway netip.Addr
	// Alive reports whether a lease's container still runs; nil means
	// LockHeld. Leases of dead containers are reclaimed (see Reclaim)
	// whenever the pool is changed.
	Alive func(Lease) bool
	// Reclaim, when not nil, is called (with the pool locked) for each
	// lease of a dead container before it is dropped: to remove what the
	// container left on the host.
	Reclaim func(Lease)
}

// NewPool returns the pool of subnet (whose gateway is gateway) kept in
// the file at path.
func NewPool(path string, subnet netip.Prefix, gateway netip.Addr) *Pool {
	return &Pool{path: path, subnet: subnet.Masked(), gateway: gateway}
}

// Allocate gives l.ID an address (the one it has if it already holds a
// lease) and records l with it. members, when not nil, is called with
// every lease after the change, while the pool is still locked (to
// rewrite their hosts files). A full subnet is ErrExhausted.
func (p *Pool) Allocate(l Lease, members func([]Lease)) (Lease, error) {
	var out Lease
	_, err := p.change(func(f *poolFile) error {
		if i := slices.IndexFunc(f.Leases, func(x Lease) bool { return x.ID == l.ID }); i >= 0 {
			l.IP = f.Leases[i].IP
			f.Leases[i] = l
			out = l
			return nil
		}
		used := map[netip.Addr]bool{p.gateway: true}
		for _, x := range f.Leases {
			used[x.IP] = true
		}
		ip, ok := p.next(f.Last, used)
		if !ok {
			return fmt.Errorf("%w in %s", ErrExhausted, p.subnet)
		}
		l.IP, f.Last = ip, ip
		f.Leases = append(f.Leases, l)
		out = l
		return nil
	}, members, true)
	return out, err
}

// Update replaces the lease of l.ID (keeping its address) with l; it
// does nothing when l.ID has no lease.
func (p *Pool) Update(l Lease) error {
	_, err := p.change(func(f *poolFile) error {
		if i := slices.IndexFunc(f.Leases, func(x Lease) bool { return x.ID == l.ID }); i >= 0 {
			l.IP = f.Leases[i].IP
			f.Leases[i] = l
		}
		return nil
	}, nil, false)
	return err
}

// Release drops id's lease (nothing when it has none); members is as
// for Allocate.
func (p *Pool) Release(id string, members func([]Lease)) error {
	_, err := p.change(func(f *poolFile) error {
		f.Leases = slices.DeleteFunc(f.Leases, func(x Lease) bool { return x.ID == id })
		return nil
	}, members, true)
	return err
}

// Sweep drops the leases of dead containers (calling Reclaim for each)
// and returns how many it dropped; members is as for Allocate.
func (p *Pool) Sweep(members func([]Lease)) (int, error) {
	return p.change(func(f *poolFile) error { return nil }, members, false)
}

// Leases returns the pool's leases (those of dead containers included).
func (p *Pool) Leases() ([]Lease, error) {
	unlock, err := p.lock(unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	defer unlock()
	f, err := p.read()
	if err != nil {
		return nil, err
	}
	return f.Leases, nil
}

// change runs fn on the pool's file under its lock, after dropping the
// leases of dead containers, and writes it back (removing it when no
// lease is left).
// members is called after the write when fn changed something (always)
// or a lease was dropped.
func (p *Pool) change(fn func(*poolFile) error, members func([]Lease), always bool) (dropped int, err error) {
	unlock, err := p.lock(unix.LOCK_EX)
	if err != nil {
		return 0, err
	}
	defer unlock()
	f, err := p.read()
	if err != nil {
		return 0, err
	}
	alive := p.Alive
	if alive == nil {
		alive = func(l Lease) bool { return LockHeld(l.Lock) }
	}
	f.Leases = slices.DeleteFunc(f.Leases, func(l Lease) bool {
		if alive(l) {
			return false
		}
		if p.Reclaim != nil {
			p.Reclaim(l)
		}
		dropped++
		return true
	})
	if f.Subnet != p.subnet {
		if len(f.Leases) > 0 {
			return dropped, fmt.Errorf("%w: the pool at %s numbers %s, not %s, and containers still use it", ErrInUse, p.path, f.Subnet, p.subnet)
		}
		*f = poolFile{Subnet: p.subnet}
	}
	if err := fn(f); err != nil {
		return dropped, err
	}
	if err := p.write(f); err != nil {
		return dropped, err
	}
	if members != nil && (always || dropped > 0) {
		members(f.Leases)
	}
	return dropped, nil
}

// next returns the first free address after last (wrapping around).
func (p *Pool) next(last netip.Addr, used map[netip.Addr]bool) (netip.Addr, bool) {
	first := p.subnet.Addr().Next() // not the network address
	if !last.IsValid() || !p.subnet.Contains(last) {
		last = p.subnet.Addr()
	}
	a := last.Next()
	for range 1 << min(p.subnet.Addr().BitLen()-p.subnet.Bits(), 24) {
		if !a.IsValid() || !p.subnet.Contains(a) {
			a = first
		}
		if !used[a] && !isBroadcast(p.subnet, a) && a != p.subnet.Addr() {
			return a, true
		}
		a = a.Next()
	}
	return netip.Addr{}, false
}

// isBroadcast reports whether a is the last address of an IPv4 subnet.
func isBroadcast(s netip.Prefix, a netip.Addr) bool {
	n := a.Next()
	return a.Is4() && s.Bits() < 31 && (!n.IsValid() || !s.Contains(n))
}

func (p *Pool) read() (*poolFile, error) {
	f := &poolFile{Subnet: p.subnet}
	b, err := os.ReadFile(p.path)
	if errors.Is(err, fs.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, f); err != nil {
		return nil, fmt.Errorf("address pool %s: %w", p.path, err)
	}
	return f, nil
}

func (p *Pool) write(f *poolFile) error {
	if len(f.Leases) == 0 {
		err := os.Remove(p.path)
		if errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
		return err
	}
	b, err := json.MarshalIndent(f, "", "\t")
	if err != nil {
		return err
	}
	tmp := p.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, p.path)
}

func (p *Pool) lock(how int) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(p.path), 0o755); err != nil {
		return nil, err
	}
	lf, err := os.OpenFile(p.path+".lock", os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(lf.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		lf.Close()
		return nil, fmt.Errorf("locking %s: %w", p.path, err)
	}
	return func() { lf.Close() }, nil
}

// LockHeld reports whether some process holds a flock on the file at
// path (a container's lock: its holder runs it). A missing file is not
// held.
func LockHeld(path string) bool {
	if path == "" {
		return false
	}
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return errors.Is(err, unix.EWOULDBLOCK)
	}
	return false
}

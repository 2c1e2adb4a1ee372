package network_test

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/berth-registry/berth/runner/network"
)

// newPool returns a pool of subnet in a temporary file, and that file.
func newPool(t *testing.T, subnet string, alive func(network.Lease) bool) (*network.Pool, string) {
	t.Helper()
	p := netip.MustParsePrefix(subnet)
	file := filepath.Join(t.TempDir(), "br.json")
	pool := network.NewPool(file, p, p.Addr().Next())
	pool.Alive = alive
	return pool, file
}

func allAlive(network.Lease) bool { return true }

func TestPoolAllocateRelease(t *testing.T) {
	pool, file := newPool(t, "10.200.0.0/24", allAlive)
	a, err := pool.Allocate(network.Lease{ID: "a"}, nil)
	if err != nil || a.IP != netip.MustParseAddr("10.200.0.2") {
		t.Fatalf("first lease %v, %v; want 10.200.0.2 (.1 is the gateway)", a.IP, err)
	}
	b, _ := pool.Allocate(network.Lease{ID: "b"}, nil)
	if b.IP != netip.MustParseAddr("10.200.0.3") {
		t.Errorf("second lease %v", b.IP)
	}
	again, _ := pool.Allocate(network.Lease{ID: "a", Names: []string{"x"}}, nil)
	if again.IP != a.IP {
		t.Errorf("a second Allocate for a gave %v, want its %v", again.IP, a.IP)
	}
	if err := pool.Release("a", nil); err != nil {
		t.Fatal(err)
	}
	// Addresses are taken in turn: a's is not handed out at once.
	c, _ := pool.Allocate(network.Lease{ID: "c"}, nil)
	if c.IP != netip.MustParseAddr("10.200.0.4") {
		t.Errorf("after a release: %v, want the next one 10.200.0.4", c.IP)
	}
	var members []network.Lease
	pool.Release("b", func(ls []network.Lease) { members = ls })
	if len(members) != 1 || members[0].ID != "c" {
		t.Errorf("members after releasing b: %+v", members)
	}
	pool.Release("c", nil)
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the pool file outlives its last lease: %v", err)
	}
}

func TestPoolExhaustion(t *testing.T) {
	// A /29: 8 addresses, less the network, broadcast and gateway ones.
	pool, _ := newPool(t, "10.200.1.0/29", allAlive)
	got := map[netip.Addr]bool{}
	for i := range 5 {
		l, err := pool.Allocate(network.Lease{ID: string(rune('a' + i))}, nil)
		if err != nil {
			t.Fatalf("lease %d: %v", i, err)
		}
		got[l.IP] = true
	}
	for _, bad := range []string{"10.200.1.0", "10.200.1.1", "10.200.1.7"} {
		if got[netip.MustParseAddr(bad)] {
			t.Errorf("handed out %s", bad)
		}
	}
	if _, err := pool.Allocate(network.Lease{ID: "z"}, nil); !errors.Is(err, network.ErrExhausted) {
		t.Fatalf("sixth lease: %v, want ErrExhausted", err)
	}
	pool.Release("c", nil)
	l, err := pool.Allocate(network.Lease{ID: "z"}, nil)
	if err != nil || l.IP != netip.MustParseAddr("10.200.1.4") {
		t.Errorf("after a release, the freed address (wrapping around): %v, %v", l.IP, err)
	}
}

func TestPoolConcurrent(t *testing.T) {
	// Separate Pool values on one file, as separate berth processes: the
	// flock keeps them from handing out an address twice.
	_, file := newPool(t, "10.200.2.0/24", allAlive)
	prefix := netip.MustParsePrefix("10.200.2.0/24")
	var wg sync.WaitGroup
	ips := make([]netip.Addr, 40)
	errs := make([]error, 40)
	for i := range ips {
		wg.Go(func() {
			p := network.NewPool(file, prefix, prefix.Addr().Next())
			p.Alive = allAlive
			l, err := p.Allocate(network.Lease{ID: string(rune('A' + i))}, nil)
			ips[i], errs[i] = l.IP, err
		})
	}
	wg.Wait()
	seen := map[netip.Addr]int{}
	for i, ip := range ips {
		if errs[i] != nil {
			t.Fatalf("lease %d: %v", i, errs[i])
		}
		if j, dup := seen[ip]; dup {
			t.Errorf("leases %d and %d both got %v", j, i, ip)
		}
		seen[ip] = i
	}
	p := network.NewPool(file, prefix, prefix.Addr().Next())
	p.Alive = allAlive
	if ls, err := p.Leases(); err != nil || len(ls) != 40 {
		t.Errorf("%d leases in the file, %v; want 40", len(ls), err)
	}
}

func TestPoolReclaimsDead(t *testing.T) {
	dead := map[string]bool{}
	pool, _ := newPool(t, "10.200.3.0/24", func(l network.Lease) bool { return !dead[l.ID] })
	var reclaimed []string
	pool.Reclaim = func(l network.Lease) { reclaimed = append(reclaimed, l.ID) }
	for _, id := range []string{"a", "b", "c"} {
		if _, err := pool.Allocate(network.Lease{ID: id, Names: []string{id}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	dead["b"] = true
	var members []network.Lease
	n, err := pool.Sweep(func(ls []network.Lease) { members = ls })
	if err != nil || n != 1 || len(reclaimed) != 1 || reclaimed[0] != "b" {
		t.Fatalf("Sweep: %d, %v, reclaimed %v; want b alone", n, err, reclaimed)
	}
	if len(members) != 2 || members[0].ID != "a" || members[1].ID != "c" {
		t.Errorf("members after the sweep: %+v", members)
	}
	members = nil
	if n, _ := pool.Sweep(func(ls []network.Lease) { members = ls }); n != 0 || members != nil {
		t.Errorf("a sweep with nothing dead: %d dropped, members rewritten %v", n, members)
	}
}

func TestPoolLockHeld(t *testing.T) {
	// The default liveness: the lease's lock file is flocked.
	pool, _ := newPool(t, "10.200.4.0/24", nil)
	lock := filepath.Join(t.TempDir(), "lock")
	if _, err := pool.Allocate(network.Lease{ID: "gone", Lock: lock}, nil); err != nil {
		t.Fatal(err)
	}
	if ls, _ := pool.Leases(); len(ls) != 1 {
		t.Fatalf("leases %+v", ls)
	}
	if network.LockHeld(lock) {
		t.Fatal("a missing lock file counts as held")
	}
	if n, err := pool.Sweep(nil); n != 1 || err != nil {
		t.Errorf("sweep of an unheld lease: %d, %v", n, err)
	}
}

func TestPoolSubnetChange(t *testing.T) {
	pool, file := newPool(t, "10.200.5.0/24", allAlive)
	if _, err := pool.Allocate(network.Lease{ID: "a"}, nil); err != nil {
		t.Fatal(err)
	}
	other := network.NewPool(file, netip.MustParsePrefix("10.200.6.0/24"), netip.MustParseAddr("10.200.6.1"))
	other.Alive = allAlive
	if _, err := other.Allocate(network.Lease{ID: "b"}, nil); !errors.Is(err, network.ErrInUse) {
		t.Errorf("another subnet on a pool in use: %v, want ErrInUse", err)
	}
}

package network

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestResolvConf(t *testing.T) {
	host := "# managed\nnameserver 127.0.0.53\nnameserver 192.0.2.53\nnameserver ::1\nsearch example.test\noptions edns0\n"
	if got := string(resolvConf([]byte(host), nil)); got != "nameserver 192.0.2.53\nsearch example.test\noptions edns0\n" {
		t.Errorf("host resolvers: %q", got)
	}
	// Only systemd-resolved's stub: the resolvers behind it.
	stub := "nameserver 127.0.0.53\nsearch lan\n"
	alt := "nameserver 198.51.100.1\n"
	if got := string(resolvConf([]byte(stub), []byte(alt))); got != "nameserver 198.51.100.1\n" {
		t.Errorf("behind systemd-resolved: %q", got)
	}
	// Nothing reachable: docker's fallback.
	if got := string(resolvConf([]byte(stub), nil)); got != "search lan\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n" {
		t.Errorf("fallback: %q", got)
	}
}

func TestHostsFile(t *testing.T) {
	self := Lease{ID: "a", Names: []string{"web"}, IP: netip.MustParseAddr("10.1.0.2")}
	peer := Lease{ID: "b", Names: []string{"db", "b0"}, IP: netip.MustParseAddr("10.1.0.3")}
	user := string(hostsFile(Network{Name: "n"}, self, "box", []Lease{self, peer}))
	if !strings.HasPrefix(user, hostsBase) || !strings.Contains(user, "10.1.0.2\tbox\tweb\n") || !strings.HasSuffix(user, "10.1.0.3\tdb\tb0\n") {
		t.Errorf("user network hosts:\n%s", user)
	}
	def := string(hostsFile(Network{Default: true}, self, "web", []Lease{self, peer}))
	if strings.Contains(def, "db") || !strings.HasSuffix(def, "10.1.0.2\tweb\n") {
		t.Errorf("default network hosts (no peers, no duplicate name):\n%s", def)
	}
}

func TestWriteInPlace(t *testing.T) {
	name := filepath.Join(t.TempDir(), "hosts")
	os.WriteFile(name, []byte("a long first version\n"), 0o644)
	var before, after unix.Stat_t
	unix.Stat(name, &before)
	if err := writeInPlace(name, []byte("short\n")); err != nil {
		t.Fatal(err)
	}
	unix.Stat(name, &after)
	if b, _ := os.ReadFile(name); string(b) != "short\n" || before.Ino != after.Ino {
		t.Errorf("%q, inode %d -> %d: want the same inode (a bind mount's)", b, before.Ino, after.Ino)
	}
}

func TestLockHeld(t *testing.T) {
	name := filepath.Join(t.TempDir(), "lock")
	os.WriteFile(name, nil, 0o600)
	if LockHeld(name) {
		t.Fatal("an unlocked file counts as held")
	}
	unlock, err := lockFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if !LockHeld(name) {
		t.Error("a flocked file does not count as held")
	}
	unlock()
	if LockHeld(name) {
		t.Error("still held after unlock")
	}
}

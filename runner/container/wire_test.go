package container

import (
	"errors"
	"os"
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-registry/berth/runner/seccomp"
)

// fullSpec sets every field the init reads, and some it does not.
func fullSpec() *specs.Spec {
	umask, uid, gid, oom := uint32(0o27), uint32(5), uint32(6), -500
	mode := os.FileMode(0o620)
	return &specs.Spec{
		Version:    "1.2.0",
		Hostname:   "box",
		Domainname: "example.test",
		Annotations: map[string]string{
			"not": "sent",
		},
		Process: &specs.Process{
			Terminal:    true,
			ConsoleSize: &specs.Box{Height: 40, Width: 132},
			User:        specs.User{UID: 1000, GID: 1001, Umask: &umask, AdditionalGids: []uint32{4, 27}, Username: "app"},
			Args:        []string{"/bin/sh", "-c", "echo \x00 ünïcode"},
			Env:         []string{"PATH=/bin", "EMPTY="},
			Cwd:         "/app",
			Capabilities: &specs.LinuxCapabilities{
				Bounding: []string{"CAP_CHOWN", "CAP_KILL"}, Effective: []string{"CAP_KILL"},
				Permitted: []string{"CAP_KILL"}, Ambient: []string{"CAP_NET_BIND_SERVICE"},
			},
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1 << 20, Soft: 1024}, {Type: "RLIMIT_CORE", Hard: ^uint64(0)}},
			NoNewPrivileges: true,
			OOMScoreAdj:     &oom,
			ApparmorProfile: "not-sent",
		},
		Root: &specs.Root{Path: "/var/lib/berth/containers/x/rootfs", Readonly: true},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/data", Type: "bind", Source: "/srv/data", Options: []string{"rbind", "ro", "nodev"}},
		},
		Linux: &specs.Linux{
			Namespaces:        []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace, Path: "/proc/1/ns/net"}},
			Devices:           []specs.LinuxDevice{{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229, FileMode: &mode, UID: &uid, GID: &gid}, {Path: "/dev/x", Type: "b", Major: -1, Minor: 3}},
			Sysctl:            map[string]string{"net.ipv4.ip_forward": "1", "kernel.shm_rmid_forced": "0"},
			Resources:         &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr(int64(20))}},
			MaskedPaths:       []string{"/proc/kcore"},
			ReadonlyPaths:     []string{"/proc/sys"},
			RootfsPropagation: "rslave",
			CgroupsPath:       "not/sent",
		},
	}
}

func ptr[T any](v T) *T { return &v }

func TestConfigWireRoundTrip(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  initConfig
	}{
		{"full", initConfig{Spec: fullSpec(), CgroupNS: true, UserNS: true, CgroupFiles: 5,
			Seccomp: &seccomp.Program{Flags: 2, Filter: []unix.SockFilter{{Code: 0x20, K: 4}, {Code: 0x15, Jt: 1, Jf: 2, K: 0xc000003e}, {Code: 6, K: 0x7fff0000}}}}},
		{"bare", initConfig{Spec: &specs.Spec{}}},
		{"process only", initConfig{Spec: &specs.Spec{Process: &specs.Process{Args: []string{"true"}}}}},
	} {
		got, err := decodeConfig(encodeConfig(c.cfg))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		want := c.cfg
		want.Spec = initSpec(c.cfg.Spec)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: decoded\n%#v\nwant\n%#v", c.name, got.Spec, want.Spec)
		}
	}
	// What initSpec leaves out does not travel.
	got, _ := decodeConfig(encodeConfig(initConfig{Spec: fullSpec()}))
	if got.Spec.Annotations != nil || got.Spec.Linux.Resources != nil || got.Spec.Linux.CgroupsPath != "" ||
		got.Spec.Process.ApparmorProfile != "" || got.Spec.Process.User.Username != "" {
		t.Errorf("fields the init does not read were sent: %#v", got.Spec)
	}
}

func TestConfigWireRefusesDamage(t *testing.T) {
	b := encodeConfig(initConfig{Spec: fullSpec(), CgroupNS: true})
	for n := range len(b) {
		if _, err := decodeConfig(b[:n]); !errors.Is(err, errBadConfig) {
			t.Fatalf("a config cut to %d of %d bytes: %v, want errBadConfig", n, len(b), err)
		}
	}
	if _, err := decodeConfig(append(b, 0)); !errors.Is(err, errBadConfig) {
		t.Errorf("trailing byte: %v, want errBadConfig", err)
	}
	// A huge count is refused, not allocated.
	huge := []byte{0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}
	if _, err := decodeConfig(huge); !errors.Is(err, errBadConfig) {
		t.Errorf("huge mount count: %v, want errBadConfig", err)
	}
	// Any single damaged byte decodes to something or fails; it never panics.
	for i := range b {
		d := append([]byte(nil), b...)
		d[i] ^= 0xa5
		decodeConfig(d)
	}
}

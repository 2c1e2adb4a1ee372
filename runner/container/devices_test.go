package container_test

import (
	"fmt"
	"os"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-registry/berth/runner/container"
)

// dockerDeviceRules are Docker's device rules, as runner/spec writes them:
// nothing, then mknod of anything and use of the default devices.
func dockerDeviceRules() []specs.LinuxDeviceCgroup {
	n := func(v int64) *int64 { return &v }
	rules := []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		{Allow: true, Type: "c", Access: "m"},
		{Allow: true, Type: "b", Access: "m"},
	}
	for _, d := range [][2]int64{{1, 3}, {1, 5}, {1, 7}, {1, 8}, {1, 9}, {5, 0}, {5, 1}, {5, 2}} {
		rules = append(rules, specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: n(d[0]), Minor: n(d[1]), Access: "rwm"})
	}
	return append(rules, specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: n(136), Access: "rwm"})
}

// hostDevice returns a device node of the host that root can open and
// that Docker's rules do not let a container open (a loop device, or the
// kernel log), with its type letter and numbers.
func hostDevice(t *testing.T) (node, typ string, major, minor uint32) {
	t.Helper()
	for _, node := range []string{"/dev/loop0", "/dev/kmsg"} {
		var st unix.Stat_t
		if err := unix.Stat(node, &st); err != nil {
			continue
		}
		f, err := os.Open(node)
		if err != nil {
			continue
		}
		f.Close()
		typ = "c"
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			typ = "b"
		}
		return node, typ, unix.Major(st.Rdev), unix.Minor(st.Rdev)
	}
	skipOrFail(t, "no /dev/loop0 or /dev/kmsg that root can open on this host")
	return "", "", 0, 0
}

// TestDeviceRules: with Docker's device rules, a container's root may
// make a node for a host device but not open it, through that node or
// through the host's own node bound in, while /dev/null works; without
// rules both open (the check can fail). Where the rules cannot be enforced
// (cgroup v2, no cgroup) the container may not make a node at all and the
// bound node does not open either.
func TestDeviceRules(t *testing.T) {
	rootfs := busyboxRootfs(t)
	node, typ, major, minor := hostDevice(t)
	script := fmt.Sprintf("mknod /dev-node %s %d %d 2>/dev/null && echo made; "+
		"(exec 3</dev-node) 2>/dev/null && echo open-made; "+
		"(exec 3</host-node) 2>/dev/null && echo open-bound; "+
		"echo x > /dev/null && echo null", typ, major, minor)
	spec := func(rules []specs.LinuxDeviceCgroup, cgroupsPath string) *specs.Spec {
		s := testSpec(rootfs, "sh", "-c", script)
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/host-node", Type: "bind", Source: node, Options: []string{"bind"}})
		if rules != nil {
			s.Linux.Resources = &specs.LinuxResources{Devices: rules}
		}
		s.Linux.CgroupsPath = cgroupsPath
		return s
	}
	enforced := "made\nnull\n"
	fallback := "null\n"
	for _, c := range []struct {
		name string
		spec *specs.Spec
		want string
	}{
		{"no rules", spec(nil, ""), "made\nopen-made\nopen-bound\nnull\n"},
		{"rules", spec(dockerDeviceRules(), ""), map[bool]string{false: enforced, true: fallback}[container.CgroupV2()]},
		// A cgroups path NewCgroup refuses: no cgroup, and no limit that needs one.
		{"rules, no cgroup", spec(dockerDeviceRules(), "a/../b"), fallback},
	} {
		os.Remove(rootfs + "/dev-node")
		code, out := run(t, c.spec)
		if code != 0 || out != c.want {
			t.Errorf("%s: exit %d, output %q, want %q", c.name, code, out, c.want)
		}
	}
}

package spec_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-registry/berth/runner/spec"
)

// allows reports whether c allows name without conditions.
func allows(c *specs.LinuxSeccomp, name string) bool {
	for _, sc := range c.Syscalls {
		if sc.Action == specs.ActAllow && len(sc.Args) == 0 && slices.Contains(sc.Names, name) {
			return true
		}
	}
	return false
}

func TestDefaultSeccomp(t *testing.T) {
	s := generate(t, busyboxConfig(), spec.Options{})
	c := s.Linux.Seccomp
	if c == nil {
		t.Fatal("no seccomp config by default")
	}
	if c.DefaultAction != specs.ActErrno || c.DefaultErrnoRet == nil || *c.DefaultErrnoRet != 1 {
		t.Errorf("default action %s %v, want SCMP_ACT_ERRNO EPERM", c.DefaultAction, c.DefaultErrnoRet)
	}
	if !allows(c, "read") || allows(c, "keyctl") || allows(c, "mount") || allows(c, "unshare") {
		t.Errorf("default profile: read %v keyctl %v mount %v unshare %v", allows(c, "read"), allows(c, "keyctl"), allows(c, "mount"), allows(c, "unshare"))
	}
	if !s.Process.NoNewPrivileges {
		t.Error("no_new_privs is off by default")
	}

	// CAP_SYS_ADMIN brings its rules.
	s = generate(t, busyboxConfig(), spec.Options{Security: spec.Security{CapAdd: []string{"sys_admin"}}})
	if !allows(s.Linux.Seccomp, "mount") || !allows(s.Linux.Seccomp, "unshare") {
		t.Error("with CAP_SYS_ADMIN, mount and unshare are not allowed")
	}
	if !slices.Contains(s.Process.Capabilities.Bounding, "CAP_SYS_ADMIN") {
		t.Error("--cap-add sys_admin did not add CAP_SYS_ADMIN")
	}

	s = generate(t, busyboxConfig(), spec.Options{Security: spec.Security{SeccompUnconfined: true}})
	if s.Linux.Seccomp != nil {
		t.Error("unconfined has a seccomp config")
	}
}

func TestCapAddDrop(t *testing.T) {
	defaults := spec.DefaultCapabilities()
	for _, tc := range []struct {
		name      string
		add, drop []string
		want      []string
	}{
		{"defaults", nil, nil, defaults},
		{"add short name", []string{"net_admin"}, nil, append(slices.Clone(defaults), "CAP_NET_ADMIN")},
		{"drop", []string{}, []string{"CAP_CHOWN", "mknod"}, slices.DeleteFunc(slices.Clone(defaults), func(c string) bool { return c == "CAP_CHOWN" || c == "CAP_MKNOD" })},
		{"drop all add one", []string{"KILL"}, []string{"ALL"}, []string{"CAP_KILL"}},
		{"add all drop one", []string{"all"}, []string{"SYS_ADMIN"}, slices.DeleteFunc(spec.AllCapabilities(), func(c string) bool { return c == "CAP_SYS_ADMIN" })},
		{"drop all", nil, []string{"all"}, nil},
	} {
		s := generate(t, busyboxConfig(), spec.Options{Security: spec.Security{CapAdd: tc.add, CapDrop: tc.drop}})
		got := s.Process.Capabilities.Bounding
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: bounding %v, want %v", tc.name, got, tc.want)
		}
		if !slices.Equal(s.Process.Capabilities.Effective, got) || !slices.Equal(s.Process.Capabilities.Permitted, got) {
			t.Errorf("%s: effective or permitted differ from bounding", tc.name)
		}
	}
	_, err := spec.Generate(busyboxConfig(), fakeRootfs(t, testPasswd, testGroup), spec.Options{Security: spec.Security{CapAdd: []string{"CAP_FLY"}}})
	if !errors.Is(err, spec.ErrInvalid) || !strings.Contains(err.Error(), "CAP_FLY") {
		t.Errorf("unknown capability: %v", err)
	}
}

func TestPrivileged(t *testing.T) {
	host := []specs.LinuxDevice{{Path: "/dev/sda", Type: "b", Major: 8}, {Path: "/dev/null", Type: "c", Major: 1, Minor: 3}}
	s := generate(t, busyboxConfig(), spec.Options{Security: spec.Security{Privileged: true, Devices: host}})
	if s.Linux.Seccomp != nil {
		t.Error("privileged has a seccomp filter")
	}
	// Every capability this process holds (the test runs as root, in a
	// sandbox that may hold fewer than all).
	if b := s.Process.Capabilities.Bounding; len(b) < len(spec.DefaultCapabilities()) || !slices.Contains(b, "CAP_SYS_ADMIN") && os.Geteuid() == 0 {
		t.Errorf("privileged capabilities %v", b)
	}
	if len(s.Linux.MaskedPaths) != 0 || len(s.Linux.ReadonlyPaths) != 0 || len(s.Linux.Resources.Devices) != 0 {
		t.Errorf("privileged keeps masked %v, read-only %v or device rules %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths, s.Linux.Resources.Devices)
	}
	n := 0
	for _, d := range s.Linux.Devices {
		if d.Path == "/dev/null" {
			n++
		}
	}
	if n != 1 || !slices.ContainsFunc(s.Linux.Devices, func(d specs.LinuxDevice) bool { return d.Path == "/dev/sda" }) {
		t.Errorf("privileged devices %v", s.Linux.Devices)
	}
	for _, m := range s.Mounts {
		if m.Destination == "/sys" && slices.Contains(m.Options, "ro") {
			t.Error("privileged /sys is read-only")
		}
	}
}

func TestParseSecurityOpt(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	os.WriteFile(good, []byte(`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["keyctl"], "action": "SCMP_ACT_ERRNO"}]}`), 0o644)
	broken := filepath.Join(dir, "broken.json")
	os.WriteFile(broken, []byte("{\n  \"defaultAction\": \"SCMP_ACT_ALLOW\",\n  \"syscalls\": [}\n"), 0o644)
	unknownField := filepath.Join(dir, "field.json")
	os.WriteFile(unknownField, []byte(`{"defaultAction": "SCMP_ACT_ALLOW", "sycalls": []}`), 0o644)

	var sec spec.Security
	if err := spec.ParseSecurityOpt(&sec, "seccomp="+good, os.ReadFile); err != nil {
		t.Fatal(err)
	}
	if len(sec.SeccompProfile) == 0 || sec.SeccompUnconfined {
		t.Errorf("seccomp=FILE: %+v", sec)
	}
	s := generate(t, busyboxConfig(), spec.Options{Security: sec})
	if c := s.Linux.Seccomp; c == nil || c.DefaultAction != specs.ActAllow || len(c.Syscalls) != 1 {
		t.Errorf("the profile's config: %+v", c)
	}
	if err := spec.ParseSecurityOpt(&sec, "seccomp=unconfined", os.ReadFile); err != nil || !sec.SeccompUnconfined || sec.SeccompProfile != nil {
		t.Errorf("seccomp=unconfined: %v %+v", err, sec)
	}
	for _, opt := range []string{"no-new-privileges", "no-new-privileges=true", "no-new-privileges:true"} {
		sec = spec.Security{}
		if err := spec.ParseSecurityOpt(&sec, opt, os.ReadFile); err != nil || sec.NoNewPrivileges == nil || !*sec.NoNewPrivileges {
			t.Errorf("%s: %v %+v", opt, err, sec)
		}
	}
	sec = spec.Security{}
	if err := spec.ParseSecurityOpt(&sec, "no-new-privileges=false", os.ReadFile); err != nil || sec.NoNewPrivileges == nil || *sec.NoNewPrivileges {
		t.Errorf("no-new-privileges=false: %v %+v", err, sec)
	}
	if s := generate(t, busyboxConfig(), spec.Options{Security: sec}); s.Process.NoNewPrivileges {
		t.Error("no-new-privileges=false left no_new_privs on")
	}

	for _, tc := range []struct{ opt, want string }{
		{"seccomp=" + broken, "broken.json: line 3"},
		{"seccomp=" + unknownField, "sycalls"},
		{"seccomp=" + filepath.Join(dir, "missing.json"), "missing.json"},
		{"seccomp", "seccomp"},
		{"no-new-privileges=maybe", "no-new-privileges=maybe"},
		{"apparmor=unconfined", "apparmor"},
		{"fly=high", "fly=high"},
	} {
		err := spec.ParseSecurityOpt(&spec.Security{}, tc.opt, os.ReadFile)
		if !errors.Is(err, spec.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an ErrInvalid naming %q", tc.opt, err, tc.want)
		}
	}
}

func TestHostDevices(t *testing.T) {
	devs, err := spec.HostDevices()
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat("/dev/null")
	if err != nil || st.Mode()&fs.ModeCharDevice == 0 {
		t.Skip("no /dev/null character device here")
	}
	i := slices.IndexFunc(devs, func(d specs.LinuxDevice) bool { return d.Path == "/dev/null" })
	if i < 0 || devs[i].Type != "c" || devs[i].Major != 1 || devs[i].Minor != 3 {
		t.Errorf("/dev/null not listed as c 1:3: %+v", devs)
	}
	for _, d := range devs {
		if strings.HasPrefix(d.Path, "/dev/pts/") || d.Path == "/dev/ptmx" {
			t.Errorf("listed %s", d.Path)
		}
	}
}

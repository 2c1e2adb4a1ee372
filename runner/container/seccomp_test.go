package container_test

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-registry/berth/runner/container"
	"github.com/berth-registry/berth/runner/seccomp"
)

// denyUnshare allows everything but unshare, which fails with EACCES.
func denyUnshare() *specs.LinuxSeccomp {
	eacces := uint(13)
	return &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchAARCH64, specs.ArchARM},
		Syscalls:      []specs.LinuxSyscall{{Names: []string{"unshare"}, Action: specs.ActErrno, ErrnoRet: &eacces}},
	}
}

func TestSeccompFilter(t *testing.T) {
	needRoot(t)
	rootfs := busyboxRootfs(t)
	const script = `grep '^Seccomp:' /proc/self/status; unshare -u true 2>&1; echo "unshare=$?"`
	runWith := func(t *testing.T, s *specs.Spec, opts ...container.StartOption) string {
		t.Helper()
		var out bytes.Buffer
		code, err := container.Run(context.Background(), s, container.Stdio{Out: &out, Err: &out}, opts...)
		if err != nil || code != 0 {
			t.Fatalf("Run: exit %d, %v (output %q)", code, err, out.String())
		}
		return out.String()
	}
	withSysAdmin := func(s *specs.Spec) *specs.Spec {
		c := s.Process.Capabilities
		c.Bounding = append(c.Bounding, "CAP_SYS_ADMIN")
		c.Effective, c.Permitted = c.Bounding, c.Bounding
		return s
	}

	t.Run("none", func(t *testing.T) {
		out := runWith(t, withSysAdmin(testSpec(rootfs, "sh", "-c", script)))
		if !strings.Contains(out, "Seccomp:\t0") || !strings.Contains(out, "unshare=0") {
			t.Errorf("without a filter: %q", out)
		}
	})
	for _, nnp := range []bool{true, false} {
		s := withSysAdmin(testSpec(rootfs, "sh", "-c", script))
		s.Process.NoNewPrivileges = nnp
		s.Linux.Seccomp = denyUnshare()
		out := runWith(t, s)
		if !strings.Contains(out, "Seccomp:\t2") || !strings.Contains(out, "Permission denied") || !strings.Contains(out, "unshare=1") {
			t.Errorf("filter from the spec, no_new_privs %v: %q", nnp, out)
		}
	}
	t.Run("WithSeccomp", func(t *testing.T) {
		// The program given is the one installed, not the spec's.
		s := withSysAdmin(testSpec(rootfs, "sh", "-c", script))
		s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow}
		p, err := seccomp.Compile(denyUnshare(), runtime.GOARCH)
		if err != nil {
			t.Fatal(err)
		}
		out := runWith(t, s, container.WithSeccomp(p))
		if !strings.Contains(out, "Permission denied") {
			t.Errorf("WithSeccomp's program was not installed: %q", out)
		}
	})
	t.Run("bad config", func(t *testing.T) {
		s := testSpec(rootfs, "true")
		s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: "SCMP_ACT_SOMETIMES"}
		_, err := container.Run(context.Background(), s, container.Stdio{})
		if !errors.Is(err, seccomp.ErrInvalid) {
			t.Errorf("a bad seccomp config: %v", err)
		}
	})
}

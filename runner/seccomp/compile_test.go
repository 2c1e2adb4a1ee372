package seccomp_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	mobyseccomp "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/berth-registry/berth/runner/seccomp"
)

// Audit architectures, as the kernel reports them in seccomp_data.arch.
const (
	auditX86_64  = 0xc000003e
	auditI386    = 0x40000003
	auditAARCH64 = 0xc00000b7
)

var (
	retAllow = uint32(unix.SECCOMP_RET_ALLOW)
	retEPERM = uint32(unix.SECCOMP_RET_ERRNO) | uint32(unix.EPERM)
	retNOSYS = uint32(unix.SECCOMP_RET_ERRNO) | uint32(unix.ENOSYS)
)

// vm runs a compiled program in x/net/bpf's interpreter.
type vm struct{ m *bpf.VM }

func newVM(t *testing.T, p *seccomp.Program) vm {
	t.Helper()
	ins := make([]bpf.Instruction, len(p.Filter))
	for i, f := range p.Filter {
		ins[i] = bpf.RawInstruction{Op: f.Code, Jt: f.Jt, Jf: f.Jf, K: f.K}.Disassemble()
		if _, raw := ins[i].(bpf.RawInstruction); raw {
			t.Fatalf("instruction %d (%+v) does not disassemble", i, f)
		}
	}
	m, err := bpf.NewVM(ins)
	if err != nil {
		t.Fatalf("the program does not load: %v", err)
	}
	return vm{m}
}

// run returns what the filter says of the system call nr of arch with
// args. The interpreter loads words big-endian, where the kernel loads
// them in the machine's (little-endian) order: each 32-bit word is put
// where the filter reads it, in the order the interpreter reads it.
func (v vm) run(t *testing.T, arch, nr uint32, args ...uint64) uint32 {
	t.Helper()
	data := make([]byte, 64)
	binary.BigEndian.PutUint32(data[0:], nr)
	binary.BigEndian.PutUint32(data[4:], arch)
	for i, a := range args {
		binary.BigEndian.PutUint32(data[16+8*i:], uint32(a))
		binary.BigEndian.PutUint32(data[20+8*i:], uint32(a>>32))
	}
	r, err := v.m.Run(data)
	if err != nil {
		t.Fatalf("running the filter: %v", err)
	}
	return uint32(r)
}

// dockerDefault is docker's default profile for a container whose
// bounding set is caps, as runner/spec makes it, for amd64.
func dockerDefault(t *testing.T, caps ...string) *specs.LinuxSeccomp {
	t.Helper()
	rs := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: caps}}}
	s, err := mobyseccomp.GetDefaultProfile(rs)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOARCH != "amd64" {
		// The profile lists the machine's arches: make it amd64's.
		s.Architectures = []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}
	}
	return s
}

func TestDockerDefaultAMD64(t *testing.T) {
	p, err := seccomp.Compile(dockerDefault(t, "CAP_CHOWN", "CAP_SETUID"), "amd64")
	if err != nil {
		t.Fatal(err)
	}
	v := newVM(t, p)
	const newuser, sigchld = unix.CLONE_NEWUSER, uint64(unix.SIGCHLD)
	for _, tc := range []struct {
		name string
		arch uint32
		nr   uint32
		args []uint64
		want uint32
	}{
		{"read", auditX86_64, unix.SYS_READ, nil, retAllow},
		{"execve", auditX86_64, 59, nil, retAllow},
		{"keyctl", auditX86_64, 250, nil, retEPERM},
		{"add_key", auditX86_64, 248, nil, retEPERM},
		{"unshare", auditX86_64, 272, []uint64{newuser}, retEPERM},
		{"mount", auditX86_64, 165, nil, retEPERM},
		{"ptrace", auditX86_64, 101, nil, retAllow}, // kernel >= 4.8
		{"reboot", auditX86_64, 169, nil, retEPERM},
		{"clone thread", auditX86_64, 56, []uint64{unix.CLONE_VM | unix.CLONE_THREAD | unix.CLONE_SIGHAND}, retAllow},
		{"clone fork", auditX86_64, 56, []uint64{sigchld}, retAllow},
		{"clone newuser", auditX86_64, 56, []uint64{newuser | sigchld}, retEPERM},
		{"clone newns", auditX86_64, 56, []uint64{unix.CLONE_NEWNS}, retEPERM},
		{"clone3", auditX86_64, 435, nil, retNOSYS},
		{"personality 0", auditX86_64, 135, []uint64{0}, retAllow},
		{"personality query", auditX86_64, 135, []uint64{0xffffffff}, retAllow},
		{"personality 8", auditX86_64, 135, []uint64{8}, retAllow},
		{"personality 1", auditX86_64, 135, []uint64{1}, retEPERM},
		{"personality high bits", auditX86_64, 135, []uint64{1 << 32}, retEPERM},
		{"socket inet", auditX86_64, 41, []uint64{unix.AF_INET}, retAllow},
		{"socket unix", auditX86_64, 41, []uint64{unix.AF_UNIX}, retAllow},
		{"socket netlink", auditX86_64, 41, []uint64{unix.AF_NETLINK}, retAllow},
		{"socket alg", auditX86_64, 41, []uint64{unix.AF_ALG}, retEPERM},
		{"socket vsock", auditX86_64, 41, []uint64{unix.AF_VSOCK}, retEPERM},
		{"x32 read", auditX86_64, 0x40000000, nil, retNOSYS},
		{"i386 read", auditI386, 3, nil, retAllow},
		{"i386 keyctl", auditI386, 288, nil, retEPERM},
		{"i386 unshare", auditI386, 310, nil, retEPERM},
		{"aarch64 on amd64", auditAARCH64, 63, nil, retNOSYS},
		{"unknown number", auditX86_64, 4000, nil, retEPERM},
	} {
		if got := v.run(t, tc.arch, tc.nr, tc.args...); got != tc.want {
			t.Errorf("%s: got %#x, want %#x", tc.name, got, tc.want)
		}
	}
}

func TestDockerDefaultWithSysAdmin(t *testing.T) {
	p, err := seccomp.Compile(dockerDefault(t, "CAP_SYS_ADMIN", "CAP_CHOWN"), "amd64")
	if err != nil {
		t.Fatal(err)
	}
	v := newVM(t, p)
	for _, tc := range []struct {
		name string
		nr   uint32
		args []uint64
		want uint32
	}{
		{"unshare", 272, []uint64{unix.CLONE_NEWUSER}, retAllow},
		{"mount", 165, nil, retAllow},
		{"clone newuser", 56, []uint64{unix.CLONE_NEWUSER}, retAllow},
		{"clone3", 435, nil, retAllow},
		{"keyctl", 250, nil, retEPERM},
		{"reboot", 169, nil, retEPERM},
	} {
		if got := v.run(t, auditX86_64, tc.nr, tc.args...); got != tc.want {
			t.Errorf("%s: got %#x, want %#x", tc.name, got, tc.want)
		}
	}
}

func TestDockerDefaultARM64(t *testing.T) {
	s := dockerDefault(t)
	s.Architectures = []specs.Arch{specs.ArchAARCH64, specs.ArchARM}
	p, err := seccomp.Compile(s, "arm64")
	if err != nil {
		t.Fatal(err)
	}
	v := newVM(t, p)
	const arm = 0x40000028
	for _, tc := range []struct {
		name     string
		arch, nr uint32
		args     []uint64
		want     uint32
	}{
		{"read", auditAARCH64, 63, nil, retAllow},
		{"keyctl", auditAARCH64, 219, nil, retEPERM},
		{"unshare", auditAARCH64, 97, nil, retEPERM},
		{"clone newuser", auditAARCH64, 220, []uint64{unix.CLONE_NEWUSER}, retEPERM},
		{"clone fork", auditAARCH64, 220, []uint64{17}, retAllow},
		{"arm read", arm, 3, nil, retAllow},
		{"arm keyctl", arm, 311, nil, retEPERM},
		{"amd64 on arm64", auditX86_64, 0, nil, retNOSYS},
	} {
		if got := v.run(t, tc.arch, tc.nr, tc.args...); got != tc.want {
			t.Errorf("%s: got %#x, want %#x", tc.name, got, tc.want)
		}
	}
}

// TestOperators checks every comparison against Go's on values around
// the 32-bit halves' edges.
func TestOperators(t *testing.T) {
	values := []uint64{0, 1, 2, 0xfffffffe, 0xffffffff, 1 << 32, 1<<32 + 1, 2 << 32, 0xffffffff_ffffffff, 0x1_0000_0002, 0xdead_0000_beef}
	ops := map[specs.LinuxSeccompOperator]func(a, v, v2 uint64) bool{
		specs.OpEqualTo:      func(a, v, _ uint64) bool { return a == v },
		specs.OpNotEqual:     func(a, v, _ uint64) bool { return a != v },
		specs.OpLessThan:     func(a, v, _ uint64) bool { return a < v },
		specs.OpLessEqual:    func(a, v, _ uint64) bool { return a <= v },
		specs.OpGreaterThan:  func(a, v, _ uint64) bool { return a > v },
		specs.OpGreaterEqual: func(a, v, _ uint64) bool { return a >= v },
		specs.OpMaskedEqual:  func(a, v, v2 uint64) bool { return a&v == v2 },
	}
	for op, eval := range ops {
		for _, val := range values {
			v2 := val & 0xffff_0000_ffff_0001
			s := &specs.LinuxSeccomp{
				DefaultAction: specs.ActAllow,
				Syscalls: []specs.LinuxSyscall{{
					Names: []string{"getpid"}, Action: specs.ActErrno,
					// The condition on argument 3, behind one on argument 1
					// that always holds.
					Args: []specs.LinuxSeccompArg{
						{Index: 1, Op: specs.OpGreaterEqual, Value: 0},
						{Index: 3, Op: op, Value: val, ValueTwo: v2},
					},
				}},
			}
			p, err := seccomp.Compile(s, "amd64")
			if err != nil {
				t.Fatal(err)
			}
			v := newVM(t, p)
			for _, a := range values {
				want := retAllow
				if eval(a, val, v2) {
					want = retEPERM
				}
				if got := v.run(t, auditX86_64, unix.SYS_GETPID, 0, 7, 0, a); got != want {
					t.Errorf("%s %#x (two %#x) on %#x: got %#x, want %#x", op, val, v2, a, got, want)
				}
			}
			// Another call is not affected.
			if got := v.run(t, auditX86_64, unix.SYS_GETPPID, 0, 7, 0, values[0]); got != retAllow {
				t.Errorf("getppid: got %#x", got)
			}
		}
	}
}

// TestRuleOrder: conditional rules come before the unconditional one, and
// a rule's conditions must all hold.
func TestRuleOrder(t *testing.T) {
	enoent := uint(unix.ENOENT)
	s := &specs.LinuxSeccomp{
		DefaultAction: specs.ActErrno,
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"getpid"}, Action: specs.ActAllow},
			{Names: []string{"getpid"}, Action: specs.ActErrno, ErrnoRet: &enoent, Args: []specs.LinuxSeccompArg{
				{Index: 0, Op: specs.OpEqualTo, Value: 5},
				{Index: 1, Op: specs.OpEqualTo, Value: 6},
			}},
			{Names: []string{"no_such_call", "getppid"}, Action: specs.ActKillProcess},
		},
	}
	p, err := seccomp.Compile(s, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	v := newVM(t, p)
	retENOENT := uint32(unix.SECCOMP_RET_ERRNO) | uint32(unix.ENOENT)
	for _, tc := range []struct {
		nr   uint32
		args []uint64
		want uint32
	}{
		{unix.SYS_GETPID, []uint64{5, 6}, retENOENT},
		{unix.SYS_GETPID, []uint64{5, 7}, retAllow},
		{unix.SYS_GETPID, []uint64{4, 6}, retAllow},
		{unix.SYS_GETPPID, nil, unix.SECCOMP_RET_KILL_PROCESS},
		{unix.SYS_READ, nil, retEPERM},
	} {
		if got := v.run(t, auditX86_64, tc.nr, tc.args...); got != tc.want {
			t.Errorf("%d %v: got %#x, want %#x", tc.nr, tc.args, got, tc.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    specs.LinuxSeccomp
		want error
	}{
		{"no default action", specs.LinuxSeccomp{}, seccomp.ErrInvalid},
		{"unknown action", specs.LinuxSeccomp{DefaultAction: "SCMP_ACT_MAYBE"}, seccomp.ErrInvalid},
		{"notify", specs.LinuxSeccomp{DefaultAction: specs.ActNotify}, seccomp.ErrUnsupported},
		{"bad index", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"read"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 6, Op: specs.OpEqualTo}}}}}, seccomp.ErrInvalid},
		{"bad op", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"read"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 0, Op: "SCMP_CMP_SOMETIMES"}}}}}, seccomp.ErrInvalid},
		{"bad flag", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Flags: []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_NOPE"}}, seccomp.ErrUnsupported},
	} {
		if _, err := seccomp.Compile(&tc.s, "amd64"); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := seccomp.Compile(&specs.LinuxSeccomp{DefaultAction: specs.ActAllow}, "sparc64"); !errors.Is(err, seccomp.ErrUnsupported) {
		t.Errorf("unknown GOARCH: got %v", err)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	p, err := seccomp.Compile(dockerDefault(t), "amd64")
	if err != nil {
		t.Fatal(err)
	}
	p.Flags = unix.SECCOMP_FILTER_FLAG_LOG
	b, _ := p.MarshalBinary()
	var q seccomp.Program
	if err := q.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if q.Flags != p.Flags || len(q.Filter) != len(p.Filter) {
		t.Fatalf("round trip: %d/%d instructions, flags %d/%d", len(q.Filter), len(p.Filter), q.Flags, p.Flags)
	}
	for i := range p.Filter {
		if p.Filter[i] != q.Filter[i] {
			t.Fatalf("instruction %d: %+v, want %+v", i, q.Filter[i], p.Filter[i])
		}
	}
	if err := q.UnmarshalBinary(b[:len(b)-3]); !errors.Is(err, seccomp.ErrInvalid) {
		t.Errorf("truncated: got %v", err)
	}
}

// childEnv makes the test binary the child of TestInstall.
const childEnv = "BERTH_SECCOMP_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(installChild())
	}
	os.Exit(m.Run())
}

// installChild installs docker's default filter (no capabilities) on its
// thread and prints the errno of keyctl, unshare and getpid.
func installChild() int {
	runtime.LockOSThread()
	s, err := mobyseccomp.GetDefaultProfile(&specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{}}})
	if err == nil {
		var p *seccomp.Program
		if p, err = seccomp.Compile(s, runtime.GOARCH); err == nil {
			if err = unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err == nil {
				err = p.Install()
			}
		}
	}
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	errnoOf := func(trap uintptr, a ...uintptr) unix.Errno {
		a = append(a, 0, 0, 0)
		_, _, e := unix.RawSyscall(trap, a[0], a[1], a[2])
		return e
	}
	fmt.Printf("keyctl=%d unshare=%d getpid=%d\n",
		errnoOf(unix.SYS_KEYCTL, 0), errnoOf(unix.SYS_UNSHARE, unix.CLONE_NEWUSER), errnoOf(unix.SYS_GETPID))
	return 0
}

// TestInstall installs the compiled default profile in a child process:
// the kernel takes the program and applies it.
func TestInstall(t *testing.T) {
	if _, ok := map[string]bool{"amd64": true, "arm64": true}[runtime.GOARCH]; !ok {
		t.Skipf("no test on %s", runtime.GOARCH)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v: %s", err, out)
	}
	want := fmt.Sprintf("keyctl=%d unshare=%d getpid=0", unix.EPERM, unix.EPERM)
	if got := strings.TrimSpace(string(out)); got != want {
		t.Errorf("child says %q, want %q", got, want)
	}
}

func TestCache(t *testing.T) {
	c := seccomp.Cache{Dir: t.TempDir()}
	s := dockerDefault(t)
	p, err := c.Compile(s, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	files, _ := os.ReadDir(c.Dir)
	if len(files) != 1 {
		t.Fatalf("the cache holds %d files, want 1", len(files))
	}
	// A cached program is read, not compiled: tamper with the file and
	// see the change come back.
	name := c.Dir + "/" + files[0].Name()
	b, _ := os.ReadFile(name)
	b[len(b)-1] ^= 0xff
	os.WriteFile(name, b, 0o600)
	q, err := c.Compile(s, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	if q.Filter[len(q.Filter)-1] == p.Filter[len(p.Filter)-1] {
		t.Error("the cached file was not read")
	}
	// Another config, or another arch, is another entry.
	s.DefaultAction = specs.ActKillProcess
	if _, err := c.Compile(s, "amd64"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Compile(s, "arm64"); err != nil {
		t.Fatal(err)
	}
	if files, _ := os.ReadDir(c.Dir); len(files) != 3 {
		t.Errorf("the cache holds %d files, want 3", len(files))
	}
}

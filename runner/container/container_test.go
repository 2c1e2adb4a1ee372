package container_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/berth-registry/berth/runner/container"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// needRoot skips tests that create namespaces when not root, or fails
// them where they must run (BERTH_REQUIRE_RUNNER=1, as make test sets).
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root (namespaces, mounts, cgroups)")
	}
}

func skipOrFail(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("BERTH_REQUIRE_RUNNER") == "1" {
		t.Fatalf("%s (BERTH_REQUIRE_RUNNER=1: the runtime tests may not skip)", why)
	}
	t.Skip(why)
}

// busyboxRootfs builds a rootfs with the host's static busybox and its
// applets as symlinks, /etc/passwd and an /app directory.
func busyboxRootfs(t *testing.T) string {
	t.Helper()
	needRoot(t)
	bb, err := exec.LookPath("busybox")
	if err != nil {
		skipOrFail(t, "needs a static busybox on PATH (apt-get install busybox-static; make prereqs does)")
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"bin", "etc", "tmp", "app", "proc", "sys", "dev"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(root, "tmp"), 0o1777)
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet != "busybox" {
			os.Symlink("busybox", filepath.Join(root, "bin", applet))
		}
	}
	os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc", "group"), []byte("root:x:0:\napp:x:1000:\n"), 0o644)
	return root
}

// dockerCaps is Docker's default capability set.
var dockerCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// testSpec is a spec like `berth run` makes (and runc's defaults).
func testSpec(rootfs string, args ...string) *specs.Spec {
	return &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: rootfs},
		Process: &specs.Process{
			Args: args,
			Env:  []string{"PATH=/bin", "HOME=/root"},
			Cwd:  "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding: dockerCaps, Effective: dockerCaps, Permitted: dockerCaps,
			},
			NoNewPrivileges: true,
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
		},
		Hostname: "testbox",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}, {Type: specs.UTSNamespace},
				{Type: specs.IPCNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.CgroupNamespace},
			},
			MaskedPaths: []string{
				"/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
				"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
				"/sys/firmware", "/sys/devices/virtual/powercap",
			},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}

// run runs spec and returns the exit code and the output (stdout+stderr).
func run(t *testing.T, spec *specs.Spec) (int, string) {
	t.Helper()
	var out bytes.Buffer
	code, err := container.Run(context.Background(), spec, container.Stdio{Out: &out, Err: &out})
	if err != nil {
		t.Fatalf("Run: %v (output %q)", err, out.String())
	}
	return code, out.String()
}

// sh runs `sh -c script` in a default container and wants exit 0.
func sh(t *testing.T, rootfs, script string) string {
	t.Helper()
	code, out := run(t, testSpec(rootfs, "sh", "-c", script))
	if code != 0 {
		t.Fatalf("sh -c %q: exit %d, output %q", script, code, out)
	}
	return out
}

func TestContainer(t *testing.T) {
	rootfs := busyboxRootfs(t)
	cases := []struct {
		name, script, want string
	}{
		{"pid 1", `echo $$; readlink /proc/self`, "1\n"},
		{"hostname", `hostname`, "testbox\n"},
		{"only loopback, up", `ls /sys/class/net; cat /sys/class/net/lo/operstate /sys/class/net/lo/flags`, "lo\nunknown\n0x9\n"},
		{"docker's bounding set", `grep CapBnd /proc/self/status`, "CapBnd:\t00000000a80425fb\n"},
		{"effective = bounding for root", `grep CapEff /proc/self/status`, "CapEff:\t00000000a80425fb\n"},
		{"no_new_privs", `grep NoNewPrivs /proc/self/status`, "NoNewPrivs:\t1\n"},
		{"masked paths empty (see TestMaskedPathsNotVacuous)", `cat /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug 2>/dev/null | wc -c; ls /sys/firmware | wc -l`, "0\n0\n"},
		{"sys read-only", `touch /sys/kernel/x 2>/dev/null || echo refused; grep ' /sys ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1`, "refused\nro\n"},
		{"proc/sys read-only", `{ echo 1 > /proc/sys/kernel/ns_last_pid; } 2>/dev/null || echo refused`, "refused\n"},
		{"devices", `cat /dev/null; head -c 3 /dev/zero | wc -c; ls /dev | sort | tr '\n' ' '`, "3\nconsole core fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero "},
		{"rlimit", `ulimit -n`, "1024\n"},
		{"cgroup namespace root", `cat /proc/self/cgroup | grep -v -e '::/$' -e ':/$' -e '^[0-9]*:[a-z_=]*,\?[a-z_]*:/$' || echo all-root`, ""},
		{"writable rootfs", `echo hi > /tmp/f && cat /tmp/f`, "hi\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := sh(t, rootfs, c.script)
			if c.name == "pid 1" {
				if !strings.HasPrefix(got, "1\n") {
					t.Errorf("got %q, want PID 1", got)
				}
				return
			}
			if c.name == "devices" {
				// console only with a terminal, core only where /proc/kcore exists
				got = strings.Replace(got, "console ", "", 1)
				want := c.want
				want = strings.Replace(want, "console ", "", 1)
				if _, err := os.Stat("/proc/kcore"); err != nil {
					want = strings.Replace(want, "core ", "", 1)
				}
				if got != want {
					t.Errorf("got %q, want %q", got, want)
				}
				return
			}
			if c.name == "cgroup namespace root" {
				if !strings.Contains(got, "all-root") {
					t.Errorf("/proc/self/cgroup has paths outside the namespace root: %q", got)
				}
				return
			}
			if got != c.want {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}

// TestMaskedPathsNotVacuous checks that the host has content in some of
// the paths TestContainer finds empty.
func TestMaskedPathsNotVacuous(t *testing.T) {
	needRoot(t)
	var n int
	for _, p := range []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug"} {
		b, _ := os.ReadFile(p)
		n += len(b)
	}
	if n == 0 {
		t.Error("none of the masked /proc files has content on the host: the test proves nothing")
	}
}

func TestExitCode(t *testing.T) {
	rootfs := busyboxRootfs(t)
	code, _ := run(t, testSpec(rootfs, "sh", "-c", "exit 7"))
	if code != 7 {
		t.Errorf("exit code %d, want 7", code)
	}
	code, _ = run(t, testSpec(rootfs, "sh", "-c", "sh -c 'kill -9 $$'; echo $?"))
	if code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}

func TestKilledBySignal(t *testing.T) {
	rootfs := busyboxRootfs(t)
	spec := testSpec(rootfs, "sleep", "100")
	var out bytes.Buffer
	p, err := container.Start(context.Background(), "", spec, container.Stdio{Out: &out, Err: &out})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	code, err := p.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if code != 137 {
		t.Errorf("exit code %d, want 137 (128+SIGKILL)", code)
	}
}

func TestExecErrors(t *testing.T) {
	rootfs := busyboxRootfs(t)
	code, err := container.Run(context.Background(), testSpec(rootfs, "no-such-command"), container.Stdio{})
	var ie *container.InitError
	if !errors.As(err, &ie) || !errors.Is(err, fs.ErrNotExist) || code != 127 {
		t.Errorf("missing command: code %d, err %v; want 127 and an InitError wrapping ENOENT", code, err)
	}
	os.WriteFile(filepath.Join(rootfs, "noexec"), []byte("x"), 0o644)
	code, err = container.Run(context.Background(), testSpec(rootfs, "/noexec"), container.Stdio{})
	if code != 126 || !errors.As(err, &ie) {
		t.Errorf("not executable: code %d, err %v; want 126", code, err)
	}
	spec := testSpec(rootfs, "true")
	spec.Root.Path = "relative"
	if _, err := container.Run(context.Background(), spec, container.Stdio{}); !errors.Is(err, container.ErrInvalidSpec) {
		t.Errorf("relative root: %v, want ErrInvalidSpec", err)
	}
}

func TestUserAndCwd(t *testing.T) {
	rootfs := busyboxRootfs(t)
	spec := testSpec(rootfs, "sh", "-c", "id; pwd; grep CapEff /proc/self/status")
	spec.Process.User = specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{100}}
	spec.Process.Cwd = "/app/work"
	code, out := run(t, spec)
	want := "uid=1000(app) gid=1000(app) groups=100\n/app/work\nCapEff:\t0000000000000000\n"
	if code != 0 || out != want {
		t.Errorf("exit %d, output %q; want %q", code, out, want)
	}
}

func TestStdin(t *testing.T) {
	rootfs := busyboxRootfs(t)
	var out bytes.Buffer
	code, err := container.Run(context.Background(), testSpec(rootfs, "tr", "a-z", "A-Z"),
		container.Stdio{In: strings.NewReader("hello\n"), Out: &out})
	if err != nil || code != 0 || out.String() != "HELLO\n" {
		t.Errorf("code %d, err %v, output %q", code, err, out.String())
	}
}

func TestBindMounts(t *testing.T) {
	rootfs := busyboxRootfs(t)
	host := t.TempDir()
	os.WriteFile(filepath.Join(host, "in"), []byte("from host\n"), 0o644)
	spec := testSpec(rootfs, "sh", "-c", "cat /data/in; echo out > /data/out; { echo x > /ro/x; } 2>/dev/null || echo ro-refused")
	spec.Mounts = append(spec.Mounts,
		specs.Mount{Destination: "/data", Type: "bind", Source: host, Options: []string{"rbind"}},
		specs.Mount{Destination: "/ro", Type: "bind", Source: host, Options: []string{"rbind", "ro"}},
	)
	code, out := run(t, spec)
	if code != 0 || out != "from host\nro-refused\n" {
		t.Errorf("exit %d, output %q", code, out)
	}
	if b, err := os.ReadFile(filepath.Join(host, "out")); err != nil || string(b) != "out\n" {
		t.Errorf("file written in the container: %q, %v", b, err)
	}
}

func TestTerminal(t *testing.T) {
	rootfs := busyboxRootfs(t)
	spec := testSpec(rootfs, "sh", "-c", "tty; stty size; test -t 0 && echo stdin-tty")
	spec.Process.Terminal = true
	spec.Process.ConsoleSize = &specs.Box{Height: 30, Width: 100}
	code, out := run(t, spec)
	out = strings.ReplaceAll(out, "\r\n", "\n")
	if code != 0 || !strings.HasPrefix(out, "/dev/pts/0\n30 100\nstdin-tty\n") {
		t.Errorf("exit %d, output %q", code, out)
	}
}

func TestUserNamespace(t *testing.T) {
	rootfs := busyboxRootfs(t)
	spec := testSpec(rootfs, "sh", "-c", "cat /proc/self/uid_map | tr -s ' '; id -u; cat /dev/null && echo null-ok")
	spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
	spec.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	spec.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	// The mapped root must reach the rootfs.
	for d := filepath.Dir(rootfs); d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	code, out := run(t, spec)
	if code != 0 || out != " 0 100000 65536\n0\nnull-ok\n" {
		t.Errorf("exit %d, output %q", code, out)
	}
}

func TestPidsLimit(t *testing.T) {
	rootfs := busyboxRootfs(t)
	// A bounded fork bomb: 40 sleepers. Without a limit it runs through;
	// with room for 10 processes a fork fails, which ends the shell.
	script := `i=0; while [ $i -lt 40 ]; do sleep 30 & i=$((i+1)); done; echo survived`
	code, out := run(t, testSpec(rootfs, "sh", "-c", script))
	if code != 0 || out != "survived\n" {
		t.Fatalf("without a limit: exit %d, output %q", code, out)
	}
	spec := testSpec(rootfs, "sh", "-c", script)
	limit := int64(10)
	spec.Linux.Resources = &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: &limit}}
	code, out = run(t, spec)
	if code == 0 || strings.Contains(out, "survived") || !strings.Contains(out, "can't fork") {
		t.Errorf("40 forks under pids.max=10: exit %d, output %q; want a fork failure", code, out)
	}
}

func TestMemoryLimit(t *testing.T) {
	rootfs := busyboxRootfs(t)
	// dd allocates and touches a 256 MiB buffer; the limit is 64 MiB (the
	// init, this test binary, is charged too: under -race it is large).
	spec := testSpec(rootfs, "dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1")
	limit := int64(64 << 20)
	spec.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}
	var out bytes.Buffer
	p, err := container.Start(context.Background(), "", spec, container.Stdio{Out: &out, Err: &out})
	if err != nil {
		t.Fatal(err)
	}
	code, err := p.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if code != 137 || !p.OOMKilled() {
		t.Errorf("exit %d, oom killed %v; want 137 and true (output %q)", code, p.OOMKilled(), out.String())
	}
	// Under the limit, the same works.
	spec.Process.Args = []string{"dd", "if=/dev/zero", "of=/dev/null", "bs=4M", "count=1"}
	if code, out := run(t, spec); code != 0 {
		t.Errorf("4 MiB under a 64 MiB limit: exit %d, %q", code, out)
	}
}

func TestCPULimit(t *testing.T) {
	rootfs := busyboxRootfs(t)
	quota, period := int64(50000), uint64(100000)
	spec := testSpec(rootfs, "sh", "-c", "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us 2>/dev/null || cat /sys/fs/cgroup/cpu.max")
	spec.Linux.Resources = &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: &quota, Period: &period}}
	code, out := run(t, spec)
	if code != 0 || (out != "50000\n100000\n" && out != "50000 100000\n") {
		t.Errorf("exit %d, output %q", code, out)
	}
}

// TestCgroupJoined checks that the container's process, and nothing else,
// is in its group in every hierarchy, whether the parent moved it there
// (v2) or the init moved its own thread before exec'ing (v1).
func TestCgroupJoined(t *testing.T) {
	rootfs := busyboxRootfs(t)
	limit := int64(20)
	spec := testSpec(rootfs, "sleep", "60")
	spec.Linux.Resources = &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: &limit}}
	spec.Linux.CgroupsPath = "berth-test/" + container.NewID()
	p, err := container.Start(context.Background(), "", spec, container.Stdio{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		p.Signal(syscall.SIGKILL)
		p.Wait()
		for _, d := range p.CgroupPaths() {
			os.Remove(filepath.Dir(d))
		}
	}()
	paths := p.CgroupPaths()
	if len(paths) == 0 {
		t.Fatal("no cgroup")
	}
	want := fmt.Sprintf("%d\n", p.Pid())
	for _, d := range paths {
		file := "tasks" // every thread, on v1
		if _, err := os.Stat(filepath.Join(d, file)); err != nil {
			file = "cgroup.threads"
		}
		b, err := os.ReadFile(filepath.Join(d, file))
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != want {
			t.Errorf("%s/%s holds %q, want the container's process %q", d, file, b, want)
		}
	}
}

// TestCgroupV2Joined runs the cgroup v2 implementation on this host's v2
// hierarchy (the unified one of a hybrid host, where it has no controllers
// and so no limits): the init is cloned into its group (clone3 with
// CLONE_INTO_CGROUP), is alone there, and the group goes with it.
func TestCgroupV2Joined(t *testing.T) {
	rootfs := busyboxRootfs(t)
	root := "/sys/fs/cgroup"
	if !container.CgroupV2() {
		root = "/sys/fs/cgroup/unified"
		var st unix.Statfs_t
		if err := unix.Statfs(root, &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
			skipOrFail(t, "no cgroup v2 hierarchy mounted")
		}
	}
	rel := "berth-test/" + container.NewID()
	spec := testSpec(rootfs, "sleep", "60")
	spec.Linux.CgroupsPath = rel
	p, err := container.StartInCgroupV2(context.Background(), root, spec, container.Stdio{})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, rel)
	defer os.Remove(filepath.Dir(dir))
	want := fmt.Sprintf("%d\n", p.Pid())
	for _, file := range []string{"cgroup.procs", "cgroup.threads"} {
		if b, err := os.ReadFile(filepath.Join(dir, file)); err != nil || string(b) != want {
			t.Errorf("%s/%s holds %q (%v), want the container's process %q", dir, file, b, err, want)
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", p.Pid()))
	if err != nil || !strings.Contains(string(b), "\n0::/"+rel+"\n") && !strings.HasPrefix(string(b), "0::/"+rel+"\n") {
		t.Errorf("/proc/%d/cgroup: %q (%v), want 0::/%s", p.Pid(), b, err, rel)
	}
	p.Signal(syscall.SIGKILL)
	p.Wait()
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("cgroup %s after exit: %v", dir, err)
	}
}

func TestCgroupRemoved(t *testing.T) {
	rootfs := busyboxRootfs(t)
	limit := int64(20)
	spec := testSpec(rootfs, "true")
	spec.Linux.Resources = &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: &limit}}
	spec.Linux.CgroupsPath = "berth-test/" + container.NewID()
	p, err := container.Start(context.Background(), "", spec, container.Stdio{})
	if err != nil {
		t.Fatal(err)
	}
	paths := p.CgroupPaths()
	if len(paths) == 0 {
		t.Fatal("no cgroup")
	}
	for _, d := range paths {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("cgroup %s while running: %v", d, err)
		}
	}
	p.Wait()
	for _, d := range paths {
		if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("cgroup %s after exit: %v", d, err)
		}
		os.Remove(filepath.Dir(d))
	}
}

package integration

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// berthCLI runs the built berth binary with one state directory.
type berthCLI struct {
	t     *testing.T
	bin   string
	state string
	env   []string // the environment; nil: the test's
}

// run runs `berth CMD --state DIR ARGS...` and returns stdout, stderr
// and the exit code.
func (b berthCLI) run(cmd string, args ...string) (string, string, int) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.t.Context(), 5*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, b.bin, append([]string{cmd, "--state", b.state}, args...)...)
	c.Env = b.env
	var out, errOut bytes.Buffer
	c.Stdout, c.Stderr = &out, &errOut
	err := c.Run()
	code := 0
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		b.t.Fatalf("berth %s: %v", cmd, err)
	}
	return out.String(), errOut.String(), code
}

// ok runs a berth command that must exit 0 and returns its stdout.
func (b berthCLI) ok(cmd string, args ...string) string {
	b.t.Helper()
	out, errOut, code := b.run(cmd, args...)
	if code != 0 {
		b.t.Fatalf("berth %s %q: exit %d\nstdout: %s\nstderr: %s", cmd, args, code, out, errOut)
	}
	return out
}

// TestRun pushes the test images to a registry and runs them with the
// built `berth run`, then takes a container through its lifecycle.
func TestRun(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	prerequisite(t, os.Geteuid() == 0, "berth run needs root (namespaces, mounts, cgroups)")
	env := toolEnv(t)
	needTools(t, env, "skopeo")
	dir, imgs := testImages(t)
	srv := startServer(t, underTest(), Filesystem, t.TempDir())
	pushImages(t, env, srv.Host, "run", dir, imgs)
	b := berthCLI{t: t, bin: berthBinary(t), state: filepath.Join(t.TempDir(), "state")}
	// As /var/lib is: a user-namespaced container's root must reach the
	// state directory (berth makes it 0711 itself).
	for d := filepath.Dir(b.state); d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	ref := func(name string) string { return srv.Host + "/run/" + name + ":latest" }

	t.Run("busybox", func(t *testing.T) {
		out := b.ok("run", "--rm", ref("busybox"))
		// The hostname is the container's short ID, as docker's.
		if !strings.Contains(out, "hello from busybox\n") || !regexp.MustCompile(`cwd=/app uid=0 gid=0 host=[0-9a-f]{12}\n`).MatchString(out) {
			t.Errorf("output %q lacks the greeting, or cwd, ids and a 12-digit hostname", out)
		}
	})
	t.Run("multilayer", func(t *testing.T) {
		// The image checks its own tree (as User=app) and exits 1 on any
		// mismatch.
		out, errOut, code := b.run("run", "--rm", ref("multilayer"))
		if code != 0 || !strings.Contains(out, "multilayer verify: 26 checks OK") {
			t.Errorf("exit %d, output %q, stderr %q", code, out, errOut)
		}
	})
	t.Run("multiarch", func(t *testing.T) {
		if out := b.ok("run", "--rm", ref("multiarch")); strings.TrimSpace(out) != "linux/amd64" {
			t.Errorf("output %q, want linux/amd64", out)
		}
	})
	t.Run("debian", func(t *testing.T) {
		out := b.ok("run", "--rm", ref("debian"), "cat", "/etc/debian_version")
		if !regexp.MustCompile(`^\d+(\.\d+)*\n$`).MatchString(out) {
			t.Errorf("output %q, want a Debian version", out)
		}
	})
	t.Run("exit code", func(t *testing.T) {
		if _, errOut, code := b.run("run", "--rm", ref("busybox"), "exit 7"); code != 7 || errOut != "" {
			t.Errorf("exit %d, stderr %q; want 7 and nothing", code, errOut)
		}
		if _, _, code := b.run("run", "--rm", "--entrypoint", "/no/such", ref("busybox")); code != 127 {
			t.Errorf("missing entrypoint: exit %d, want 127", code)
		}
	})
	t.Run("options", func(t *testing.T) {
		out := b.ok("run", "--rm", "-e", "GREETING=hi", "-w", "/tmp", "-u", "app", "--hostname", "box", ref("busybox"))
		if !strings.Contains(out, "hi from busybox\ncwd=/tmp uid=1000 gid=1000 host=box\n") {
			t.Errorf("output %q", out)
		}
		out = b.ok("run", "--rm", "--entrypoint", "id", "-u", "app", ref("busybox"), "-G")
		if out != "1000 100\n" {
			t.Errorf("id -G as app: %q, want its primary and supplementary groups 1000 100", out)
		}
	})
	t.Run("isolation", func(t *testing.T) {
		out := b.ok("run", "--rm", "--network", "none", ref("busybox"), "echo pid=$$; ls /sys/class/net; grep CapBnd /proc/self/status; cat /proc/keys /proc/timer_list | wc -c")
		if out != "pid=1\nlo\nCapBnd:\t00000000a80425fb\n0\n" {
			t.Errorf("output %q", out)
		}
		// The default network is the bridge: an eth0 besides lo.
		if out := b.ok("run", "--rm", ref("busybox"), "ls /sys/class/net"); out != "eth0\nlo\n" {
			t.Errorf("default network: interfaces %q, want eth0 and lo", out)
		}
		out = b.ok("run", "--rm", "--network", "host", ref("busybox"), "ls /sys/class/net | wc -l")
		if strings.TrimSpace(out) == "1" {
			t.Errorf("--network host sees only %q interfaces", out)
		}
	})
	t.Run("terminal", func(t *testing.T) {
		script, err := exec.LookPath("script")
		prerequisite(t, err == nil, "script (util-linux) not installed")
		// script gives berth a terminal; berth gives the container a pty.
		cmd := exec.CommandContext(t.Context(), script, "-qec",
			b.bin+" run --state "+b.state+" --rm -t "+ref("busybox")+" 'tty; test -t 0 && echo stdin-tty'", "/dev/null")
		out, err := cmd.Output()
		if err != nil || !strings.Contains(strings.ReplaceAll(string(out), "\r", ""), "/dev/pts/0\nstdin-tty\n") {
			t.Errorf("berth run -t: %v, output %q", err, out)
		}
	})
	t.Run("signals", func(t *testing.T) {
		// SIGTERM to a foreground berth run reaches the container's PID 1.
		cmd := exec.CommandContext(t.Context(), b.bin, "run", "--state", b.state, "--rm", ref("busybox"),
			"trap 'echo got-term; exit 3' TERM; echo up; while :; do sleep 0.1; done")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 3)
		if _, err := io.ReadFull(stdout, buf); err != nil || string(buf) != "up\n" {
			t.Fatalf("first output %q, %v", buf, err)
		}
		cmd.Process.Signal(syscall.SIGTERM)
		rest, _ := io.ReadAll(stdout)
		err = cmd.Wait()
		if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.ExitCode() != 3 || string(rest) != "got-term\n" {
			t.Errorf("after SIGTERM: %v, output %q; want exit 3 and got-term", err, rest)
		}
	})
	t.Run("userns", func(t *testing.T) {
		// The image's files are its root's inside (idmapped layers), and
		// what the container writes is on the host owned by the mapped ids.
		script := "id -u; tr -s ' ' < /proc/self/uid_map; echo hi > /tmp/x && cat /tmp/x; stat -c %u:%g /bin /etc/passwd /tmp/x"
		out := b.ok("run", "--rm", "--userns", ref("busybox"), script)
		if out != "0\n 0 100000 65536\nhi\n0:0\n0:0\n0:0\n" {
			t.Errorf("output %q", out)
		}
		id := strings.TrimSpace(b.ok("create", "--userns", ref("busybox"), "echo again >> /etc/motd; stat -c %u:%g /etc/motd /bin"))
		defer b.run("rm", "-f", id)
		for range 2 { // a restart mounts idmapped again
			if out := b.ok("start", "-a", id); out != "0:0\n0:0\n" {
				t.Errorf("start of a --userns container: %q", out)
			}
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(b.state, "containers", id, "upper", "etc", "motd"), &st); err != nil || st.Uid != 100000 {
			t.Errorf("the container's file in its upper dir: uid %d, %v; want the host's 100000", st.Uid, err)
		}
	})
	t.Run("volumes", func(t *testing.T) {
		host := t.TempDir()
		os.WriteFile(filepath.Join(host, "in"), []byte("from host\n"), 0o644)
		out := b.ok("run", "--rm", "-v", host+":/data", "-v", host+":/ro:ro", ref("busybox"),
			"cat /data/in; echo out > /data/out; { echo x > /ro/x; } 2>/dev/null || echo ro-refused")
		if out != "from host\nro-refused\n" {
			t.Errorf("output %q", out)
		}
		if got, _ := os.ReadFile(filepath.Join(host, "out")); string(got) != "out\n" {
			t.Errorf("file written through the bind mount: %q", got)
		}
	})
	t.Run("limits", func(t *testing.T) {
		_, _, code := b.run("run", "--rm", "--memory", "16m", "--entrypoint", "dd", ref("busybox"), "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1")
		if code != 137 {
			t.Errorf("64 MiB under --memory 16m: exit %d, want 137", code)
		}
		out, _, code := b.run("run", "--rm", "--pids-limit", "10", ref("busybox"), "i=0; while [ $i -lt 40 ]; do sleep 30 & i=$((i+1)); done; echo survived")
		if code == 0 || strings.Contains(out, "survived") {
			t.Errorf("40 forks under --pids-limit 10: exit %d, output %q", code, out)
		}
		out = b.ok("run", "--rm", "--cpus", "0.5", ref("busybox"), "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cut -d' ' -f1 /sys/fs/cgroup/cpu.max")
		if strings.TrimSpace(out) != "50000" {
			t.Errorf("--cpus 0.5: quota %q, want 50000", out)
		}
	})
	t.Run("lifecycle", func(t *testing.T) {
		// A container keeps its writable layer across runs.
		id := strings.TrimSpace(b.ok("create", ref("busybox"), "if [ -f /keep ]; then echo again; else echo first; echo x > /keep; fi"))
		if out := b.ok("start", "-a", id); out != "first\n" {
			t.Errorf("first start: %q", out)
		}
		if out := b.ok("start", "-a", id); out != "again\n" {
			t.Errorf("second start: %q, want the file of the first", out)
		}
		// The image of a container, even a stopped one, is not removed:
		// rmi refuses, and rmi --force only untags it, which prune then
		// leaves alone while the container exists.
		if _, errOut, code := b.run("rmi", ref("busybox")); code != 1 || !strings.Contains(errOut, "in use") || !strings.Contains(errOut, id) {
			t.Errorf("rmi of a container's image: exit %d, stderr %q; want 1 and the container named", code, errOut)
		}
		if out := b.ok("rmi", "-f", ref("busybox")); !strings.Contains(out, "Untagged: "+ref("busybox")) || strings.Contains(out, "Deleted") {
			t.Errorf("rmi -f of a container's image: %q; want untagged, not deleted", out)
		}
		if out := b.ok("image", "prune"); !strings.Contains(out, "Removed 0 images and 0 layers") {
			t.Errorf("prune with the image's container still there: %q", out)
		}
		if out := b.ok("start", "-a", id); out != "again\n" {
			t.Errorf("start after rmi -f and prune: %q", out)
		}
		// Detached: start, logs -f until it ends, exit status in ps.
		if out := b.ok("start", id); strings.TrimSpace(out) != id {
			t.Errorf("start: %q", out)
		}
		if out := b.ok("logs", "-f", id); out != "again\n" {
			t.Errorf("logs: %q", out)
		}
		if out := b.ok("ps", "-a"); !regexp.MustCompile(id + `.*Exited \(0\)`).MatchString(out) {
			t.Errorf("ps -a:\n%s", out)
		}
		b.ok("rm", id)
		if out := b.ok("ps", "-a", "-q"); strings.Contains(out, id) {
			t.Errorf("ps -a after rm: %q", out)
		}
		if _, err := os.Stat(filepath.Join(b.state, "containers", id)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("container directory after rm: %v", err)
		}

		// run -d, ps, stop: a shell that traps SIGTERM exits with its code;
		// one that ignores it (PID 1 without a handler) is killed.
		trap := strings.TrimSpace(b.ok("run", "-d", ref("busybox"), "trap 'exit 3' TERM; echo up; while true; do sleep 0.1; done"))
		if out := b.ok("ps"); !strings.Contains(out, trap) || !strings.Contains(out, "Up ") {
			t.Errorf("ps:\n%s", out)
		}
		if _, _, code := b.run("rm", trap); code == 0 {
			t.Error("rm of a running container succeeded")
		}
		b.ok("stop", trap)
		if out := b.ok("ps", "-a"); !regexp.MustCompile(trap + `.*Exited \(3\)`).MatchString(out) {
			t.Errorf("ps -a after stop:\n%s", out)
		}
		if out := b.ok("logs", trap); out != "up\n" {
			t.Errorf("logs: %q", out)
		}
		sleeper := strings.TrimSpace(b.ok("run", "-d", "--rm", ref("busybox"), "sleep 300"))
		b.ok("stop", "-t", "1", sleeper)
		if out := b.ok("ps", "-a", "-q"); strings.Contains(out, sleeper) {
			t.Errorf("--rm container after stop: still listed")
		}
		b.ok("rm", trap)
	})
}

// busyboxRegistry starts a registry holding the busybox test image as
// PREFIX/busybox:latest and returns it with that image's reference.
func busyboxRegistry(t *testing.T, prefix string) (*Server, string) {
	t.Helper()
	env := toolEnv(t)
	needTools(t, env, "skopeo")
	dir, imgs := testImages(t)
	var busybox []testImage
	for _, img := range imgs {
		if img.Name == "busybox" {
			busybox = append(busybox, img)
		}
	}
	srv := startServer(t, underTest(), Filesystem, t.TempDir())
	pushImages(t, env, srv.Host, prefix, dir, busybox)
	return srv, srv.Host + "/" + prefix + "/busybox:latest"
}

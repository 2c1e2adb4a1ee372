package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestExec runs a detached busybox and works on it from outside: exec,
// kill, wait, top, pause, stats and cp, including a container that plants
// symlinks to the host.
func TestExec(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	prerequisite(t, os.Geteuid() == 0, "berth run needs root (namespaces, mounts, cgroups)")
	env := toolEnv(t)
	needTools(t, env, "skopeo")
	dir, imgs := testImages(t)
	srv := startServer(t, underTest(), Filesystem, t.TempDir())
	pushImages(t, env, srv.Host, "exec", dir, imgs)
	b := berthCLI{t: t, bin: berthBinary(t), state: filepath.Join(t.TempDir(), "state")}
	busybox := srv.Host + "/exec/busybox:latest"
	// The host directory the container's symlinks point at.
	hostDir := t.TempDir()
	os.WriteFile(filepath.Join(hostDir, "secret"), []byte("host secret\n"), 0o600)
	id := strings.TrimSpace(b.ok("run", "-d", busybox,
		"echo inside > /etc/mine; ln -s /../../../../../.."+hostDir+" /etc/evil; ln -s "+hostDir+" /etc/abs; "+
			"ln -s "+hostDir+"/secret /etc/shadowlink; exec sleep 300"))
	defer b.run("rm", "-f", id)
	waitFor := func(cond func() bool) bool {
		for i := 0; i < 100; i++ {
			if cond() {
				return true
			}
			time.Sleep(50 * time.Millisecond)
		}
		return false
	}
	waitFor(func() bool { out, _, _ := b.run("exec", id, "cat", "/etc/mine"); return out == "inside\n" })

	t.Run("exec", func(t *testing.T) {
		out := b.ok("exec", id, "ps", "-o", "pid,args")
		if !regexp.MustCompile(`(?m)^\s*1 sleep 300$`).MatchString(out) {
			t.Errorf("ps in the container: %q, want PID 1 sleep 300", out)
		}
		if out := b.ok("exec", id, "cat", "/etc/mine"); out != "inside\n" {
			t.Errorf("the container's file: %q", out)
		}
		if _, _, code := b.run("exec", id, "sh", "-c", "exit 7"); code != 7 {
			t.Errorf("exit code %d, want 7", code)
		}
		if _, _, code := b.run("exec", id, "no-such-command"); code != 127 {
			t.Errorf("missing command: exit %d, want 127", code)
		}
		if _, _, code := b.run("exec", id, "/etc/mine"); code != 126 {
			t.Errorf("not executable: exit %d, want 126", code)
		}
		out = b.ok("exec", "-e", "GREETING=hi", "-u", "app", "-w", "/tmp", id, "sh", "-c", `echo "$GREETING $(id -u) $(id -G) $(pwd) $(hostname)"`)
		if out != "hi 1000 1000 100 /tmp "+id[:12]+"\n" {
			t.Errorf("exec -e -u -w: %q", out)
		}
		if out := b.ok("exec", id, "sh", "-c", "grep -E 'CapBnd|NoNewPrivs' /proc/self/status; cat /proc/self/cgroup | grep -c :/$"); !strings.Contains(out, "CapBnd:\t00000000a80425fb\n") {
			t.Errorf("exec's capabilities: %q", out)
		}
	})

	t.Run("top and stats", func(t *testing.T) {
		out := b.ok("top", id)
		if !strings.HasPrefix(out, "UID") || !strings.Contains(out, "sleep 300") {
			t.Errorf("top:\n%s", out)
		}
		out = b.ok("stats", "--no-stream", id)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 2 || !strings.Contains(lines[0], "MEM USAGE / LIMIT") || !strings.HasPrefix(lines[1], id[:12]) || !regexp.MustCompile(`%\s.*B / .*B\s.*\s1$`).MatchString(lines[1]) {
			t.Errorf("stats:\n%s", out)
		}
	})

	t.Run("pause", func(t *testing.T) {
		b.ok("pause", id)
		if out := b.ok("ps", "--format", "{{.ID}} {{.State}}"); !strings.Contains(out, id[:12]+" paused") {
			t.Errorf("ps after pause:\n%s", out)
		}
		if _, errOut, code := b.run("exec", id, "true"); code == 0 || !strings.Contains(errOut, "paused") {
			t.Errorf("exec in a paused container: exit %d, %q", code, errOut)
		}
		b.ok("unpause", id)
		if out := b.ok("ps", "--format", "{{.ID}} {{.State}}"); !strings.Contains(out, id[:12]+" running") {
			t.Errorf("ps after unpause:\n%s", out)
		}
	})

	t.Run("cp", func(t *testing.T) {
		out := t.TempDir()
		b.ok("cp", id+":/etc/mine", out)
		if got, _ := os.ReadFile(filepath.Join(out, "mine")); string(got) != "inside\n" {
			t.Errorf("copied out: %q", got)
		}
		// A directory, its symlinks copied as symlinks, not followed.
		b.ok("cp", id+":/etc", filepath.Join(out, "etc"))
		if l, err := os.Readlink(filepath.Join(out, "etc/abs")); err != nil || l != hostDir {
			t.Errorf("etc/abs copied as %q, %v", l, err)
		}
		// The host's file is not read through a link.
		b.run("cp", id+":/etc/shadowlink/", filepath.Join(out, "leak"))
		b.run("cp", id+":/etc/evil/secret", filepath.Join(out, "leak2"))
		for _, f := range []string{"leak", "leak2"} {
			if got, err := os.ReadFile(filepath.Join(out, f)); err == nil && strings.Contains(string(got), "host secret") {
				t.Errorf("%s holds the host's file", f)
			}
		}
		// In: a file and a directory's contents.
		in := t.TempDir()
		os.MkdirAll(filepath.Join(in, "tree/sub"), 0o755)
		os.WriteFile(filepath.Join(in, "tree/sub/f"), []byte("from host\n"), 0o644)
		b.ok("cp", filepath.Join(in, "tree/sub/f"), id+":/tmp/f")
		b.ok("cp", filepath.Join(in, "tree")+"/.", id+":/tmp/")
		if got := b.ok("exec", id, "cat", "/tmp/f", "/tmp/sub/f"); got != "from host\nfrom host\n" {
			t.Errorf("copied in: %q", got)
		}
		// Through the hostile links: resolved in the container, never the host.
		for _, dest := range []string{"/etc/evil/planted", "/etc/abs/planted", "/etc/shadowlink"} {
			b.run("cp", filepath.Join(in, "tree/sub/f"), id+":"+dest)
		}
		ents, _ := os.ReadDir(hostDir)
		if len(ents) != 1 {
			t.Errorf("the host directory holds %d entries after copies through links", len(ents))
		}
		if got, _ := os.ReadFile(filepath.Join(hostDir, "secret")); string(got) != "host secret\n" {
			t.Errorf("the host's file became %q", got)
		}
	})

	t.Run("kill and wait", func(t *testing.T) {
		b.ok("kill", "-s", "TERM", id) // PID 1 without a handler ignores it
		b.ok("kill", id)
		if out := b.ok("wait", id); out != "137\n" {
			t.Errorf("wait: %q, want 137", out)
		}
		_, errOut, code := b.run("exec", id, "true")
		if code != 1 || !strings.Contains(errOut, "not running") {
			t.Errorf("exec in a stopped container: exit %d, %q", code, errOut)
		}
		// cp works on it stopped, both ways.
		in := filepath.Join(t.TempDir(), "late")
		os.WriteFile(in, []byte("late\n"), 0o644)
		b.ok("cp", in, id+":/late")
		out := t.TempDir()
		b.ok("cp", id+":/late", out)
		if got, _ := os.ReadFile(filepath.Join(out, "late")); string(got) != "late\n" {
			t.Errorf("copied through the stopped container: %q", got)
		}
	})
}

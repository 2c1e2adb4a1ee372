package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNamesRestartHealth takes named containers through ps, logs, rename,
// stop and rm; runs a failing command under --restart on-failure:3; and
// checks health checks, from flags and from an image HEALTHCHECK made
// with build, turn ps to healthy and unhealthy.
func TestNamesRestartHealth(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	prerequisite(t, os.Geteuid() == 0, "berth run needs root (namespaces, mounts, cgroups)")
	srv, ref := busyboxRegistry(t, "names")
	b := berthCLI{t: t, bin: berthBinary(t), state: filepath.Join(t.TempDir(), "state")}
	b.ok("pull", ref)

	// waitFor polls a berth command's output until it has want (at most
	// a minute).
	waitFor := func(t *testing.T, want string, cmd string, args ...string) string {
		t.Helper()
		var out string
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if out, _, _ = b.run(cmd, args...); strings.Contains(out, want) {
				return out
			}
		}
		t.Fatalf("berth %s %q never printed %q; last:\n%s", cmd, args, want, out)
		return ""
	}

	t.Run("names", func(t *testing.T) {
		id := strings.TrimSpace(b.ok("run", "-d", "--name", "web", "--entrypoint", "sh", ref, "-c", "echo hello from web; sleep 60"))
		defer b.run("rm", "-f", id)
		out := b.ok("ps")
		if lines := strings.Split(strings.TrimSpace(out), "\n"); strings.Join(strings.Fields(lines[0]), " ") != "CONTAINER ID IMAGE COMMAND CREATED STATUS PORTS NAMES" ||
			!strings.HasSuffix(lines[1], " web") {
			t.Errorf("ps:\n%s", out)
		}
		if got := b.ok("ps", "--filter", "name=^web$", "--format", "{{.ID}} {{.Names}}"); got != id+" web\n" {
			t.Errorf("ps --filter name=^web$: %q", got)
		}
		waitFor(t, "hello from web", "logs", "web")

		_, errOut, code := b.run("run", "-d", "--name", "web", ref)
		if code == 0 || !strings.Contains(errOut, `The container name "/web" is already in use by container "`+id+`"`) {
			t.Errorf("a second web: exit %d, %s", code, errOut)
		}
		if _, errOut, code := b.run("create", "--name", "-bad", ref); code != 2 || !strings.Contains(errOut, "invalid container name") {
			t.Errorf("an invalid name: exit %d, %s", code, errOut)
		}
		// A generated name, unique and usable.
		other := strings.TrimSpace(b.ok("create", ref))
		defer b.run("rm", "-f", other)
		gen := strings.TrimSpace(b.ok("inspect", "--format", "{{.Name}}", other))
		if !strings.HasPrefix(gen, "/") || !strings.Contains(gen, "_") {
			t.Errorf("generated name %q", gen)
		}
		if got := b.ok("ps", "-l", "-q"); got != other+"\n" {
			t.Errorf("ps -l -q: %q, want the container created last", got)
		}

		b.ok("rename", "web", "front")
		if got := b.ok("inspect", "--format", "{{.Name}}", "front"); got != "/front\n" {
			t.Errorf("inspect after rename: %q", got)
		}
		if _, _, code := b.run("logs", "web"); code == 0 {
			t.Error("the old name still finds the container")
		}
		if _, errOut, code := b.run("rename", "front", strings.TrimPrefix(gen, "/")); code == 0 || !strings.Contains(errOut, "already in use") {
			t.Errorf("rename onto a taken name: exit %d, %s", code, errOut)
		}
		if got := b.ok("stop", "-t", "1", "front"); got != "front\n" && got != id+"\n" {
			t.Errorf("stop front printed %q", got)
		}
		if got := b.ok("ps", "-a", "--filter", "name=front", "--filter", "status=exited", "-q"); got != id+"\n" {
			t.Errorf("ps after stop: %q", got)
		}
		b.ok("rm", "front")
		// The name is free again.
		again := strings.TrimSpace(b.ok("create", "--name", "front", ref))
		b.ok("rm", again)
	})

	t.Run("restart", func(t *testing.T) {
		if _, errOut, code := b.run("run", "--rm", "--restart", "always", ref); code != 2 || !strings.Contains(errOut, "--rm") {
			t.Errorf("--restart with --rm: exit %d, %s", code, errOut)
		}
		id := strings.TrimSpace(b.ok("run", "-d", "--name", "flaky", "--restart", "on-failure:3", "--entrypoint", "sh", ref, "-c", "echo try; exit 3"))
		defer b.run("rm", "-f", id)
		waitFor(t, "3 exited 3", "inspect", "--format", "{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}", "flaky")
		// It stays exited, with four runs in its log.
		time.Sleep(time.Second)
		if got := b.ok("inspect", "--format", "{{.RestartCount}} {{.State.Status}}", "flaky"); got != "3 exited\n" {
			t.Errorf("after the retries: %q", got)
		}
		if got := b.ok("logs", "flaky"); strings.Count(got, "try\n") != 4 {
			t.Errorf("log of the restarted container:\n%s", got)
		}
		// always restarts until stopped; stop ends it for good.
		always := strings.TrimSpace(b.ok("run", "-d", "--restart", "always", "--entrypoint", "sh", ref, "-c", "sleep 0.2"))
		defer b.run("rm", "-f", always)
		waitFor(t, "2", "inspect", "--format", "{{.RestartCount}}", always)
		b.ok("stop", "-t", "1", always)
		if got := b.ok("inspect", "--format", "{{.State.Status}}", always); got != "exited\n" {
			t.Errorf("after stop: %q", got)
		}
		n := b.ok("inspect", "--format", "{{.RestartCount}}", always)
		time.Sleep(time.Second)
		if got := b.ok("inspect", "--format", "{{.RestartCount}} {{.State.Status}}", always); got != strings.TrimSpace(n)+" exited\n" {
			t.Errorf("a stopped always container went on: %q (was %q)", got, n)
		}
	})

	t.Run("health", func(t *testing.T) {
		// From flags: a failing check.
		sick := strings.TrimSpace(b.ok("run", "-d", "--name", "sick", "--health-cmd", "echo nope; false", "--health-interval", "1s",
			"--health-retries", "2", "--entrypoint", "sleep", ref, "120"))
		defer b.run("rm", "-f", sick)
		// From an image HEALTHCHECK, made by berth build (commit, as
		// docker's, does not take HEALTHCHECK changes).
		checked := srv.Host + "/names/checked:latest"
		bctx := t.TempDir()
		dockerfile := "FROM " + ref + "\nHEALTHCHECK --interval=1s --retries=2 CMD test -e /app\nENTRYPOINT [\"sleep\"]\nCMD [\"120\"]\n"
		if err := os.WriteFile(filepath.Join(bctx, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
			t.Fatal(err)
		}
		b.ok("build", "-t", checked, bctx)
		fine := strings.TrimSpace(b.ok("run", "-d", "--name", "fine", checked))
		defer b.run("rm", "-f", fine)
		if out := b.ok("inspect", "--format", "{{json .Config.Healthcheck.Test}}", "fine"); out != "[\"CMD-SHELL\",\"test -e /app\"]\n" {
			t.Errorf("the built image's check: %s", out)
		}
		// An image HEALTHCHECK that fails.
		failing := srv.Host + "/names/failing:latest"
		fctx := t.TempDir()
		if err := os.WriteFile(filepath.Join(fctx, "Dockerfile"), []byte("FROM "+ref+
			"\nHEALTHCHECK --interval=1s --retries=2 CMD test -e /missing\nENTRYPOINT [\"sleep\"]\nCMD [\"120\"]\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		b.ok("build", "-t", failing, fctx)
		imgSick := strings.TrimSpace(b.ok("run", "-d", "--name", "imgsick", failing))
		defer b.run("rm", "-f", imgSick)
		// The same image with the check turned off.
		off := strings.TrimSpace(b.ok("run", "-d", "--no-healthcheck", checked))
		defer b.run("rm", "-f", off)

		waitFor(t, "(unhealthy)", "ps", "--filter", "name=sick", "--format", "{{.Status}}")
		waitFor(t, "(healthy)", "ps", "--filter", "name=fine", "--format", "{{.Status}}")
		waitFor(t, "(unhealthy)", "ps", "--filter", "name=imgsick", "--format", "{{.Status}}")
		if got := b.ok("ps", "--filter", "health=unhealthy", "-q", "--no-trunc"); !strings.Contains(got, sick) || !strings.Contains(got, imgSick) {
			t.Errorf("ps --filter health=unhealthy: %q", got)
		}
		if got := b.ok("ps", "--filter", "id="+off, "--format", "{{.Status}}"); strings.Contains(got, "health") {
			t.Errorf("--no-healthcheck: %q", got)
		}
		out := b.ok("inspect", "--format", "{{.State.Health.Status}} {{.State.Health.FailingStreak}} {{(index .State.Health.Log 0).Output}}", "sick")
		if !strings.HasPrefix(out, "unhealthy ") || !strings.Contains(out, "nope") {
			t.Errorf("inspect of the unhealthy container: %q", out)
		}
	})
}

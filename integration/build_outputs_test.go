package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// outputsDockerfile has two stages, a COPY from the context, a COPY
// --from and RUN steps that write files now (whose times
// SOURCE_DATE_EPOCH clamps). The ENTRYPOINT replaces the test busybox's
// own ("/bin/sh -c").
const outputsDockerfile = `ARG BASE
FROM $BASE AS build
RUN mkdir -p /out && echo built > /out/artifact

FROM $BASE
COPY file.txt /app/file.txt
COPY --from=build /out/artifact /app/artifact
RUN echo ran > /app/ran && mkdir /app/made
ENTRYPOINT ["cat"]
CMD ["/app/file.txt", "/app/artifact", "/app/ran"]
`

// outputsSteps are outputsDockerfile's filesystem steps.
const outputsSteps = 4

// pushedDigest matches berth push's (and berth build --push's) line.
var pushedDigest = regexp.MustCompile(`(?m)^\S+: digest: (sha256:[0-9a-f]{64}) size: \d+$`)

// TestBuildOutputs: berth build --push to a Berth server, then podman and
// containerd's ctr run what was pushed; --output local, tar and docker
// (podman load reads it); a SOURCE_DATE_EPOCH build is the same manifest
// on two state directories (and another epoch another one); the local
// cache (a no-change rebuild all CACHED, an edit re-runs from its step);
// and the registry cache: --cache-to from one state directory, berth gc
// on the server, --cache-from on a fresh one finds every step and gives
// the same image.
func TestBuildOutputs(t *testing.T) {
	needIntegration(t)
	prerequisite(t, os.Geteuid() == 0, "berth build needs root (namespaces, mounts, cgroups)")
	srv, _ := busyboxRegistry(t, "outputs")
	env := toolEnv(t)
	bin := berthBinary(t)
	newState := func() berthCLI {
		return berthCLI{t: t, bin: bin, state: filepath.Join(t.TempDir(), "state")}
	}
	b := newState()
	base := "BASE=" + srv.Host + "/outputs/busybox:latest"
	ctxDir := t.TempDir()
	writeFiles(t, ctxDir, map[string]string{"Dockerfile": outputsDockerfile, "file.txt": "hello\n"})
	const want = "hello\nbuilt\nran"
	build := func(t *testing.T, b berthCLI, extra ...string) (string, string) {
		t.Helper()
		args := append([]string{"--progress", "plain", "--build-arg", base}, extra...)
		out, errOut, code := b.run("build", append(args, ctxDir)...)
		if code != 0 {
			t.Fatalf("berth build %q: exit %d\n%s", extra, code, errOut)
		}
		return out, errOut
	}
	digestOf := func(t *testing.T, out string) string {
		t.Helper()
		m := pushedDigest.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no pushed digest in %q", out)
		}
		return m[1]
	}

	t.Run("push then podman and ctr", func(t *testing.T) {
		pushed := srv.Host + "/outputs/app:1"
		out, _ := build(t, b, "-t", pushed, "--push")
		dgst := digestOf(t, out)
		if got := strings.TrimSpace(b.ok("inspect", "-f", "{{.Descriptor.Digest}}", pushed)); got != dgst {
			t.Errorf("pushed %s, the local image's manifest is %s", dgst, got)
		}
		t.Run("podman", func(t *testing.T) {
			needTools(t, env, "podman")
			podman, run := podmanArgs(t)
			mustOutput(t, env, "podman", append(podman, "pull", "-q", "--tls-verify=false", pushed)...)
			if out := mustOutput(t, env, "podman", append(run, pushed)...); strings.TrimSpace(out) != want {
				t.Errorf("podman run printed %q, want %q", out, want)
			}
		})
		t.Run("ctr", func(t *testing.T) {
			needTools(t, env, "containerd", "ctr", "runc")
			sock := startContainerd(t, env)
			ctr := func(args ...string) string {
				t.Helper()
				return mustOutput(t, env, "ctr", append([]string{"-a", sock}, args...)...)
			}
			ctr("images", "pull", "--plain-http", pushed)
			if got := ctr("images", "ls", "-q"); !strings.Contains(got, pushed) {
				t.Fatalf("ctr images ls: %q", got)
			}
			if out := ctr("run", "--rm", pushed, "berth-built"); strings.TrimSpace(out) != want {
				t.Errorf("ctr run printed %q, want %q", out, want)
			}
		})
	})

	t.Run("outputs", func(t *testing.T) {
		local := filepath.Join(t.TempDir(), "rootfs")
		build(t, b, "-t", "localhost/outputs/local:1", "--output", "type=local,dest="+local)
		for name, content := range map[string]string{"app/file.txt": "hello\n", "app/artifact": "built\n", "app/ran": "ran\n"} {
			if got, err := os.ReadFile(filepath.Join(local, name)); err != nil || string(got) != content {
				t.Errorf("--output type=local: %s = %q, %v; want %q", name, got, err, content)
			}
		}
		if st, err := os.Lstat(filepath.Join(local, "bin", "busybox")); err != nil || !st.Mode().IsRegular() {
			t.Errorf("--output type=local: no bin/busybox from the base: %v", err)
		}

		tarOut, _ := build(t, b, "--output", "type=tar,dest=-")
		tarFile := filepath.Join(t.TempDir(), "fs.tar")
		mustDo(t, os.WriteFile(tarFile, []byte(tarOut), 0o644))
		if files := readTar(t, tarFile); files["app/ran"] != "ran\n" || files["bin/busybox"] == "" {
			t.Errorf("--output type=tar,dest=-: app/ran %q, %d entries", files["app/ran"], len(files))
		}

		needTools(t, env, "podman")
		archive := filepath.Join(t.TempDir(), "app.tar")
		tag := "localhost/outputs/loaded:1"
		build(t, b, "-t", tag, "--output", "type=docker,dest="+archive)
		podman, run := podmanArgs(t)
		mustOutput(t, env, "podman", append(podman, "load", "-q", "-i", archive)...)
		if out := mustOutput(t, env, "podman", append(run, tag)...); strings.TrimSpace(out) != want {
			t.Errorf("podman run of the loaded archive printed %q, want %q", out, want)
		}
	})

	t.Run("reproducible", func(t *testing.T) {
		const epoch = 1700000000
		epochBuild := func(value int, tag string) (string, epochConfig) {
			t.Helper()
			s := newState()
			s.env = append(os.Environ(), fmt.Sprintf("SOURCE_DATE_EPOCH=%d", value))
			oci := filepath.Join(t.TempDir(), "oci.tar")
			out, _ := build(t, s, "-t", srv.Host+"/outputs/repro:"+tag, "--push", "--output", "type=oci,dest="+oci)
			_, layers := readOCIArchive(t, oci)
			var cfg epochConfig
			raw := mustOutput(t, env, "skopeo", "inspect", "--config", "--raw", "--tls-verify=false", "docker://"+srv.Host+"/outputs/repro:"+tag)
			mustDo(t, json.Unmarshal([]byte(raw), &cfg))
			for i, l := range layers[1:] { // past the base's layer
				for name, h := range l {
					if h.ModTime.Unix() > int64(value) {
						t.Errorf("layer %d: %s has time %v, after SOURCE_DATE_EPOCH", i+1, name, h.ModTime)
					}
					if h.Uname != "" || h.Gname != "" {
						t.Errorf("layer %d: %s has owner names %q %q", i+1, name, h.Uname, h.Gname)
					}
				}
			}
			return digestOf(t, out), cfg
		}
		// Files the RUN steps write are newer than the epoch, and the two
		// builds run at other times.
		first, cfg := epochBuild(epoch, "a")
		time.Sleep(1100 * time.Millisecond)
		second, _ := epochBuild(epoch, "b")
		if first != second {
			t.Errorf("the same context built on two state directories with SOURCE_DATE_EPOCH: %s and %s", first, second)
		}
		if !cfg.Created.Equal(time.Unix(epoch, 0)) {
			t.Errorf("image created %v, want the epoch", cfg.Created)
		}
		n := 0
		for _, h := range cfg.History {
			if h.Comment == "buildkit.dockerfile.v0" {
				n++
				if !h.Created.Equal(time.Unix(epoch, 0)) {
					t.Errorf("history %q created %v, want the epoch", h.CreatedBy, h.Created)
				}
			}
		}
		if n == 0 {
			t.Error("no history entry of the build")
		}
		if other, _ := epochBuild(epoch+60, "c"); other == first {
			t.Errorf("another SOURCE_DATE_EPOCH gave the same manifest %s", other)
		}
	})

	t.Run("cache", func(t *testing.T) {
		s := newState()
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{"Dockerfile": outputsDockerfile, "file.txt": "hello\n"})
		build := func() string {
			t.Helper()
			out, errOut, code := s.run("build", "--progress", "plain", "--build-arg", base, "-t", "localhost/outputs/cache:1", dir)
			if code != 0 {
				t.Fatalf("build: exit %d\n%s%s", code, out, errOut)
			}
			return errOut
		}
		if errOut := build(); strings.Contains(errOut, " CACHED\n") {
			t.Errorf("a first build on a fresh state printed CACHED:\n%s", errOut)
		}
		if errOut := build(); strings.Count(errOut, " CACHED\n") != outputsSteps {
			t.Errorf("a no-change rebuild: CACHED %d times, want %d:\n%s", strings.Count(errOut, " CACHED\n"), outputsSteps, errOut)
		}
		// An edit of file.txt re-runs its COPY and what follows; the
		// other stage's RUN stays cached.
		writeFiles(t, dir, map[string]string{"file.txt": "edited\n"})
		errOut := build()
		if n := strings.Count(errOut, " CACHED\n"); n != 1 || !regexp.MustCompile(`(?m)^#\d+ \[build 2/2\] RUN .*\n#\d+ CACHED$`).MatchString(errOut) {
			t.Errorf("after an edit of the COPY's source: CACHED %d times, want once (the build stage's RUN):\n%s", n, errOut)
		}
		if out := strings.TrimSpace(s.ok("run", "--rm", "localhost/outputs/cache:1")); out != "edited\nbuilt\nran" {
			t.Errorf("the rebuilt image printed %q", out)
		}
	})

	t.Run("registry cache", func(t *testing.T) {
		cacheRef := srv.Host + "/outputs/cache:buildcache"
		a := newState()
		// A first cache under the tag, of an edited context: the cache
		// pushed next replaces it, and the registry's GC then deletes
		// what only it named.
		edited := t.TempDir()
		writeFiles(t, edited, map[string]string{"Dockerfile": outputsDockerfile, "file.txt": "replaced\n"})
		a.ok("build", "--progress", "quiet", "--build-arg", base, "--cache-to", "type=registry,ref="+cacheRef, edited)
		iidA := filepath.Join(t.TempDir(), "iid")
		_, errOut := build(t, a, "-t", "localhost/outputs/rc:1", "--iidfile", iidA, "--cache-to", "type=registry,ref="+cacheRef+",mode=max")
		if !strings.Contains(errOut, "exporting cache") {
			t.Errorf("no cache export in the progress:\n%s", errOut)
		}
		// One manifest under one tag, naming a config and the layers.
		var m struct {
			ArtifactType string
			Config       struct{ MediaType string }
			Layers       []struct{ Digest string }
		}
		mustDo(t, json.Unmarshal([]byte(mustOutput(t, env, "skopeo", "inspect", "--raw", "--tls-verify=false", "docker://"+cacheRef)), &m))
		if m.ArtifactType != "application/vnd.berth.build.cache.v1" || m.Config.MediaType != "application/vnd.berth.build.cache.config.v1+json" || len(m.Layers) != outputsSteps {
			t.Errorf("cache manifest: %+v", m)
		}
		var tags struct{ Tags []string }
		mustDo(t, json.Unmarshal([]byte(mustOutput(t, env, "skopeo", "list-tags", "--tls-verify=false", "docker://"+srv.Host+"/outputs/cache")), &tags))
		if len(tags.Tags) != 1 {
			t.Errorf("the cache repository's tags: %q, want the one cache tag", tags.Tags)
		}

		// The registry's garbage collection keeps what the tag names.
		if srv.Kind == Berth {
			rep := mustBerthGC(t, "--config", srv.ConfigPath, "--grace", "0s", "--delete-untagged")
			// The replaced cache manifest (and its blob), its config and
			// at least the layer of its COPY of the edit (those of the
			// steps after it too, unless made in the same second).
			if rep.Deleted.Manifests != 1 || rep.Deleted.Blobs < 3 {
				t.Errorf("berth gc deleted %v; want the replaced cache manifest, its config and its own layers", rep.Deleted)
			}
		}

		fresh := newState()
		iidB := filepath.Join(t.TempDir(), "iid")
		_, errOut = build(t, fresh, "-t", "localhost/outputs/rc:1", "--iidfile", iidB, "--cache-from", "type=registry,ref="+cacheRef)
		if n := strings.Count(errOut, " CACHED\n"); n != outputsSteps {
			t.Errorf("--cache-from on a fresh state: CACHED %d times, want %d:\n%s", n, outputsSteps, errOut)
		}
		idA, _ := os.ReadFile(iidA)
		idB, _ := os.ReadFile(iidB)
		if len(idA) == 0 || string(idA) != string(idB) {
			t.Errorf("--cache-from built %s, the --cache-to build %s", idB, idA)
		}
		mA := strings.TrimSpace(a.ok("inspect", "-f", "{{.Descriptor.Digest}}", "localhost/outputs/rc:1"))
		mB := strings.TrimSpace(fresh.ok("inspect", "-f", "{{.Descriptor.Digest}}", "localhost/outputs/rc:1"))
		if mA != mB {
			t.Errorf("manifest %s from the cache, %s built", mB, mA)
		}
		if out := strings.TrimSpace(fresh.ok("run", "--rm", "localhost/outputs/rc:1")); out != want {
			t.Errorf("the image built from the registry cache printed %q", out)
		}
	})
}

// epochConfig is what the reproducibility test reads of a config.
type epochConfig struct {
	Created time.Time `json:"created"`
	History []struct {
		Created   time.Time `json:"created"`
		CreatedBy string    `json:"created_by"`
		Comment   string    `json:"comment"`
	} `json:"history"`
}

// podmanArgs returns podman's global flags for a private store under a
// short temporary directory (removed when t ends), and those of a run.
func podmanArgs(t *testing.T) (podman, run []string) {
	t.Helper()
	// podman refuses a runroot path longer than 50 characters.
	root, err := os.MkdirTemp("", "podman")
	mustDo(t, err)
	t.Cleanup(func() { os.RemoveAll(root) })
	podman = []string{"--root", filepath.Join(root, "s"), "--runroot", filepath.Join(root, "r"),
		"--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "none",
		"--runtime", "runc"} // Debian 12's crun refuses this host's hybrid cgroups
	// podman's default open-files and processes limits are above this machine's hard limits.
	run = append(append([]string{}, podman...), "run", "--rm", "--network", "none",
		"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")
	return podman, run
}

// startContainerd starts a private containerd (its own root, state and
// socket under a short temporary directory, the CRI plugin off) and
// returns its socket; it is stopped and its directory removed when t
// ends.
func startContainerd(t *testing.T, env []string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ctrd")
	mustDo(t, err)
	sock := filepath.Join(dir, "c.sock")
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc")
	mustDo(t, os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o644))
	bin, err := lookPathIn(env, "containerd")
	mustDo(t, err)
	log, err := os.Create(filepath.Join(dir, "log"))
	mustDo(t, err)
	cmd := exec.Command(bin, "--config", filepath.Join(dir, "config.toml"))
	cmd.Env, cmd.Stdout, cmd.Stderr = env, log, log
	mustDo(t, cmd.Start())
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		log.Close()
		// Its snapshots are overlay mounts no longer, but may hold
		// mounts of containers a failed run left.
		exec.Command("umount", "-R", dir).Run()
		os.RemoveAll(dir)
	})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for {
		if _, err := output(ctx, env, "ctr", "-a", sock, "version"); err == nil {
			return sock
		}
		select {
		case <-exited:
			logTail, _ := os.ReadFile(log.Name())
			t.Fatalf("containerd exited:\n%s", tail(string(logTail), 20))
		case <-ctx.Done():
			logTail, _ := os.ReadFile(log.Name())
			t.Fatalf("containerd did not answer on %s:\n%s", sock, tail(string(logTail), 20))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// bundleCase is one test image run from a bundle: what to pull, the
// berth bundle flags, and lines its output must contain.
type bundleCase struct {
	image string   // test image name
	flags []string // extra berth bundle flags
	cmd   []string // CMD after "--"
	want  []string
	// allowFail are checks of multilayer's verify.sh ("FAIL: NAME" lines)
	// that may fail, with why; the run may then exit 1.
	allowFail map[string]string
}

// TestBundleRunc pushes the test images to berth, pulls them with
// `berth pull`, writes bundles with `berth bundle`, and runs them with
// Debian's runc: the rootfs (flattened layers: whiteouts, opaque
// directories, hardlinks, owners and modes, checked from inside by the
// multilayer image's verify.sh) and config.json (args, env, cwd, the user
// from the image's /etc/passwd and /etc/group, namespaces, mounts,
// capabilities) must be what a runtime runs as is.
func TestBundleRunc(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	prerequisite(t, os.Geteuid() == 0, "berth bundle (the layer store) and runc need root")
	env := toolEnv(t)
	needTools(t, env, "skopeo")
	runc, err := exec.LookPath("runc")
	prerequisite(t, err == nil, "runc not installed (apt-get install -y runc)")
	dir, imgs := testImages(t)
	var push []testImage
	for _, img := range imgs {
		switch img.Name {
		case "busybox", "multilayer", "multiarch", "debian":
			push = append(push, img)
		}
	}
	srv := startServer(t, underTest(), Filesystem, t.TempDir())
	pushImages(t, env, srv.Host, "bundle", dir, push)

	berth := berthBinary(t)
	state := t.TempDir()
	runcRoot := t.TempDir()
	// No credentials of the user's, no default registry from the
	// environment.
	benv := append(env, "BERTH_DEFAULT_REGISTRY="+srv.Host)

	for i, tc := range []bundleCase{
		{image: "busybox", want: []string{"hello from busybox", "cwd=/app uid=0 gid=0 host=berth"}},
		{image: "busybox", flags: []string{"-u", "app", "-w", "/tmp", "-e", "GREETING=hi", "--hostname", "box"},
			want: []string{"hi from busybox", "cwd=/tmp uid=1000 gid=1000 host=box"}},
		// Docker's 14 capabilities are bits 0-1, 3-8, 10, 13, 18, 27, 29, 31.
		{image: "busybox", cmd: []string{"grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status; " +
			"for d in null zero full random urandom tty; do [ -c /dev/$d ] && echo dev-$d-ok; done; " +
			"grep -E ' /(proc|dev/pts|dev/shm|dev/mqueue|sys|sys/fs/cgroup) ' /proc/self/mounts | cut -d' ' -f2,3 | tr '\\n' ,; echo; " +
			"echo ifaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ,)"},
			want: []string{"CapEff:\t00000000a80425fb", "CapBnd:\t00000000a80425fb", "NoNewPrivs:\t1",
				"dev-null-ok", "dev-zero-ok", "dev-full-ok", "dev-random-ok", "dev-urandom-ok", "dev-tty-ok",
				"/proc proc,", "/dev/pts devpts,", "/dev/shm tmpfs,", "/dev/mqueue mqueue,", "/sys sysfs,", "/sys/fs/cgroup ",
				"ifaces=lo,"}},
		{image: "busybox", flags: []string{"-u", "app"}, cmd: []string{"id -G"}, want: []string{"1000 100"}},
		{image: "busybox", flags: []string{"--userns"}, cmd: []string{"echo uid=$(id -u); cat /proc/self/uid_map"},
			want: []string{"uid=0", "0     100000      65536"}},
		{image: "multilayer", want: []string{"multilayer verify: 26 checks OK"}},
		// The same checks (owners, setgid and sticky modes) in a user
		// namespace: berth bundle shifted the rootfs's owners.
		{image: "multilayer", flags: []string{"--userns"}, want: []string{"multilayer verify: 26 checks OK"}},
		{image: "multiarch", flags: []string{"--platform", "linux/amd64"}, want: []string{"linux/amd64"}},
		{image: "debian", cmd: []string{"/bin/sh", "-c", "cat /etc/debian_version; id -un; echo $HOME"}, want: []string{"12.", "root", "/root"}},
	} {
		t.Run(fmt.Sprintf("%d-%s", i, tc.image), func(t *testing.T) {
			ref := fmt.Sprintf("%s/bundle/%s:latest", srv.Host, tc.image)
			var platform []string
			if len(tc.flags) > 1 && tc.flags[0] == "--platform" {
				platform = tc.flags[:2]
			}
			pullArgs := append(append([]string{"pull", "--state", state}, platform...), ref)
			out, err := output(t.Context(), benv, berth, pullArgs...)
			if err != nil {
				t.Fatalf("berth pull: %v", err)
			}
			t.Logf("berth pull: %s", out)

			// Under a directory anyone may traverse: with --userns the
			// container's root is an unprivileged host uid.
			parent, err := os.MkdirTemp("", "berth-bundle-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(parent) })
			if err := os.Chmod(parent, 0o755); err != nil {
				t.Fatal(err)
			}
			bundle := filepath.Join(parent, "bundle")
			args := append([]string{"bundle", "--state", state}, tc.flags...)
			args = append(args, "bundle/"+tc.image, bundle) // the default registry completes it
			if len(tc.cmd) > 0 {
				args = append(append(args, "--"), tc.cmd...)
			}
			if _, err := output(t.Context(), benv, berth, args...); err != nil {
				t.Fatalf("berth bundle: %v", err)
			}
			checkBundleConfig(t, bundle)

			stdout, stderr, err := runcRun(t, runc, runcRoot, bundle, fmt.Sprintf("berth-it-%d-%d", os.Getpid(), i))
			t.Logf("runc run output:\n%s", stdout)
			allowed := true
			for _, line := range readLines(stdout) {
				if name, ok := strings.CutPrefix(line, "FAIL: "); ok {
					if why, ok := tc.allowFail[name]; ok {
						t.Logf("known gap: check %q fails: %s", name, why)
					} else {
						allowed = false
						t.Errorf("check failed inside the container: %s", name)
					}
				}
			}
			if err != nil && !(allowed && len(tc.allowFail) > 0 && strings.Contains(stdout, "checks FAILED")) {
				t.Fatalf("runc run: %v\nstderr: %s", err, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stdout, w) {
					t.Errorf("output lacks %q", w)
				}
			}
		})
	}
}

// checkBundleConfig checks what runc needs of config.json and that it
// carries the defaults of runner/spec.
func checkBundleConfig(t *testing.T, bundle string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		OCIVersion string `json:"ociVersion"`
		Root       struct {
			Path string `json:"path"`
		} `json:"root"`
		Process struct {
			NoNewPrivileges bool `json:"noNewPrivileges"`
			Capabilities    struct {
				Bounding []string `json:"bounding"`
			} `json:"capabilities"`
		} `json:"process"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("config.json: %v", err)
	}
	if cfg.OCIVersion == "" || cfg.Root.Path != "rootfs" || !cfg.Process.NoNewPrivileges || len(cfg.Process.Capabilities.Bounding) != 14 {
		t.Errorf("config.json: %s", b)
	}
	if fi, err := os.Stat(filepath.Join(bundle, "rootfs")); err != nil || !fi.IsDir() {
		t.Errorf("no rootfs directory: %v", err)
	}
}

// runcRun runs the bundle with `runc run` (no terminal, stdio as pipes) and
// deletes the container afterwards.
func runcRun(t *testing.T, runc, root, bundle, id string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, runc, "--root", root, "run", "--bundle", bundle, id)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	// Whatever happened, leave no container state behind.
	exec.Command(runc, "--root", root, "delete", "--force", id).Run()
	return stdout.String(), stderr.String(), err
}

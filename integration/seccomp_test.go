package integration

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// probeSource is a static program that makes the system calls docker's
// default seccomp profile refuses (keyctl always; unshare and mount without
// CAP_SYS_ADMIN) and prints the errno of each (0: it worked).
const probeSource = `package main

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
)

func main() {
	runtime.LockOSThread()
	// keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0)
	sess := -3
	_, _, keyctl := syscall.RawSyscall(syscall.SYS_KEYCTL, 0, uintptr(sess), 0)
	_, _, unshare := syscall.RawSyscall(syscall.SYS_UNSHARE, syscall.CLONE_NEWUTS, 0, 0)
	os.MkdirAll("/tmp/probe-mnt", 0o755)
	var mount syscall.Errno
	if err := syscall.Mount("probe", "/tmp/probe-mnt", "tmpfs", 0, ""); err != nil {
		mount = err.(syscall.Errno)
	}
	fmt.Printf("keyctl=%d unshare=%d mount=%d\n", int(keyctl), int(unshare), int(mount))
}
`

// buildProbe builds probeSource statically into a directory of its own.
func buildProbe(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "go.mod"), []byte("module probe\n\ngo 1.21\n"), 0o644)
	os.WriteFile(filepath.Join(src, "main.go"), []byte(probeSource), 0o644)
	out := t.TempDir()
	os.Chmod(out, 0o755)
	cmd := exec.Command("go", "build", "-o", filepath.Join(out, "probe"), ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the probe: %v\n%s", err, b)
	}
	return out
}

// loadLayout loads an OCI image layout directory into b's store through
// `berth load` (a tar of it) and returns the image ID.
func loadLayout(t *testing.T, b berthCLI, layout string) string {
	t.Helper()
	tarFile := filepath.Join(t.TempDir(), "image.tar")
	f, err := os.Create(tarFile)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(layout, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == layout {
			return err
		}
		rel, _ := filepath.Rel(layout, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if d.Type().IsRegular() {
			src, err := os.Open(p)
			if err != nil {
				return err
			}
			defer src.Close()
			_, err = io.Copy(tw, src)
			return err
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("writing the layout's tar: %v", err)
	}
	out := b.ok("load", "-i", tarFile)
	m := regexp.MustCompile(`Loaded image ID: (sha256:[0-9a-f]{64})`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("berth load printed %q", out)
	}
	return m[1]
}

// TestSeccomp runs busybox under docker's default seccomp profile and the
// security options that change it.
func TestSeccomp(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	prerequisite(t, os.Geteuid() == 0, "berth run needs root (namespaces, mounts, cgroups)")
	_, err := exec.LookPath("go")
	prerequisite(t, err == nil, "go is needed to build the probe program")
	dir, _ := testImages(t)
	b := berthCLI{t: t, bin: berthBinary(t), state: filepath.Join(t.TempDir(), "state")}
	img := loadLayout(t, b, filepath.Join(dir, "busybox"))
	probe := buildProbe(t)
	eperm, enosys := int(syscall.EPERM), int(syscall.ENOSYS)

	// probeRun runs the probe with flags and returns its errnos.
	probeRun := func(t *testing.T, flags ...string) (keyctl, unshare, mount int) {
		t.Helper()
		args := append([]string{"--rm", "-v", probe + ":/probe:ro"}, flags...)
		out := b.ok("run", append(args, "--entrypoint", "/probe/probe", img)...)
		if _, err := fmt.Sscanf(strings.TrimSpace(out), "keyctl=%d unshare=%d mount=%d", &keyctl, &unshare, &mount); err != nil {
			t.Fatalf("probe printed %q: %v", out, err)
		}
		return
	}
	// shell runs a busybox shell script and returns its output.
	shell := func(t *testing.T, script string, flags ...string) string {
		t.Helper()
		args := append([]string{"--rm"}, flags...)
		out, errOut, code := b.run("run", append(args, "--entrypoint", "/bin/sh", img, "-c", script)...)
		if code != 0 {
			t.Fatalf("berth run %v: exit %d\n%s%s", flags, code, out, errOut)
		}
		return out
	}
	const script = `unshare -U true 2>&1; echo "unshare=$?"; mkdir -p /tmp/m; mount -t tmpfs t /tmp/m 2>&1; echo "mount=$?"; grep '^Seccomp:' /proc/self/status`

	t.Run("default", func(t *testing.T) {
		t.Parallel()
		k, u, m := probeRun(t)
		if k != eperm || u != eperm || m != eperm {
			t.Errorf("keyctl, unshare, mount: errno %d %d %d, want EPERM (%d) from the filter", k, u, m, eperm)
		}
		out := shell(t, script)
		for _, want := range []string{"unshare=1", "Operation not permitted", "mount=1", "Seccomp:\t2"} {
			if !strings.Contains(out, want) {
				t.Errorf("busybox output %q lacks %q", out, want)
			}
		}
	})
	t.Run("exec gets the container's filter", func(t *testing.T) {
		t.Parallel()
		for _, c := range []struct {
			flags []string
			want  []string
		}{
			{nil, []string{"unshare=1", "Seccomp:\t2"}},
			{[]string{"--security-opt", "seccomp=unconfined", "--cap-add", "SYS_ADMIN"}, []string{"unshare=0", "mount=0", "Seccomp:\t0"}},
		} {
			id := strings.TrimSpace(b.ok("run", append(append([]string{"-d", "--network", "none"}, c.flags...), "--entrypoint", "/bin/sleep", img, "300")...))
			out, errOut, code := b.run("exec", id, "/bin/sh", "-c", script)
			b.run("rm", "-f", id)
			if code != 0 {
				t.Fatalf("berth exec %v: exit %d\n%s%s", c.flags, code, out, errOut)
			}
			for _, want := range c.want {
				if !strings.Contains(out, want) {
					t.Errorf("exec into a container run with %v: output %q lacks %q", c.flags, out, want)
				}
			}
		}
	})
	t.Run("cap-add SYS_ADMIN under the default profile", func(t *testing.T) {
		t.Parallel()
		k, u, m := probeRun(t, "--cap-add", "sys_admin")
		if k != eperm || u != 0 || m != 0 {
			t.Errorf("keyctl, unshare, mount: errno %d %d %d, want %d 0 0 (the profile allows them with the capability)", k, u, m, eperm)
		}
	})
	t.Run("unconfined without the capability", func(t *testing.T) {
		t.Parallel()
		k, u, m := probeRun(t, "--security-opt", "seccomp=unconfined")
		if k == eperm || u != eperm || m != eperm {
			t.Errorf("keyctl, unshare, mount: errno %d %d %d, want keyctl allowed, EPERM from the kernel for the others", k, u, m)
		}
	})
	t.Run("unconfined with SYS_ADMIN", func(t *testing.T) {
		t.Parallel()
		k, u, m := probeRun(t, "--security-opt", "seccomp=unconfined", "--cap-add", "CAP_SYS_ADMIN")
		if k == eperm || u != 0 || m != 0 {
			t.Errorf("keyctl, unshare, mount: errno %d %d %d, want all to work", k, u, m)
		}
		out := shell(t, script, "--security-opt", "seccomp=unconfined", "--cap-add", "SYS_ADMIN")
		for _, want := range []string{"unshare=0", "mount=0", "Seccomp:\t0"} {
			if !strings.Contains(out, want) {
				t.Errorf("busybox output %q lacks %q", out, want)
			}
		}
	})
	t.Run("filter without no_new_privs", func(t *testing.T) {
		t.Parallel()
		// The init installs the filter while it still holds CAP_SYS_ADMIN,
		// before it becomes an unprivileged user.
		out := shell(t, `grep -E '^(Seccomp|NoNewPrivs|CapEff):' /proc/self/status`, "-u", "1000", "--security-opt", "no-new-privileges=false")
		for _, want := range []string{"NoNewPrivs:\t0", "Seccomp:\t2", "CapEff:\t0000000000000000"} {
			if !strings.Contains(out, want) {
				t.Errorf("status %q lacks %q", out, want)
			}
		}
	})
	t.Run("privileged", func(t *testing.T) {
		t.Parallel()
		_, errOut, code := b.run("run", "--rm", "-v", probe+":/probe:ro", "--privileged", "--entrypoint", "/probe/probe", img)
		if code != 0 || !strings.Contains(errOut, "full access to the host") {
			t.Errorf("--privileged: exit %d, stderr %q (want the warning)", code, errOut)
		}
		k, u, m := probeRun(t, "--privileged")
		if k == eperm || u != 0 || m != 0 {
			t.Errorf("keyctl, unshare, mount: errno %d %d %d, want all to work", k, u, m)
		}
	})
	t.Run("profile file", func(t *testing.T) {
		t.Parallel()
		profile := filepath.Join(t.TempDir(), "profile.json")
		os.WriteFile(profile, []byte(`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
			{"names": ["keyctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}`), 0o644)
		k, _, _ := probeRun(t, "--security-opt", "seccomp="+profile)
		if k != enosys {
			t.Errorf("keyctl under the profile: errno %d, want %d", k, enosys)
		}
		// inspect shows the options that differ from the default.
		id := strings.TrimSpace(b.ok("create", "--security-opt", "seccomp=unconfined", "--cap-add", "NET_ADMIN", "--cap-drop", "chown", img))
		defer b.run("rm", id)
		got := b.ok("inspect", "-f", "{{.HostConfig.SecurityOpt}} {{.HostConfig.CapAdd}} {{.HostConfig.CapDrop}} {{.HostConfig.Privileged}}", id)
		if want := "[seccomp=unconfined] [CAP_NET_ADMIN] [CAP_CHOWN] false\n"; got != want {
			t.Errorf("inspect: %q, want %q", got, want)
		}
	})
	// Not parallel: it runs while the subtests above wait, so that the
	// containers ps lists are its own.
	t.Run("bad options", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "broken.json")
		os.WriteFile(bad, []byte("{\n  \"defaultAction\": \"SCMP_ACT_ALLOW\",\n  \"syscalls\": [}\n"), 0o644)
		for _, tc := range []struct {
			flags []string
			want  string
		}{
			{[]string{"--security-opt", "seccomp=" + bad}, "broken.json: line 3"},
			{[]string{"--security-opt", "seccomp=" + bad + ".missing"}, "broken.json.missing"},
			{[]string{"--security-opt", "sandwich"}, `"sandwich"`},
			{[]string{"--cap-add", "CAP_FLY"}, `"CAP_FLY"`},
			{[]string{"--cap-drop", "nope"}, `"nope"`},
		} {
			_, errOut, code := b.run("run", append(append([]string{"--rm"}, tc.flags...), img, "true")...)
			if code == 0 || !strings.Contains(errOut, tc.want) {
				t.Errorf("%v: exit %d, stderr %q, want an error naming %s", tc.flags, code, errOut, tc.want)
			}
		}
		if out := b.ok("ps", "-a", "-q"); strings.TrimSpace(out) != "" {
			t.Errorf("refused runs left containers: %q", out)
		}
	})
}

package integration

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// commitScript changes a busybox container's filesystem every way a layer
// can: a new file, a replaced file, a deleted file, a deleted directory, a
// directory replaced by a file, and a directory deleted and made again
// (opaque).
const commitScript = `set -e
echo 'brand new' > /new
echo 'replaced hello' > /app/hello.txt
rm /usr/share/initramfs-tools/conf-hooks.d/busybox
rm -r /usr/share/doc
rm -r /usr/share/lintian
echo 'was a dir' > /usr/share/lintian
rm -r /usr/share/initramfs-tools/hooks
mkdir /usr/share/initramfs-tools/hooks
echo fresh > /usr/share/initramfs-tools/hooks/fresh
echo edited`

// commitGone are the paths commitScript deleted, as tar names.
var commitGone = []string{
	"usr/share/doc/", "usr/share/doc/busybox-static/copyright", "usr/share/initramfs-tools/conf-hooks.d/busybox",
	"usr/share/lintian/", "usr/share/lintian/overrides/busybox-static", "usr/share/initramfs-tools/hooks/zz-busybox",
}

// commitCheck runs in an image made from the changed container and prints
// what it finds.
const commitCheck = `cat /new /app/hello.txt /usr/share/lintian; ls /usr/share/initramfs-tools/hooks
for p in /usr/share/doc /usr/share/initramfs-tools/conf-hooks.d/busybox /usr/share/lintian/overrides; do
  if [ -e $p ]; then echo "still there: $p"; fi
done`

const commitCheckOut = "brand new\nreplaced hello\nwas a dir\nfresh\n"

// TestCommit commits a changed container with the built berth, runs the
// new image, exports the container and imports the export, and commits a
// running container with --pause.
func TestCommit(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	prerequisite(t, os.Geteuid() == 0, "berth commit needs root (namespaces, mounts, cgroups)")
	srv, _ := busyboxRegistry(t, "commit")
	env := toolEnv(t)
	b := berthCLI{t: t, bin: berthBinary(t), state: filepath.Join(t.TempDir(), "state")}
	base := srv.Host + "/commit/busybox:latest"

	id := strings.TrimSpace(b.ok("create", base, commitScript))
	if out := b.ok("start", "-a", id); out != "edited\n" {
		t.Fatalf("the changing container printed %q", out)
	}
	defer b.run("rm", "-f", id)

	committed := srv.Host + "/committed/busybox:new"
	t.Run("commit", func(t *testing.T) {
		out := b.ok("commit", "-m", "edits", "-a", "Tester", "-c", "ENTRYPOINT []", "-c", `CMD ["cat","/new"]`, id, committed)
		if !regexp.MustCompile(`^sha256:[0-9a-f]{64}\n$`).MatchString(out) {
			t.Errorf("commit printed %q, want the image ID", out)
		}
		if out := b.ok("run", "--rm", committed); out != "brand new\n" {
			t.Errorf("the committed image's CMD printed %q", out)
		}
		if out := b.ok("run", "--rm", committed, "sh", "-c", commitCheck); out != commitCheckOut {
			t.Errorf("the committed image's files: %q, want %q", out, commitCheckOut)
		}
		if out := b.ok("images"); !strings.Contains(out, srv.Host+"/committed/busybox") {
			t.Errorf("images does not list the commit:\n%s", out)
		}
		// A bad change is refused, naming the line, with nothing made.
		_, errOut, code := b.run("commit", "-c", "RUN rm -rf /", id, srv.Host+"/committed/busybox:bad")
		if code == 0 || !strings.Contains(errOut, "RUN rm -rf /") {
			t.Errorf("commit -c RUN: exit %d, stderr %q", code, errOut)
		}
		if _, _, code := b.run("run", "--rm", srv.Host+"/committed/busybox:bad", "true"); code == 0 {
			t.Error("a refused commit made an image")
		}
	})

	// The commit leaves the host: berth push, then podman pulls and runs
	// it and crane exports its filesystem, neither knowing berth.
	t.Run("push then podman and crane", func(t *testing.T) {
		needTools(t, env, "podman", "crane")
		pushed := srv.Host + "/shipped/busybox:1"
		b.ok("tag", committed, pushed)
		digestFile := filepath.Join(t.TempDir(), "digest")
		b.ok("push", "--digestfile", digestFile, pushed)
		dgst, err := os.ReadFile(digestFile)
		if err != nil {
			t.Fatal(err)
		}
		if got := mustOutput(t, env, "crane", "digest", "--insecure", pushed); got != string(dgst) {
			t.Errorf("crane digest %s = %s, berth pushed %s", pushed, got, dgst)
		}
		// podman refuses a runroot path longer than 50 characters.
		root, err := os.MkdirTemp("", "podman")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(root)
		podman := []string{"--root", filepath.Join(root, "s"), "--runroot", filepath.Join(root, "r"),
			"--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "none",
			"--runtime", "runc"} // Debian 12's crun refuses this host's hybrid cgroups
		mustOutput(t, env, "podman", append(podman, "pull", "-q", "--tls-verify=false", pushed)...)
		// podman's default open-files and processes limits are above this machine's hard limits.
		run := append(podman, "run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", pushed)
		if out := mustOutput(t, env, "podman", run...); out != "brand new" {
			t.Errorf("podman run of the pushed commit printed %q, want its CMD's output", out)
		}
		check := append(slices.Clip(run), "sh", "-c", commitCheck)
		if out := mustOutput(t, env, "podman", check...); out+"\n" != commitCheckOut {
			t.Errorf("the pushed commit's files under podman: %q, want %q", out, commitCheckOut)
		}
		flat := filepath.Join(t.TempDir(), "crane.tar")
		mustOutput(t, env, "crane", "export", "--insecure", pushed, flat)
		files := readTar(t, flat)
		if files["new"] != "brand new\n" || files["usr/share/lintian"] != "was a dir\n" || files["bin/busybox"] == "" {
			t.Errorf("crane export: new %q, usr/share/lintian %q, %d entries", files["new"], files["usr/share/lintian"], len(files))
		}
		for _, name := range commitGone {
			if _, ok := files[name]; ok {
				t.Errorf("deleted %s is in crane's export", name)
			}
		}
	})

	exported := filepath.Join(t.TempDir(), "export.tar")
	t.Run("export", func(t *testing.T) {
		b.ok("export", "-o", exported, id)
		files := readTar(t, exported)
		for name, want := range map[string]string{"new": "brand new\n", "app/hello.txt": "replaced hello\n",
			"usr/share/lintian": "was a dir\n", "usr/share/initramfs-tools/hooks/fresh": "fresh\n"} {
			if got, ok := files[name]; !ok || got != want {
				t.Errorf("%s in the export: %q (present %v), want %q", name, got, ok, want)
			}
		}
		for _, name := range append([]string{"bin/busybox", "etc/passwd", "proc/"}, "dev/") {
			if _, ok := files[name]; !ok {
				t.Errorf("%s missing from the export", name)
			}
		}
		for _, name := range commitGone {
			if _, ok := files[name]; ok {
				t.Errorf("deleted %s is in the export", name)
			}
		}
		for name := range files {
			if strings.Contains(name, ".wh.") {
				t.Errorf("whiteout %s in the export", name)
			}
		}
	})

	t.Run("import", func(t *testing.T) {
		imported := srv.Host + "/imported/busybox:1"
		out := b.ok("import", "-c", `CMD ["cat","/new"]`, "-m", "from export", exported, imported)
		if !regexp.MustCompile(`^sha256:[0-9a-f]{64}\n$`).MatchString(out) {
			t.Errorf("import printed %q", out)
		}
		if out := b.ok("run", "--rm", imported); out != "brand new\n" {
			t.Errorf("the imported image's CMD printed %q", out)
		}
		if out := b.ok("run", "--rm", imported, "sh", "-c", commitCheck); out != commitCheckOut {
			t.Errorf("the imported image's files: %q", out)
		}
		// From standard input, gzip-compressed.
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		raw, err := os.ReadFile(exported)
		if err != nil {
			t.Fatal(err)
		}
		zw.Write(raw)
		zw.Close()
		cmd := exec.CommandContext(t.Context(), b.bin, "import", "--state", b.state, "-", srv.Host+"/imported/busybox:stdin")
		cmd.Stdin = &gz
		if out, err := cmd.CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "sha256:") {
			t.Fatalf("import - of a gzip stream: %v, %q", err, out)
		}
		if out := b.ok("run", "--rm", srv.Host+"/imported/busybox:stdin", "cat", "/new"); out != "brand new\n" {
			t.Errorf("the image imported from stdin: %q", out)
		}
		// A tar that climbs out is refused, naming the entry.
		evil := filepath.Join(t.TempDir(), "evil.tar")
		writeTar(t, evil, map[string]string{"ok": "fine", "../../../tmp/berth-evil": "x"})
		_, errOut, code := b.run("import", evil, srv.Host+"/imported/evil:1")
		if code == 0 || !strings.Contains(errOut, "../../../tmp/berth-evil") {
			t.Errorf("hostile import: exit %d, stderr %q", code, errOut)
		}
		if _, err := os.Stat("/tmp/berth-evil"); err == nil {
			t.Error("the hostile import wrote outside")
		}
	})

	t.Run("running with pause", func(t *testing.T) {
		// The counter is replaced whole (a rename), so that a reader of
		// the running container never meets it truncated.
		loop := strings.TrimSpace(b.ok("run", "-d", base, "i=0; while :; do i=$((i+1)); echo $i > /counter.new; mv /counter.new /counter; sleep 0.05; done"))
		defer b.run("rm", "-f", loop)
		counter := filepath.Join(b.state, "containers", loop, "upper", "counter")
		first := waitCounter(t, counter, "")
		out := b.ok("commit", loop, srv.Host+"/committed/loop:1")
		if !strings.HasPrefix(out, "sha256:") {
			t.Errorf("commit printed %q", out)
		}
		// It keeps running and writing after the commit.
		waitCounter(t, counter, first)
		if out := b.ok("ps"); !strings.Contains(out, loop) || !strings.Contains(out, "Up ") {
			t.Errorf("the container stopped after its commit:\n%s", out)
		}
		got := b.ok("run", "--rm", srv.Host+"/committed/loop:1", "cat /counter")
		if !regexp.MustCompile(`^[0-9]+\n$`).MatchString(got) {
			t.Errorf("the committed counter: %q", got)
		}
		// Without pause it is read as it runs; export reads it running too.
		b.ok("commit", "--pause=false", loop, srv.Host+"/committed/loop:2")
		tarball := filepath.Join(t.TempDir(), "running.tar")
		b.ok("export", "-o", tarball, loop)
		if files := readTar(t, tarball); !regexp.MustCompile(`^[0-9]+\n$`).MatchString(files["counter"]) || files["bin/busybox"] == "" {
			t.Errorf("export of a running container: counter %q, %d entries", files["counter"], len(files))
		}
	})
}

// waitCounter waits until the file holds a number other than prev and
// returns it.
func waitCounter(t *testing.T, name, prev string) string {
	t.Helper()
	for range 600 {
		b, err := os.ReadFile(name)
		if s := strings.TrimSpace(string(b)); err == nil && s != "" && s != prev {
			return s
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never changed from %q", name, prev)
	return ""
}

// readTar reads a tar file into its entries' names and file contents.
func readTar(t *testing.T, name string) map[string]string {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, _ := io.ReadAll(tr)
		out[h.Name] = string(b)
	}
}

// writeTar writes regular files to a tar file, in name order.
func writeTar(t *testing.T, name string, files map[string]string) {
	t.Helper()
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, n := range slices.Sorted(maps.Keys(files)) {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, files[n])
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

package integration

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// buildDockerfile exercises what the first slice of berth build does:
// ARG before FROM, two stages, RUN (shell and exec form, SHELL), WORKDIR,
// ENV, COPY of files, directories, globs, links, --chown and --chmod,
// COPY --from, ADD of a local tar.gz, USER and the metadata instructions.
const buildDockerfile = `ARG BASE
FROM $BASE AS build
RUN mkdir -p /out && echo built > /out/artifact

FROM $BASE
ENV FIRST=1 SECOND=2
ARG VERSION=dev
WORKDIR /srv/app
RUN echo "version $VERSION in $(pwd)" > /version
RUN ["/bin/sh", "-c", "echo exec form > /exec"]
COPY --chown=1000:1000 --chmod=640 file.txt ./
COPY tree /tree/
COPY *.glob /globs/
COPY --from=build /out/artifact /artifact
ADD archive.tar.gz /unpacked/
RUN --network=none cat /proc/net/dev > /netdev
SHELL ["/bin/sh", "-ec"]
RUN test -f /srv/app/file.txt && echo "shell ok" > /shell
USER 1000
EXPOSE 8080
LABEL purpose=test
STOPSIGNAL SIGINT
HEALTHCHECK CMD true
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /version /exec /artifact /unpacked/a/inner /shell; cat /tree/dir/f"]
`

// buildSteps are the filesystem steps of buildDockerfile's stages.
const buildSteps = 11

// buildOut is what the built image's CMD prints.
const buildOut = "version 1.2 in /srv/app\nexec form\nbuilt\ninner\nshell ok\nf" // tree/dir/f has no newline

// TestBuild builds images with the built berth from a base image pushed
// to a Berth server, and checks them by running them and by reading the
// OCI archive --output writes: the config, the history, the layers; then
// the cache (a rebuild is all CACHED, an edit re-runs from its step), a
// failing RUN, a COPY reaching out of the context, and .dockerignore.
func TestBuild(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	prerequisite(t, os.Geteuid() == 0, "berth build needs root (namespaces, mounts, cgroups)")
	srv, _ := busyboxRegistry(t, "build")
	b := berthCLI{t: t, bin: berthBinary(t), state: filepath.Join(t.TempDir(), "state")}
	base := "BASE=" + srv.Host + "/build/busybox:latest"

	ctxDir := t.TempDir()
	secret := filepath.Join(filepath.Dir(ctxDir), "secret-"+filepath.Base(ctxDir))
	writeFiles(t, ctxDir, map[string]string{
		"Dockerfile": buildDockerfile, "file.txt": "hello", "tree/dir/f": "f", "tree/top": "top",
		"one.glob": "1", "two.glob": "2", "ignored.txt": "no", ".dockerignore": "ignored.txt\n",
	})
	mustDo(t, os.WriteFile(secret, []byte("secret"), 0o644))
	mustDo(t, os.Symlink("dir/f", filepath.Join(ctxDir, "tree", "link")))
	mustDo(t, os.Link(filepath.Join(ctxDir, "tree", "top"), filepath.Join(ctxDir, "tree", "hard")))
	writeTarGz(t, filepath.Join(ctxDir, "archive.tar.gz"), map[string]string{"a/inner": "inner\n"})

	tag := srv.Host + "/built/app:1"
	ociTar := filepath.Join(t.TempDir(), "app.tar")
	iid := filepath.Join(t.TempDir(), "iid")
	build := func(extra ...string) (string, string, int) {
		args := append([]string{"--progress", "plain", "--build-arg", base, "--build-arg", "VERSION=1.2"}, extra...)
		return b.run("build", append(args, ctxDir)...)
	}

	t.Run("image", func(t *testing.T) {
		_, errOut, code := build("-t", tag, "--output", "type=oci,dest="+ociTar, "--iidfile", iid)
		if code != 0 {
			t.Fatalf("build: exit %d\n%s", code, errOut)
		}
		for _, want := range []string{"[stage-1 2/", "] RUN echo \"version $VERSION in $(pwd)\" > /version\n", "DONE", "naming to " + tag + " done"} {
			if !strings.Contains(errOut, want) {
				t.Errorf("progress lacks %q:\n%s", want, errOut)
			}
		}
		if out := b.ok("run", "--rm", tag); out != buildOut {
			t.Errorf("the image printed %q, want %q", out, buildOut)
		}
		check := "stat -c '%n %u:%g %a' /srv/app/file.txt; readlink /tree/link; stat -c %h /tree/hard; ls /globs; " +
			"test -e /tree/tree && echo 'copied the dir itself'; grep -c : /netdev; id -u"
		want := "/srv/app/file.txt 1000:1000 640\ndir/f\n2\none.glob\ntwo.glob\n1\n1000\n" // netdev: lo only
		if out := b.ok("run", "--rm", "--entrypoint", "/bin/sh", tag, "-c", check); out != want {
			t.Errorf("the image's files: %q, want %q", out, want)
		}

		cfg, layers := readOCIArchive(t, ociTar)
		c := cfg.Config
		// The base's Env, then ENV's in order; no ARG.
		if env := strings.Join(c.Env, " "); !strings.HasPrefix(env, "PATH=") || !strings.HasSuffix(env, " FIRST=1 SECOND=2") || strings.Contains(env, "VERSION") {
			t.Errorf("Env = %q", c.Env)
		}
		if c.User != "1000" || c.WorkingDir != "/srv/app" || c.StopSignal != "SIGINT" || c.Labels["purpose"] != "test" ||
			strings.Join(c.Entrypoint, " ") != "/bin/sh -c" || len(c.Cmd) != 1 || c.Healthcheck == nil {
			t.Errorf("config: %+v", c)
		}
		if _, ok := c.ExposedPorts["8080/tcp"]; !ok {
			t.Errorf("ExposedPorts = %v", c.ExposedPorts)
		}
		var made []string
		layered := 0
		for _, h := range cfg.History {
			if !h.EmptyLayer {
				layered++
			}
			if h.Comment == "buildkit.dockerfile.v0" {
				made = append(made, h.CreatedBy)
			}
		}
		if layered != len(layers) || len(cfg.RootFS.DiffIDs) != len(layers) {
			t.Errorf("%d history entries with layers, %d diff_ids, %d layers", layered, len(cfg.RootFS.DiffIDs), len(layers))
		}
		for _, want := range []string{
			"ENV FIRST=1 SECOND=2", "ARG VERSION=1.2", "WORKDIR /srv/app",
			`RUN |1 VERSION=1.2 /bin/sh -c echo "version $VERSION in $(pwd)" > /version # buildkit`,
			"RUN |1 VERSION=1.2 /bin/sh -c echo exec form > /exec # buildkit",
			"COPY --chown=1000:1000 --chmod=640 file.txt ./ # buildkit", "COPY /out/artifact /artifact # buildkit",
			"ADD archive.tar.gz /unpacked/ # buildkit", `CMD ["cat /version /exec /artifact /unpacked/a/inner /shell; cat /tree/dir/f"]`,
		} {
			if !strings.Contains(strings.Join(made, "\n")+"\n", want+"\n") {
				t.Errorf("history lacks %q:\n%s", want, strings.Join(made, "\n"))
			}
		}
		// The COPY of tree/ is one layer, its symlink and hardlink kept.
		var treeLayer map[string]*tar.Header
		for _, l := range layers {
			if _, ok := l["tree/link"]; ok {
				treeLayer = l
			}
		}
		if treeLayer == nil {
			t.Fatal("no layer holds tree/link")
		}
		if h := treeLayer["tree/link"]; h.Typeflag != tar.TypeSymlink || h.Linkname != "dir/f" {
			t.Errorf("tree/link: %+v", h)
		}
		if a, b := treeLayer["tree/hard"], treeLayer["tree/top"]; a == nil || b == nil || (a.Typeflag != tar.TypeLink && b.Typeflag != tar.TypeLink) {
			t.Errorf("tree/hard and tree/top are not linked: %+v %+v", a, b)
		}
		for _, l := range layers {
			if _, ok := l["srv/app/ignored.txt"]; ok {
				t.Error(".dockerignore'd file in a layer")
			}
		}
	})

	t.Run("cache", func(t *testing.T) {
		first, err := os.ReadFile(iid)
		if err != nil {
			t.Skip("no first build")
		}
		_, errOut, code := build("-t", tag, "--iidfile", iid)
		if code != 0 {
			t.Fatalf("rebuild: exit %d\n%s", code, errOut)
		}
		if n := strings.Count(errOut, " CACHED\n"); n != buildSteps {
			t.Errorf("a no-change rebuild printed CACHED %d times, want %d:\n%s", n, buildSteps, errOut)
		}
		if again, _ := os.ReadFile(iid); string(again) != string(first) {
			t.Errorf("a no-change rebuild made %s, the first build %s", again, first)
		}
		// An edit of file.txt re-runs its COPY and what follows, not
		// what comes before.
		mustDo(t, os.WriteFile(filepath.Join(ctxDir, "file.txt"), []byte("edited"), 0o644))
		_, errOut, code = build("-t", tag)
		if code != 0 {
			t.Fatalf("rebuild after an edit: exit %d\n%s", code, errOut)
		}
		if n := strings.Count(errOut, " CACHED\n"); n != 4 {
			t.Errorf("after an edit of the 4th step's source, %d steps CACHED, want 4:\n%s", n, errOut)
		}
		if out := b.ok("run", "--rm", "--entrypoint", "cat", tag, "/srv/app/file.txt"); out != "edited" {
			t.Errorf("the rebuilt image has %q", out)
		}
		_, errOut, _ = build("--no-cache")
		if strings.Contains(errOut, "CACHED") {
			t.Errorf("--no-cache used the cache:\n%s", errOut)
		}
	})

	t.Run("failing RUN", func(t *testing.T) {
		df := filepath.Join(t.TempDir(), "Dockerfile")
		mustDo(t, os.WriteFile(df, []byte("ARG BASE\nFROM $BASE\nRUN echo before\nRUN echo partial > /p; exit 3\n"), 0o644))
		failed := srv.Host + "/built/failed:1"
		_, errOut, code := b.run("build", "--build-arg", base, "-t", failed, "-f", df, ctxDir)
		if code == 0 || !strings.Contains(errOut, `process "/bin/sh -c echo partial > /p; exit 3" did not complete successfully: exit code: 3`) ||
			!strings.Contains(errOut, "Dockerfile:4") {
			t.Errorf("failing RUN: exit %d, stderr:\n%s", code, errOut)
		}
		if _, _, code := b.run("image", "inspect", failed); code == 0 {
			t.Error("a failed build tagged its image")
		}
		assertNoLeftovers(t, b.state)
	})

	t.Run("COPY out of the context", func(t *testing.T) {
		mustDo(t, os.Symlink(secret, filepath.Join(ctxDir, "out-link")))
		defer os.Remove(filepath.Join(ctxDir, "out-link"))
		for _, src := range []string{"../" + filepath.Base(secret), secret, "out-link", "ignored.txt"} {
			df := filepath.Join(t.TempDir(), "Dockerfile")
			mustDo(t, os.WriteFile(df, []byte("FROM scratch\nCOPY "+src+" /stolen\n"), 0o644))
			_, errOut, code := b.run("build", "-f", df, ctxDir)
			if code == 0 || !strings.Contains(errOut, "not found") || !strings.Contains(errOut, src) {
				t.Errorf("COPY %s: exit %d, stderr %q", src, code, errOut)
			}
		}
		assertNoLeftovers(t, b.state)
	})

	t.Run("syntax error", func(t *testing.T) {
		df := filepath.Join(t.TempDir(), "Dockerfile")
		mustDo(t, os.WriteFile(df, []byte("FROM scratch\nCOPY\n"), 0o644))
		_, errOut, code := b.run("build", "-f", df, ctxDir)
		if code == 0 || !regexp.MustCompile(`Dockerfile:2: COPY`).MatchString(errOut) {
			t.Errorf("syntax error: exit %d, stderr %q", code, errOut)
		}
	})
}

// assertNoLeftovers checks that no build left a mount under state or a
// scratch directory in its build area.
func assertNoLeftovers(t *testing.T, state string) {
	t.Helper()
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	mustDo(t, err)
	if strings.Contains(string(mounts), state) {
		t.Errorf("mounts left under %s", state)
	}
	ents, _ := os.ReadDir(filepath.Join(state, "build", "tmp"))
	if len(ents) != 0 {
		t.Errorf("scratch left in the build area: %v", ents)
	}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// writeFiles writes files (relative names) under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		mustDo(t, os.MkdirAll(filepath.Dir(p), 0o755))
		mustDo(t, os.WriteFile(p, []byte(content), 0o644))
	}
}

// writeTarGz writes a gzip-compressed tar of files.
func writeTarGz(t *testing.T, name string, files map[string]string) {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for n, c := range files {
		mustDo(t, tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(c)), Typeflag: tar.TypeReg}))
		_, err := tw.Write([]byte(c))
		mustDo(t, err)
	}
	mustDo(t, tw.Close())
	mustDo(t, gz.Close())
	mustDo(t, os.WriteFile(name, buf.Bytes(), 0o644))
}

// builtConfig is what the tests read of an image config.
type builtConfig struct {
	Config struct {
		Env, Cmd, Entrypoint []string
		User, WorkingDir     string
		StopSignal           string
		Labels               map[string]string
		ExposedPorts         map[string]struct{}
		Healthcheck          *struct{ Test []string }
	} `json:"config"`
	RootFS struct {
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
	History []struct {
		CreatedBy  string `json:"created_by"`
		Comment    string `json:"comment"`
		EmptyLayer bool   `json:"empty_layer"`
	} `json:"history"`
}

// readOCIArchive reads the one image of an OCI archive: its config and,
// per layer, the tar headers by name.
func readOCIArchive(t *testing.T, name string) (builtConfig, []map[string]*tar.Header) {
	t.Helper()
	f, err := os.ReadFile(name)
	mustDo(t, err)
	files := map[string][]byte{}
	for _, e := range tarEntries(t, f) {
		files[e.hdr.Name] = e.body
	}
	blob := func(d string) []byte {
		b, ok := files["blobs/sha256/"+strings.TrimPrefix(d, "sha256:")]
		if !ok {
			t.Fatalf("archive lacks blob %s", d)
		}
		return b
	}
	var idx struct{ Manifests []struct{ Digest string } }
	mustDo(t, json.Unmarshal(files["index.json"], &idx))
	if len(idx.Manifests) != 1 {
		t.Fatalf("index.json lists %d manifests", len(idx.Manifests))
	}
	var m struct {
		MediaType string
		Config    struct{ Digest string }
		Layers    []struct{ Digest, MediaType string }
	}
	mustDo(t, json.Unmarshal(blob(idx.Manifests[0].Digest), &m))
	if m.MediaType != "application/vnd.oci.image.manifest.v1+json" {
		t.Errorf("manifest media type %s", m.MediaType)
	}
	var cfg builtConfig
	mustDo(t, json.Unmarshal(blob(m.Config.Digest), &cfg))
	var layers []map[string]*tar.Header
	for _, l := range m.Layers {
		if l.MediaType != "application/vnd.oci.image.layer.v1.tar+gzip" {
			t.Errorf("layer media type %s", l.MediaType)
		}
		zr, err := gzip.NewReader(bytes.NewReader(blob(l.Digest)))
		mustDo(t, err)
		tr := tar.NewReader(zr)
		hdrs := map[string]*tar.Header{}
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			mustDo(t, err)
			hdrs[strings.TrimSuffix(h.Name, "/")] = h
		}
		layers = append(layers, hdrs)
	}
	return cfg, layers
}

package integration

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/integration/imagediff"
)

// corpusDir holds the build corpus: one directory per Dockerfile, named
// NN-what, each its own build context (see buildEntry for its args file).
const corpusDir = "testdata/build"

// supportedFile lists the corpus entries berth build must build exactly as
// BuildKit does, one name a line ('#' starts a comment).
const supportedFile = "testdata/build/berth-supported.txt"

// minCorpus is how many Dockerfiles issue 15 asks the corpus for.
const minCorpus = 40

// buildEntry is one Dockerfile of the corpus. Its directory may hold an
// "args" file, one directive a line ('#' starts a comment):
//
//	arg K=V          a build arg (--build-arg)
//	target STAGE     the stage to build (--target)
//	file PATH        the Dockerfile, relative to the entry (-f); default Dockerfile
//	secret ID FILE   a secret (--secret id=ID,src=FILE), FILE relative to the entry
//	network host     RUN may use the network (loopback only); otherwise the
//	                 build runs with none: BuildKit's force-network-mode=none,
//	                 berth build --network none
//	push NAME        BuildKit's image is also pushed to the test registry as
//	                 oracle/NAME:latest, for later entries to build FROM
//	chmod MODE PATH  context preparation that git cannot carry: modes,
//	chown U:G PATH   owners, hardlinks (link OLD NEW) and empty directories
//	link OLD NEW     (mkdir PATH), applied to the copy of the entry that is
//	mkdir PATH       built
//
// Two build args are passed when the Dockerfile mentions them: REGISTRY
// (HOST:PORT/oracle, where the test images busybox, debian and multiarch
// are) and HTTPBASE (http://127.0.0.1:PORT, serving testdata/build);
// @REGISTRY@ in the Dockerfile is replaced by the former (COPY --from
// takes no build args).
type buildEntry struct {
	Name      string
	Dir       string
	File      string
	BuildArgs []string
	Target    string
	Secrets   [][2]string // id, file relative to the entry
	Network   bool
	Push      string
	setup     [][]string
}

// loadCorpus reads every entry of corpusDir.
func loadCorpus(t *testing.T) []*buildEntry {
	t.Helper()
	dirs, err := os.ReadDir(corpusDir)
	if err != nil {
		t.Fatal(err)
	}
	var corpus []*buildEntry
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		e, err := readEntry(filepath.Join(corpusDir, d.Name()))
		if err != nil {
			t.Fatalf("corpus entry %s: %v", d.Name(), err)
		}
		corpus = append(corpus, e)
	}
	return corpus
}

func readEntry(dir string) (*buildEntry, error) {
	e := &buildEntry{Name: filepath.Base(dir), Dir: dir, File: "Dockerfile"}
	b, err := os.ReadFile(filepath.Join(dir, "args"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		want := map[string]int{"arg": 2, "target": 2, "file": 2, "secret": 3, "network": 2, "push": 2,
			"chmod": 3, "chown": 3, "link": 3, "mkdir": 2}[f[0]]
		if want == 0 || len(f) != want {
			return nil, fmt.Errorf("args line %d: %q: unknown directive or wrong field count", n, sc.Text())
		}
		switch f[0] {
		case "arg":
			e.BuildArgs = append(e.BuildArgs, f[1])
		case "target":
			e.Target = f[1]
		case "file":
			e.File = f[1]
		case "secret":
			e.Secrets = append(e.Secrets, [2]string{f[1], f[2]})
		case "network":
			if f[1] != "host" {
				return nil, fmt.Errorf("args line %d: network %q, only host", n, f[1])
			}
			e.Network = true
		case "push":
			e.Push = f[1]
		default:
			e.setup = append(e.setup, f)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, e.File)); err != nil {
		return nil, err
	}
	return e, nil
}

// prepare copies the entry into dir (directories 0755, files 0644 or 0755
// whatever the checkout's umask made them) and applies its setup
// directives; it returns the context directory.
func (e *buildEntry) prepare(dir string) (string, error) {
	ctx := filepath.Join(dir, "context")
	err := filepath.WalkDir(e.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(e.Dir, p)
		dst := filepath.Join(ctx, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(dst, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, dst)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if info.Mode()&0o111 != 0 {
			mode = 0o755
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.WriteFile(dst, b, mode); err != nil {
			return err
		}
		return os.Chmod(dst, mode)
	})
	if err != nil {
		return "", err
	}
	for _, s := range e.setup {
		p := filepath.Join(ctx, filepath.FromSlash(s[len(s)-1]))
		switch s[0] {
		case "chmod":
			var m uint64
			if m, err = strconv.ParseUint(s[1], 8, 32); err == nil {
				err = os.Chmod(p, fileMode(uint32(m)))
			}
		case "chown":
			var uid, gid int
			if _, err = fmt.Sscanf(s[1], "%d:%d", &uid, &gid); err == nil {
				err = os.Lchown(p, uid, gid)
			}
		case "link":
			err = os.Link(filepath.Join(ctx, filepath.FromSlash(s[1])), p)
		case "mkdir":
			err = os.MkdirAll(p, 0o755)
		}
		if err != nil {
			return "", fmt.Errorf("args: %s: %w", strings.Join(s, " "), err)
		}
	}
	return ctx, nil
}

// fileMode turns Unix mode bits (setuid 04000, setgid 02000, sticky
// 01000) into an os.FileMode.
func fileMode(m uint32) os.FileMode {
	mode := os.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		mode |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= os.ModeSticky
	}
	return mode
}

// buildArgs are the entry's build args plus REGISTRY and HTTPBASE where
// its Dockerfile uses them. Where the Dockerfile needs the registry's
// address in what takes no build args (COPY --from=IMAGE), it writes
// @REGISTRY@: that is replaced in the copy that is built.
func (e *buildEntry) buildArgs(ctx, registry, httpBase string) ([]string, error) {
	dfPath := filepath.Join(ctx, e.File)
	df, err := os.ReadFile(dfPath)
	if err != nil {
		return nil, err
	}
	if bytes.Contains(df, []byte("@REGISTRY@")) {
		df = bytes.ReplaceAll(df, []byte("@REGISTRY@"), []byte(registry))
		if err := os.WriteFile(dfPath, df, 0o644); err != nil {
			return nil, err
		}
	}
	args := slices.Clone(e.BuildArgs)
	if strings.Contains(string(df), "REGISTRY") {
		args = append(args, "REGISTRY="+registry)
	}
	if strings.Contains(string(df), "HTTPBASE") {
		args = append(args, "HTTPBASE="+httpBase)
	}
	return args, nil
}

// readSupported reads supportedFile; every name must be a corpus entry.
func readSupported(t *testing.T, corpus []*buildEntry) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(supportedFile)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, e := range corpus {
		names[e.Name] = true
	}
	listed := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		line, _, _ = strings.Cut(line, "#")
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		if !names[line] {
			t.Fatalf("%s lists %q, which is not in %s", supportedFile, line, corpusDir)
		}
		listed[line] = true
	}
	return listed
}

// buildkitBinaries finds buildkitd and buildctl: $BUILDKITD and $BUILDCTL,
// else on PATH, else where make buildkit installs them; each must be
// BuildKitVersion.
func buildkitBinaries(t *testing.T) (buildkitd, buildctl string) {
	t.Helper()
	home, _ := os.UserHomeDir()
	find := func(name, envVar string) string {
		p := os.Getenv(envVar)
		if p == "" {
			if p, _ = exec.LookPath(name); p == "" {
				p = filepath.Join(home, ".cache", "berth-tools", name)
			}
		}
		out, err := exec.Command(p, "--version").Output()
		prerequisite(t, err == nil, "%s (%s): %v (make buildkit installs it)", name, p, err)
		f := strings.Fields(string(out))
		prerequisite(t, len(f) >= 3 && f[2] == BuildKitVersion, "%s is %q, want %s (make buildkit)", p, strings.TrimSpace(string(out)), BuildKitVersion)
		return p
	}
	return find("buildkitd", "BUILDKITD"), find("buildctl", "BUILDCTL")
}

// startBuildKitT starts a private buildkitd for t, stopped (its containers
// and mounts cleaned up) at cleanup.
func startBuildKitT(t *testing.T, httpRegistries ...string) *BuildKit {
	t.Helper()
	buildkitd, buildctl := buildkitBinaries(t)
	// A short directory: the socket path must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "bk-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bk, err := StartBuildKit(t.Context(), BuildKitOptions{
		Buildkitd: buildkitd, Buildctl: buildctl, Dir: dir, HTTPRegistries: httpRegistries,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if bk.Exited() {
			t.Errorf("buildkitd exited during the test:\n%s", bk.LogTail(30))
		}
		if err := bk.Stop(); err != nil {
			t.Errorf("stopping buildkitd: %v", err)
		}
		if t.Failed() {
			t.Logf("buildkitd log (%s):\n%s", bk.LogPath, bk.LogTail(40))
		}
	})
	return bk
}

// TestBuildOracle builds every Dockerfile of the corpus with BuildKit
// (buildkitd + buildctl, BuildKitVersion, the reference), which must
// succeed, twice (the second time with --no-cache), and the two images
// must be equal under imagediff.Compare: that proves the corpus, the
// harness and the comparator, and that each entry can be equalled. Where the berth binary
// has a build command it builds each entry with berth build too and
// compares the two images (config and flattened filesystem, imagediff);
// a difference fails the test for the entries listed in
// testdata/build/berth-supported.txt and is logged for the others, and
// the test logs how many of all entries are equal.
//
// Entries build in order, on one buildkitd (its cache kept throughout) and
// one berth state directory; 38-onbuild-child needs 37-onbuild-base first.
// BERTH_BUILD_ORACLE_KEEP=DIR keeps the images as DIR/NAME/buildkit.tar
// and berth.tar (OCI archives).
func TestBuildOracle(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	prerequisite(t, os.Geteuid() == 0, "buildkitd's oci worker and berth build need root")
	env := toolEnv(t)
	needTools(t, env, "skopeo")
	corpus := loadCorpus(t)
	if len(corpus) < minCorpus {
		t.Errorf("the corpus has %d Dockerfiles, issue 15 asks for at least %d", len(corpus), minCorpus)
	}
	supported := readSupported(t, corpus)

	dir, imgs := testImages(t)
	var bases []testImage
	for _, img := range imgs {
		if img.Name != "multilayer" { // the corpus does not use it; its 64 MiB layer is slow to push
			bases = append(bases, img)
		}
	}
	srv := startServer(t, underTest(), Filesystem, t.TempDir())
	pushImages(t, env, srv.Host, "oracle", dir, bases)
	registry := srv.Host + "/oracle"
	web := httptest.NewServer(http.FileServer(http.Dir(corpusDir)))
	t.Cleanup(web.Close)

	bk := startBuildKitT(t, srv.Host)
	berth := berthCLI{t: t, bin: berthBinary(t), state: filepath.Join(t.TempDir(), "state")}
	_, _, code := berth.run("build", "--help")
	hasBuild := code == 0
	if !hasBuild {
		t.Logf("berth has no build command yet (berth build --help: exit %d): BuildKit builds only", code)
	}

	equal, compared := 0, 0
	var unequal []string
	for _, e := range corpus {
		ok := t.Run(e.Name, func(t *testing.T) {
			ctx, err := e.prepare(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			args, err := e.buildArgs(ctx, registry, web.URL)
			if err != nil {
				t.Fatal(err)
			}
			work := t.TempDir()
			if keep := os.Getenv("BERTH_BUILD_ORACLE_KEEP"); keep != "" {
				work = filepath.Join(keep, e.Name)
				if err := os.MkdirAll(work, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			want, err := buildWithBuildKit(t, bk, e, ctx, args, filepath.Join(work, "buildkit.tar"), registry, false)
			if err != nil {
				t.Fatalf("BuildKit: %v", err)
			}
			t.Logf("BuildKit: %d layers, %d paths, in %.1fs", want.Layers, len(want.Files), time.Since(start).Seconds())
			// Built again from nothing, the entry must give the same image:
			// else nobody could equal it.
			again, err := buildWithBuildKit(t, bk, e, ctx, args, filepath.Join(work, "buildkit-again.tar"), registry, true)
			if err != nil {
				t.Fatalf("BuildKit, again with --no-cache: %v", err)
			}
			if diffs := imagediff.Compare(want, again); len(diffs) > 0 {
				t.Errorf("BuildKit built two different images with and without its cache: the entry is not reproducible:\n  %s",
					strings.Join(firstN(diffs, 20), "\n  "))
			}
			if !hasBuild {
				return
			}
			compared++
			diffs, err := buildWithBerth(t, berth, e, ctx, args, filepath.Join(work, "berth.tar"), want)
			switch {
			case err == nil && len(diffs) == 0:
				equal++
				t.Logf("berth build: equal to BuildKit's")
				return
			case err != nil:
				diffs = []string{err.Error()}
			}
			unequal = append(unequal, e.Name)
			report := fmt.Sprintf("berth build differs from BuildKit (%d):\n  %s", len(diffs), strings.Join(firstN(diffs, 40), "\n  "))
			if supported[e.Name] {
				t.Error(report)
			} else {
				t.Logf("not yet in %s: %s", filepath.Base(supportedFile), report)
			}
		})
		if !ok && !hasBuild {
			t.Logf("%s: failed with BuildKit alone (the corpus entry or the harness is wrong)", e.Name)
		}
	}
	if hasBuild {
		t.Logf("berth build: %d of %d equal to BuildKit's (%d listed as supported); different: %s",
			equal, compared, len(supported), strings.Join(unequal, " "))
	}
}

// buildWithBuildKit builds the entry into the OCI archive dest (and
// pushes it where the entry says, unless noCache) and loads the image.
func buildWithBuildKit(t *testing.T, bk *BuildKit, e *buildEntry, ctx string, args []string, dest, registry string, noCache bool) (*imagediff.Image, error) {
	o := BuildOptions{
		Context: ctx, Dockerfile: filepath.Join(ctx, e.File), BuildArgs: args, Target: e.Target,
		NoNetwork: !e.Network, HostNetwork: e.Network, NoCache: noCache,
		Outputs:  []string{"type=oci,dest=" + dest},
		Progress: &lineLogger{t: t, prefix: "buildkit| "},
	}
	for _, s := range e.Secrets {
		o.Secrets = append(o.Secrets, "id="+s[0]+",src="+filepath.Join(e.Dir, s[1]))
	}
	if e.Push != "" && !noCache {
		o.Outputs = append(o.Outputs, "type=image,name="+registry+"/"+e.Push+":latest,push=true")
	}
	bctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if err := bk.Build(bctx, o); err != nil {
		return nil, err
	}
	img, err := imagediff.Load(dest)
	if err != nil {
		return nil, fmt.Errorf("BuildKit's image: %w", err)
	}
	img.Name = "buildkit"
	return img, nil
}

// buildWithBerth builds the entry with berth build into the OCI archive
// dest and compares the image with want.
func buildWithBerth(t *testing.T, b berthCLI, e *buildEntry, ctx string, args []string, dest string, want *imagediff.Image) ([]string, error) {
	cmd := []string{"--output", "type=oci,dest=" + dest, "-f", filepath.Join(ctx, e.File)}
	for _, a := range args {
		cmd = append(cmd, "--build-arg", a)
	}
	if e.Target != "" {
		cmd = append(cmd, "--target", e.Target)
	}
	for _, s := range e.Secrets {
		cmd = append(cmd, "--secret", "id="+s[0]+",src="+filepath.Join(e.Dir, s[1]))
	}
	network := "none"
	if e.Network {
		network = "host"
	}
	cmd = append(cmd, "--network", network, ctx)
	start := time.Now()
	out, errOut, code := b.run("build", cmd...)
	if code != 0 {
		return nil, fmt.Errorf("berth build: exit %d\n%s", code, tail(out+errOut, 25))
	}
	got, err := imagediff.Load(dest)
	if err != nil {
		return nil, fmt.Errorf("berth build's image: %w", err)
	}
	got.Name = "berth"
	t.Logf("berth build: %d layers, %d paths, in %.1fs", got.Layers, len(got.Files), time.Since(start).Seconds())
	return imagediff.Compare(want, got), nil
}

func firstN(lines []string, n int) []string {
	if len(lines) <= n {
		return lines
	}
	return append(lines[:n:n], fmt.Sprintf("... and %d more", len(lines)-n))
}

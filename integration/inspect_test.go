package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// inspectedImage is the part of `berth image inspect` the test checks.
type inspectedImage struct {
	Id          string
	RepoTags    []string
	RepoDigests []string
	Created     string
	Config      struct {
		Env        []string
		Cmd        []string
		Entrypoint []string
		WorkingDir string
		User       string
		Labels     map[string]string
	}
	Architecture, Os string
	Size             int64
	RootFS           struct {
		Type   string
		Layers []string
	}
	Descriptor *struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
		Size      int64  `json:"size"`
	}
}

// skopeoConfig is what `skopeo inspect --config --raw` prints.
type skopeoConfig struct {
	Architecture, OS string
	Config           struct {
		Env        []string
		Cmd        []string
		Entrypoint []string
		WorkingDir string
		User       string
	}
	RootFS struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

// TestInspect checks `berth image inspect`, `berth inspect`, `berth
// history`, `berth images --digests/--filter/--format` and `berth ps -s`
// against the test images as skopeo and crane see them in the registry.
func TestInspect(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	prerequisite(t, os.Geteuid() == 0, "berth pull and run need root (layer store owners, namespaces)")
	env := toolEnv(t)
	needTools(t, env, "skopeo", "crane")
	dir, all := testImages(t)
	var imgs []testImage
	for _, img := range all {
		if img.Name != "debian" {
			imgs = append(imgs, img)
		}
	}
	srv := startServer(t, underTest(), Filesystem, t.TempDir())
	pushImages(t, env, srv.Host, "inspect", dir, imgs)
	b := berthCLI{t: t, bin: berthBinary(t), state: filepath.Join(t.TempDir(), "state")}
	ref := func(name string) string { return srv.Host + "/inspect/" + name + ":latest" }
	repo := func(name string) string { return srv.Host + "/inspect/" + name }
	digestOf := func(name string) string {
		return mustOutput(t, env, "crane", "digest", "--insecure", ref(name))
	}
	for _, img := range imgs {
		b.ok("pull", "-q", ref(img.Name))
	}
	imageInspect := func(args ...string) (string, string, int) {
		return b.runArgs(append([]string{"image", "inspect", "--state", b.state}, args...)...)
	}

	t.Run("image inspect", func(t *testing.T) {
		for _, name := range []string{"busybox", "multilayer", "multiarch"} {
			raw := mustOutput(t, env, "skopeo", "inspect", "--config", "--raw", "--tls-verify=false", "docker://"+ref(name))
			sum := sha256.Sum256([]byte(raw))
			var want skopeoConfig
			if err := json.Unmarshal([]byte(raw), &want); err != nil {
				t.Fatalf("%s: skopeo config: %v", name, err)
			}
			out, errOut, code := imageInspect(ref(name))
			if code != 0 {
				t.Fatalf("%s: exit %d: %s", name, code, errOut)
			}
			var docs []inspectedImage
			if err := json.Unmarshal([]byte(out), &docs); err != nil || len(docs) != 1 {
				t.Fatalf("%s: %v: %s", name, err, out)
			}
			got := docs[0]
			if got.Id != "sha256:"+hex.EncodeToString(sum[:]) {
				t.Errorf("%s: Id %s, want the config digest sha256:%x", name, got.Id, sum)
			}
			if !slices.Equal(got.Config.Env, want.Config.Env) || !slices.Equal(got.Config.Cmd, want.Config.Cmd) ||
				!slices.Equal(got.Config.Entrypoint, want.Config.Entrypoint) || got.Config.WorkingDir != want.Config.WorkingDir ||
				got.Config.User != want.Config.User {
				t.Errorf("%s: Config %+v, skopeo's %+v", name, got.Config, want.Config)
			}
			if got.RootFS.Type != "layers" || !slices.Equal(got.RootFS.Layers, want.RootFS.DiffIDs) {
				t.Errorf("%s: RootFS %+v, skopeo's diff_ids %q", name, got.RootFS, want.RootFS.DiffIDs)
			}
			if got.Os != want.OS || got.Architecture != want.Architecture || got.Size <= 0 || got.Created == "" {
				t.Errorf("%s: Os %q Architecture %q Size %d Created %q", name, got.Os, got.Architecture, got.Size, got.Created)
			}
			if !slices.Equal(got.RepoTags, []string{ref(name)}) {
				t.Errorf("%s: RepoTags %q", name, got.RepoTags)
			}
			crane := digestOf(name)
			if !slices.Equal(got.RepoDigests, []string{repo(name) + "@" + crane}) {
				t.Errorf("%s: RepoDigests %q, want %s@%s", name, got.RepoDigests, repo(name), crane)
			}
			// The descriptor is the image manifest's: the index's child for
			// a multi-platform image.
			if d := got.Descriptor; d == nil || d.Size <= 0 || !strings.Contains(d.MediaType, "manifest") ||
				(name != "multiarch") != (d.Digest == crane) {
				t.Errorf("%s: Descriptor %+v (crane digest %s)", name, d, crane)
			}
		}
		out := b.ok("inspect", "-f", `{{.Id}}|{{join .Config.Env ","}}|{{json .RootFS.Layers}}|{{upper .Os}}`, ref("busybox"))
		var id string
		json.Unmarshal([]byte(mustJSONField(t, imageInspectOK(t, imageInspect, ref("busybox")), "Id")), &id)
		if !strings.HasPrefix(out, id+"|PATH=") || !strings.Contains(out, "GREETING=hello") || !strings.Contains(out, `|["sha256:`) || !strings.HasSuffix(out, "|LINUX\n") {
			t.Errorf("inspect -f: %q", out)
		}
		// Missing names: the others are printed, the exit code is 1.
		out, errOut, code := b.run("inspect", "nosuch", ref("busybox"))
		var docs []inspectedImage
		if code != 1 || json.Unmarshal([]byte(out), &docs) != nil || len(docs) != 1 || strings.TrimSpace(errOut) != "Error: No such object: nosuch" {
			t.Errorf("inspect of a missing name: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		if out, errOut, code := imageInspect("nosuch:1"); code != 1 || strings.TrimSpace(out) != "[]" || !strings.Contains(errOut, "Error: No such image: nosuch:1") {
			t.Errorf("image inspect of a missing image: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		if _, errOut, code := b.run("inspect", "-f", "{{.Id", ref("busybox")); code != 2 || !strings.Contains(errOut, "template") {
			t.Errorf("a bad template: exit %d, %q", code, errOut)
		}
	})

	t.Run("history", func(t *testing.T) {
		raw := mustOutput(t, env, "skopeo", "inspect", "--config", "--raw", "--tls-verify=false", "docker://"+ref("multilayer"))
		var cfg struct {
			RootFS struct {
				DiffIDs []string `json:"diff_ids"`
			} `json:"rootfs"`
			History []struct {
				CreatedBy  string `json:"created_by"`
				EmptyLayer bool   `json:"empty_layer"`
			} `json:"history"`
		}
		if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
			t.Fatal(err)
		}
		id := mustJSONString(t, imageInspectOK(t, imageInspect, ref("multilayer")), "Id")
		var size int64
		json.Unmarshal([]byte(mustJSONField(t, imageInspectOK(t, imageInspect, ref("multilayer")), "Size")), &size)

		lines := readLines(b.ok("history", "-H=false", "--no-trunc", "--format", "{{.ID}}|{{.Size}}|{{.CreatedBy}}", ref("multilayer")))
		if len(lines) != len(cfg.History) {
			t.Fatalf("history: %d lines for %d history entries:\n%s", len(lines), len(cfg.History), strings.Join(lines, "\n"))
		}
		var nonEmpty int
		var sum int64
		for i, l := range lines {
			f := strings.SplitN(l, "|", 3)
			wantID := "<missing>"
			if i == 0 {
				wantID = id
			}
			h := cfg.History[len(cfg.History)-1-i]
			n, err := strconv.ParseInt(f[1], 10, 64)
			if f[0] != wantID || err != nil || f[2] != h.CreatedBy || (n == 0) != h.EmptyLayer {
				t.Errorf("line %d: %q; want ID %s, CREATED BY %q, empty layer %v", i, l, wantID, h.CreatedBy, h.EmptyLayer)
			}
			if n > 0 {
				nonEmpty++
			}
			sum += n
		}
		if nonEmpty != len(cfg.RootFS.DiffIDs) || sum != size {
			t.Errorf("history: %d sized lines summing to %d; the image has %d layers, Size %d", nonEmpty, sum, len(cfg.RootFS.DiffIDs), size)
		}
		// The default table: truncated ID and CREATED BY, human sizes.
		out := b.ok("history", ref("multilayer"))
		long := "whiteouts, opaque dir, type changes (uncompressed)"
		short := string([]rune(long)[:44]) + "…"
		if !strings.HasPrefix(out, "IMAGE ") || !strings.Contains(out, strings.TrimPrefix(id, "sha256:")[:12]+" ") ||
			!strings.Contains(out, short) || strings.Contains(out, long) || !regexp.MustCompile(`ENV LAYER_TEST=1\s+0B`).MatchString(out) ||
			!regexp.MustCompile(`add 64 MiB file\s+67\.\dMB`).MatchString(out) || !strings.Contains(out, "years ago") {
			t.Errorf("history:\n%s", out)
		}
		if q := readLines(b.ok("history", "-q", ref("multilayer"))); len(q) != len(cfg.History) || q[0] != strings.TrimPrefix(id, "sha256:")[:12] || q[1] != "<missing>" {
			t.Errorf("history -q: %q", q)
		}
		if hist, errOut, code := b.runArgs("image", "history", "--state", b.state, "-q", ref("busybox")); code != 0 || len(readLines(hist)) != 1 {
			t.Errorf("image history -q of busybox: exit %d, %q %s", code, hist, errOut)
		}
	})

	t.Run("images", func(t *testing.T) {
		out := b.ok("images", "--digests")
		header := readLines(out)[0]
		if !regexp.MustCompile(`^REPOSITORY\s+TAG\s+DIGEST\s+IMAGE ID\s+PLATFORM\s+CREATED\s+SIZE$`).MatchString(header) {
			t.Errorf("images --digests header %q", header)
		}
		for _, img := range imgs {
			if !regexp.MustCompile(regexp.QuoteMeta(repo(img.Name)) + `\s+latest\s+` + regexp.QuoteMeta(digestOf(img.Name)) + `\s`).MatchString(out) {
				t.Errorf("images --digests lacks %s with %s:\n%s", repo(img.Name), img.Digest, out)
			}
		}
		got := b.ok("images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "reference=*/inspect/busy*")
		if got != ref("busybox")+"\n" {
			t.Errorf("reference=*/inspect/busy*: %q", got)
		}
		got = b.ok("images", "--format", "{{.Repository}}", "-f", "reference=*/inspect/multi*:latest", "-f", "reference=nothing")
		if lines := readLines(got); !slices.Equal(lines, []string{repo("multiarch"), repo("multilayer")}) && !slices.Equal(lines, []string{repo("multilayer"), repo("multiarch")}) {
			t.Errorf("two reference filters: %q", got)
		}
		if got := b.ok("images", "-q", "--filter", "dangling=true"); got != "" {
			t.Errorf("dangling=true with every image tagged: %q", got)
		}
		if got := readLines(b.ok("images", "-q", "--filter", "dangling=false")); len(got) != len(imgs) {
			t.Errorf("dangling=false: %q", got)
		}
		got = b.ok("images", "--format", `table {{.Repository}}\t{{.Size}}`, "-f", "reference=*/*/busybox")
		if lines := readLines(got); len(lines) != 2 || !regexp.MustCompile(`^REPOSITORY\s+SIZE$`).MatchString(lines[0]) ||
			!regexp.MustCompile(`^`+regexp.QuoteMeta(repo("busybox"))+`\s+\d+(\.\d+)?[kM]B$`).MatchString(lines[1]) {
			t.Errorf("table format:\n%s", got)
		}
		if _, errOut, code := b.run("images", "--filter", "color=red"); code != 2 || !strings.Contains(errOut, "invalid filter") {
			t.Errorf("unknown filter: exit %d %q", code, errOut)
		}

		// A dangling image: a tag pulled again after it moved to another
		// image.
		b2 := berthCLI{t: t, bin: b.bin, state: filepath.Join(t.TempDir(), "state")}
		moving := srv.Host + "/inspect/moving:latest"
		copyTo := func(name string) {
			t.Helper()
			if err := run(t.Context(), env, nil, "skopeo", "--insecure-policy", "copy", "--dest-tls-verify=false", "--src-tls-verify=false",
				"docker://"+ref(name), "docker://"+moving); err != nil {
				t.Fatal(err)
			}
		}
		copyTo("busybox")
		old := strings.TrimSpace(b2.ok("pull", "-q", moving))
		copyTo("multilayer")
		b2.ok("pull", "-q", moving)
		if got := b2.ok("images", "--no-trunc", "--format", "{{.ID}} {{.Repository}} {{.Tag}}", "--filter", "dangling=true"); got != old+" <none> <none>\n" {
			t.Errorf("dangling=true: %q, want %s", got, old)
		}
		if got := b2.ok("images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "dangling=false"); got != moving+"\n" {
			t.Errorf("dangling=false: %q", got)
		}
	})

	t.Run("containers", func(t *testing.T) {
		host := t.TempDir()
		id := strings.TrimSpace(b.ok("create", "-v", host+":/data:ro", "--memory", "64m", ref("busybox"),
			"dd if=/dev/zero of=/big bs=1024 count=1024 2>/dev/null"))
		defer b.run("rm", "-f", id)
		b.ok("start", "-a", id)

		out := b.ok("inspect", id)
		var docs []struct {
			Id, Image, Name, Path string
			Args                  []string
			State                 struct {
				Status   string
				Running  bool
				ExitCode int
			}
			Config struct {
				Image string
				Cmd   []string
				Env   []string
			}
			HostConfig struct {
				Memory int64
				Binds  []string
			}
			Mounts []struct {
				Type, Source, Destination string
				RW                        bool
			}
			GraphDriver struct {
				Name string
				Data map[string]string
			}
		}
		if err := json.Unmarshal([]byte(out), &docs); err != nil || len(docs) != 1 {
			t.Fatalf("inspect %s: %v\n%s", id, err, out)
		}
		c := docs[0]
		imageID := mustJSONString(t, imageInspectOK(t, imageInspect, ref("busybox")), "Id")
		if c.Id != id || c.Image != imageID || c.Config.Image != ref("busybox") || c.State.Status != "exited" || c.State.Running ||
			c.State.ExitCode != 0 || c.Path != "/bin/sh" || !slices.Equal(c.Args, []string{"-c", "dd if=/dev/zero of=/big bs=1024 count=1024 2>/dev/null"}) ||
			!slices.Equal(c.Config.Cmd, []string{"dd if=/dev/zero of=/big bs=1024 count=1024 2>/dev/null"}) || !slices.Contains(c.Config.Env, "GREETING=hello") {
			t.Errorf("inspect %s:\n%s", id, out)
		}
		if c.HostConfig.Memory != 64<<20 || !slices.Equal(c.HostConfig.Binds, []string{host + ":/data:ro"}) ||
			len(c.Mounts) != 1 || c.Mounts[0].Type != "bind" || c.Mounts[0].Source != host || c.Mounts[0].Destination != "/data" || c.Mounts[0].RW {
			t.Errorf("HostConfig %+v, Mounts %+v", c.HostConfig, c.Mounts)
		}
		if c.GraphDriver.Name == "overlay" {
			if fi, err := os.Stat(filepath.Join(c.GraphDriver.Data["UpperDir"], "big")); err != nil || fi.Size() != 1<<20 {
				t.Errorf("UpperDir %s: big: %v", c.GraphDriver.Data["UpperDir"], err)
			}
		}
		if out, errOut, code := b.run("inspect", "--type", "image", id); code != 1 || !strings.Contains(errOut, "No such image: "+id) || strings.TrimSpace(out) != "[]" {
			t.Errorf("inspect --type image of a container: exit %d %q %q", code, out, errOut)
		}
		if got := b.ok("inspect", "--type", "container", "-f", "{{.State.Status}} {{.Config.Image}}", id); got != "exited "+ref("busybox")+"\n" {
			t.Errorf("inspect --type container -f: %q", got)
		}

		// Sizes: the 1 MiB file is the writable layer; virtual adds the image.
		var imgSize int64
		json.Unmarshal([]byte(mustJSONField(t, imageInspectOK(t, imageInspect, ref("busybox")), "Size")), &imgSize)
		sizes := strings.Fields(b.ok("inspect", "-s", "-f", "{{.SizeRw}} {{.SizeRootFs}}", id))
		rw, err1 := strconv.ParseInt(sizes[0], 10, 64)
		rootfs, err2 := strconv.ParseInt(sizes[1], 10, 64)
		if err1 != nil || err2 != nil || rw < 1<<20 || rw > 1<<20+64<<10 || rootfs != rw+imgSize {
			t.Errorf("inspect -s: SizeRw %s SizeRootFs %s; want about 1 MiB, and it plus the image's %d", sizes[0], sizes[1], imgSize)
		}
		out = b.ok("ps", "-a", "-s")
		if !regexp.MustCompile(`CONTAINER ID\s+IMAGE\s+COMMAND\s+CREATED\s+STATUS\s+PORTS\s+NAMES\s+SIZE`).MatchString(out) ||
			!regexp.MustCompile(id+`.*Exited \(0\).*\s1\.0[5-9]MB \(virtual \d+(\.\d+)?[kM]B\)`).MatchString(out) {
			t.Errorf("ps -a -s:\n%s", out)
		}
		if got := b.ok("ps", "-a", "--format", "{{.ID}} {{.State}}"); !strings.Contains(got, id+" exited\n") {
			t.Errorf("ps --format: %q", got)
		}
	})
}

// runArgs runs berth with args as given (for the subcommands of a group,
// whose --state follows the subcommand) and returns stdout, stderr and the
// exit code.
func (b berthCLI) runArgs(args ...string) (string, string, int) {
	b.t.Helper()
	c := exec.CommandContext(b.t.Context(), b.bin, args...)
	var out, errOut bytes.Buffer
	c.Stdout, c.Stderr = &out, &errOut
	err := c.Run()
	code := 0
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		b.t.Fatalf("berth %q: %v", args, err)
	}
	return out.String(), errOut.String(), code
}

// imageInspectOK runs image inspect of ref and returns its one document.
func imageInspectOK(t *testing.T, inspect func(...string) (string, string, int), ref string) map[string]json.RawMessage {
	t.Helper()
	out, errOut, code := inspect(ref)
	var docs []map[string]json.RawMessage
	if code != 0 || json.Unmarshal([]byte(out), &docs) != nil || len(docs) != 1 {
		t.Fatalf("image inspect %s: exit %d: %s%s", ref, code, out, errOut)
	}
	return docs[0]
}

func mustJSONField(t *testing.T, doc map[string]json.RawMessage, key string) string {
	t.Helper()
	v, ok := doc[key]
	if !ok {
		t.Fatalf("the document has no %s", key)
	}
	return string(v)
}

func mustJSONString(t *testing.T, doc map[string]json.RawMessage, key string) string {
	t.Helper()
	var s string
	if err := json.Unmarshal([]byte(mustJSONField(t, doc, key)), &s); err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	return s
}

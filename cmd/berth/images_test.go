package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	specsv "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-registry/berth/registry"
	"github.com/berth-registry/berth/storage/inmemory"
	"github.com/berth-registry/berth/storage/store"
)

// imageRegistry serves Berth's registry over in-memory storage on a
// loopback port and returns its host:port.
func imageRegistry(t *testing.T) (host string, push func(repo, tag string, files map[string]string, cfg ocispec.ImageConfig) digest.Digest) {
	t.Helper()
	reg, err := registry.New(registry.Options{Store: store.New(inmemory.New(), store.Options{})})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg)
	t.Cleanup(srv.Close)
	blob := func(repo string, b []byte) ocispec.Descriptor {
		d := digest.FromBytes(b)
		resp, err := http.Post(fmt.Sprintf("%s/v2/%s/blobs/uploads/?digest=%s", srv.URL, repo, d), "", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("push blob: %s", resp.Status)
		}
		return ocispec.Descriptor{Digest: d, Size: int64(len(b))}
	}
	push = func(repo, tag string, files map[string]string, ic ocispec.ImageConfig) digest.Digest {
		var raw bytes.Buffer
		tw := tar.NewWriter(&raw)
		names := slices.Sorted(func(yield func(string) bool) {
			for k := range files {
				if !yield(k) {
					return
				}
			}
		})
		for _, name := range names {
			h := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(files[name])), ModTime: time.Unix(1700000000, 0), Typeflag: tar.TypeReg}
			if strings.HasSuffix(name, "/") {
				h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
			}
			tw.WriteHeader(h)
			tw.Write([]byte(files[name]))
		}
		tw.Close()
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(raw.Bytes())
		zw.Close()
		layer := blob(repo, gz.Bytes())
		layer.MediaType = ocispec.MediaTypeImageLayerGzip
		cfg := ocispec.Image{
			Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
			Config:   ic,
			RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(raw.Bytes())}},
		}
		cb, _ := json.Marshal(cfg)
		m := ocispec.Manifest{Versioned: specsv.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
			Config: blob(repo, cb), Layers: []ocispec.Descriptor{layer}}
		m.Config.MediaType = ocispec.MediaTypeImageConfig
		mb, _ := json.Marshal(m)
		req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("%s/v2/%s/manifests/%s", srv.URL, repo, tag), bytes.NewReader(mb))
		req.Header.Set("Content-Type", ocispec.MediaTypeImageManifest)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("push manifest: %s", resp.Status)
		}
		return m.Config.Digest
	}
	return strings.TrimPrefix(srv.URL, "http://"), push
}

// TestImageCommands runs pull, images, bundle, rmi and image prune
// in-process against a registry.
func TestImageCommands(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the layer store chowns, makes whiteout devices and sets trusted xattrs")
	}
	host, push := imageRegistry(t)
	files := map[string]string{
		"etc/": "", "etc/passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
		"etc/group": "root:x:0:\nusers:x:100:app\n", "app/": "", "app/hello.txt": "hello\n",
	}
	id := push("team/tool", "1.0", files, ocispec.ImageConfig{
		Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"cat hello.txt"}, WorkingDir: "/app", User: "app",
		Env: []string{"PATH=/bin", "A=1"}, StopSignal: "SIGINT",
	})
	state := t.TempDir()
	env := map[string]string{"BERTH_DEFAULT_REGISTRY": host, "DOCKER_CONFIG": t.TempDir()}
	berth := func(args ...string) (string, string, int) {
		ta := newTestApp(env)
		n := 1 // --state after the command's name, before any "--"
		if len(args) > 1 && args[0] == "image" {
			n = 2
		}
		full := append(append(slices.Clone(args[:min(n, len(args))]), "--state", state), args[min(n, len(args)):]...)
		code := ta.run(full)
		return ta.stdout.String(), ta.stderr.String(), code
	}

	out, errOut, code := berth("pull", "team/tool:1.0")
	if code != exitOK || !strings.Contains(out, host+"/team/tool:1.0: image "+id.String()) {
		t.Fatalf("pull: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	if !strings.Contains(errOut, "done") {
		t.Errorf("pull progress on stderr: %q", errOut)
	}
	if out, _, code = berth("pull", "-q", host+"/team/tool:1.0"); code != exitOK || out != id.String()+"\n" {
		t.Errorf("pull -q: exit %d, %q", code, out)
	}
	out, _, code = berth("images")
	if code != exitOK || !strings.Contains(out, host+"/team/tool") || !strings.Contains(out, "1.0") || !strings.Contains(out, id.Encoded()[:12]) || !strings.Contains(out, "linux/amd64") {
		t.Errorf("images: exit %d\n%s", code, out)
	}

	if out, _, code = berth("inspect", "-f", "{{.Id}} {{json .RepoTags}} {{.Config.User}}", "team/tool:1.0"); code != exitOK || out != id.String()+` ["`+host+`/team/tool:1.0"] app`+"\n" {
		t.Errorf("inspect -f: exit %d, %q", code, out)
	}
	if out, errOut, code = berth("image", "inspect", "team/tool:1.0", "team/none"); code != exitFailure ||
		!strings.Contains(out, `"Id": "`+id.String()+`"`) || errOut != "Error: No such image: team/none\n" {
		t.Errorf("image inspect with a missing image: exit %d\nstdout %s\nstderr %q", code, out, errOut)
	}
	if out, _, code = berth("history", "--no-trunc", "-q", "team/tool:1.0"); code != exitOK || out != id.String()+"\n" {
		t.Errorf("history -q: exit %d, %q", code, out)
	}
	if out, _, code = berth("images", "--digests", "--format", "{{.Tag}} {{.Digest}}", "-f", "reference=team/*"); code != exitOK || !strings.HasPrefix(out, "1.0 sha256:") {
		t.Errorf("images --digests --format: exit %d, %q", code, out)
	}
	if _, errOut, code = berth("images", "--format", "{{.Nope"); code != exitUsage || !strings.Contains(errOut, "template") {
		t.Errorf("images with a bad template: exit %d, %q", code, errOut)
	}

	bundle := filepath.Join(t.TempDir(), "bundle")
	out, errOut, code = berth("bundle", "-e", "A=2", "--memory", "64m", "--hostname", "box", "team/tool:1.0", bundle, "--", "echo hi")
	if code != exitOK {
		t.Fatalf("bundle: exit %d\n%s%s", code, out, errOut)
	}
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	if s.Root.Path != "rootfs" || !slices.Equal(s.Process.Args, []string{"/bin/sh", "-c", "echo hi"}) || s.Process.Cwd != "/app" ||
		s.Process.User.UID != 1000 || !slices.Equal(s.Process.User.AdditionalGids, []uint32{100}) || s.Hostname != "box" ||
		!slices.Contains(s.Process.Env, "A=2") || *s.Linux.Resources.Memory.Limit != 64<<20 ||
		s.Annotations["org.opencontainers.image.stopSignal"] != "SIGINT" {
		t.Errorf("config.json:\n%s", b)
	}
	if got, err := os.ReadFile(filepath.Join(bundle, "rootfs", "app", "hello.txt")); err != nil || string(got) != "hello\n" {
		t.Errorf("rootfs/app/hello.txt = %q, %v", got, err)
	}
	// A bundle never overwrites a directory with content.
	if _, errOut, code = berth("bundle", "team/tool:1.0", bundle); code != exitUsage || !strings.Contains(errOut, "not empty") {
		t.Errorf("bundle into a full directory: exit %d, %s", code, errOut)
	}
	if _, errOut, code = berth("bundle", "-u", "ghost", "team/tool:1.0", filepath.Join(t.TempDir(), "b2")); code != exitFailure || !strings.Contains(errOut, "unknown user") {
		t.Errorf("bundle -u ghost: exit %d, %s", code, errOut)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"pull"}, "accepts 1 arg"},
		{[]string{"pull", "--platform", "linux", "x/y"}, "invalid platform"},
		{[]string{"pull", "UPPER/case"}, "invalid image reference"},
		{[]string{"bundle", "team/tool:1.0"}, "want IMAGE DIR"},
		{[]string{"bundle", "team/tool:1.0", "d", "extra"}, "want IMAGE DIR"},
		{[]string{"bundle", "-v", "rel:/x", "team/tool:1.0", "d"}, "--volume"},
		{[]string{"bundle", "--memory", "lots", "team/tool:1.0", "d"}, "--memory"},
		{[]string{"rmi"}, "requires at least 1 arg"},
	} {
		if _, errOut, code := berth(tc.args...); code != exitUsage || !strings.Contains(errOut, tc.want) {
			t.Errorf("berth %q: exit %d, stderr %q; want 2 and %q", tc.args, code, errOut, tc.want)
		}
	}

	out, errOut, code = berth("rmi", "team/tool:1.0", "team/nothing")
	if code != exitFailure || !strings.Contains(out, "Untagged: "+host+"/team/tool:1.0") || !strings.Contains(out, "Deleted: "+id.String()) || !strings.Contains(errOut, "team/nothing") {
		t.Errorf("rmi: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	out, _, code = berth("image", "prune")
	if code != exitOK || !strings.Contains(out, "Removed 0 images and 1 layers (3 blobs)") {
		t.Errorf("image prune: exit %d\n%s", code, out)
	}
	if out, _, code = berth("images", "-q"); code != exitOK || out != "" {
		t.Errorf("images after rmi: %q", out)
	}
}

func TestLoginLogout(t *testing.T) {
	// A registry that asks for no authentication: login stores the
	// credentials unchecked.
	host, _ := imageRegistry(t)
	cfgDir := t.TempDir()
	env := map[string]string{"DOCKER_CONFIG": cfgDir}
	login := func(stdin string, args ...string) (string, string, error) {
		ta := newTestApp(env)
		cmd := ta.newLoginCmd()
		cmd.SetIn(strings.NewReader(stdin))
		cmd.SetArgs(args)
		cmd.SetOut(&ta.stdout)
		cmd.SetErr(&ta.stderr)
		cmd.SilenceErrors, cmd.SilenceUsage = true, true
		err := cmd.Execute()
		return ta.stdout.String(), ta.stderr.String(), err
	}
	out, _, err := login("s3cret\n", "-u", "alice", "--password-stdin", host)
	if err != nil || !strings.Contains(out, "Login succeeded: "+host) {
		t.Fatalf("login: %v %s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(cfgDir, "config.json"))
	if err != nil || !strings.Contains(string(b), host) || !strings.Contains(string(b), "YWxpY2U6czNjcmV0") { // alice:s3cret
		t.Errorf("config.json after login: %s, %v", b, err)
	}
	if _, _, err := login("", "--password-stdin", host); err == nil || !strings.Contains(err.Error(), "-u USER") {
		t.Errorf("login without a user: %v", err)
	}
	if _, _, err := login("pw\n", "-u", "bob", host); err == nil || !strings.Contains(err.Error(), "--password-stdin") {
		t.Errorf("login without a terminal or --password-stdin: %v", err)
	}
	if _, _, err := login("pw\n", "-u", "bob", "--password-stdin"); err == nil || !strings.Contains(err.Error(), "no REGISTRY") {
		t.Errorf("login without a registry: %v", err)
	}

	ta := newTestApp(env)
	if code := ta.run([]string{"logout", host}); code != exitOK || !strings.Contains(ta.stdout.String(), host) {
		t.Errorf("logout: exit %d %s %s", code, ta.stdout.String(), ta.stderr.String())
	}
	if b, _ := os.ReadFile(filepath.Join(cfgDir, "config.json")); strings.Contains(string(b), host) {
		t.Errorf("config.json after logout: %s", b)
	}
	ta = newTestApp(env)
	if code := ta.run([]string{"logout", host}); code != exitFailure || !strings.Contains(ta.stderr.String(), "not logged in") {
		t.Errorf("second logout: exit %d %s", code, ta.stderr.String())
	}
	ta = newTestApp(map[string]string{"DOCKER_CONFIG": cfgDir, "BERTH_DEFAULT_REGISTRY": host})
	if code := ta.run([]string{"logout"}); code != exitFailure || !strings.Contains(ta.stderr.String(), host) {
		t.Errorf("logout of the default registry: exit %d %s", code, ta.stderr.String())
	}
}

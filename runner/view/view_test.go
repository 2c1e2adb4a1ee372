package view_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/runner/container"
	"github.com/berth-registry/berth/runner/format"
	"github.com/berth-registry/berth/runner/image"
	"github.com/berth-registry/berth/runner/pull"
	"github.com/berth-registry/berth/runner/spec"
	"github.com/berth-registry/berth/runner/view"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares v, as `berth inspect` prints it, with testdata/name.
func golden(t *testing.T, name string, v any) {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "    ")
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Bytes(), want) {
		t.Errorf("%s differs (go test -update rewrites it):\n%s", p, b.String())
	}
}

var created = time.Date(2023, 11, 14, 22, 13, 20, 0, time.UTC)

// rawConfig is an image config as docker's builder writes it: docker's
// extra config fields and history with empty layers.
const rawConfig = `{
  "architecture": "arm64", "variant": "v8", "os": "linux", "created": "2023-11-14T22:13:20Z",
  "author": "someone", "comment": "built here", "docker_version": "27.0.1",
  "config": {
    "User": "app", "Env": ["PATH=/bin", "A=1"], "Entrypoint": ["/bin/sh", "-c"], "Cmd": ["serve"],
    "WorkingDir": "/srv", "Labels": {"x": "<y>"}, "ExposedPorts": {"80/tcp": {}}, "Volumes": {"/data": {}},
    "StopSignal": "SIGINT", "Shell": ["/bin/bash", "-c"], "OnBuild": ["RUN true"],
    "Healthcheck": {"Test": ["CMD", "true"], "Interval": 30000000000, "Retries": 3}
  },
  "rootfs": {"type": "layers", "diff_ids": ["sha256:1111111111111111111111111111111111111111111111111111111111111111", "sha256:2222222222222222222222222222222222222222222222222222222222222222"]},
  "history": [
    {"created": "2023-11-14T22:13:20Z", "created_by": "/bin/sh -c #(nop) ADD file:0123 in / "},
    {"created": "2023-11-14T22:13:20Z", "created_by": "/bin/sh -c #(nop)  ENV A=1", "empty_layer": true},
    {"created": "2023-11-14T22:13:20Z", "created_by": "RUN /bin/sh -c apt-get update &&\tapt-get install -y something-long # buildkit", "comment": "buildkit.dockerfile.v0"},
    {"created": "2023-11-14T22:13:20Z", "created_by": "/bin/sh -c #(nop)  CMD [\"serve\"]", "empty_layer": true}
  ]
}`

const (
	host     = "registry.test:5000"
	manifest = digest.Digest("sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	index    = digest.Digest("sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
	older    = digest.Digest("sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc")
)

// testImage is an image record as the store returns it.
func testImage(t *testing.T, refs ...string) image.Image {
	t.Helper()
	img := image.Image{
		ID: digest.FromString(rawConfig), References: refs, ManifestDigest: manifest,
		ManifestMediaType: ocispec.MediaTypeImageManifest, RawConfig: []byte(rawConfig),
		Size: 12_345_678, Pulled: created.Add(time.Hour),
		Platform: pull.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"},
	}
	if err := json.Unmarshal(img.RawConfig, &img.Config); err != nil {
		t.Fatal(err)
	}
	return img
}

func TestNewImage(t *testing.T) {
	img := testImage(t, host+"/team/app:1.0", host+"/team/app:latest", host+"/other/app@"+older.String(), host+"/mirror/app:2@"+older.String())
	manifests := map[string]digest.Digest{
		host + "/team/app:1.0": index, host + "/team/app:latest": index,
		host + "/other/app@" + older.String(): older, host + "/mirror/app:2@" + older.String(): older,
	}
	doc, err := view.NewImage(img, manifests, 1234)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "image.json", []view.Image{doc})

	// A dangling image without its manifest blob: empty lists, no
	// descriptor.
	doc, err = view.NewImage(testImage(t), nil, -1)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(doc)
	if !strings.Contains(string(b), `"RepoTags":[],"RepoDigests":[]`) || strings.Contains(string(b), "Descriptor") {
		t.Errorf("dangling image: %s", b)
	}
	bad := testImage(t)
	bad.RawConfig = []byte("{")
	if _, err := view.NewImage(bad, nil, -1); err == nil {
		t.Error("a config that is not JSON: no error")
	}
}

func TestHistory(t *testing.T) {
	img := testImage(t)
	now := created.Add(15 * 24 * time.Hour)
	rows, err := view.History(img, []int64{5_000_000, 1234}, view.HistoryOptions{Now: now, Human: true})
	if err != nil {
		t.Fatal(err)
	}
	want := []view.HistoryRow{
		{ID: format.TruncateID(img.ID.String()), CreatedBy: `/bin/sh -c #(nop)  CMD ["serve"]`, Size: "0B", EmptyLayer: true},
		{ID: "<missing>", CreatedBy: "RUN /bin/sh -c apt-get update && apt-get ins…", Size: "1.23kB", Comment: "buildkit.dockerfile.v0"},
		{ID: "<missing>", CreatedBy: "/bin/sh -c #(nop)  ENV A=1", Size: "0B", EmptyLayer: true},
		{ID: "<missing>", CreatedBy: "/bin/sh -c #(nop) ADD file:0123 in / ", Size: "5MB"},
	}
	for i := range want {
		want[i].CreatedSince = "2 weeks ago"
		want[i].CreatedAt = created.Local().Format(time.RFC3339)
	}
	if !slices.Equal(rows, want) {
		t.Errorf("History:\n%+v\nwant\n%+v", rows, want)
	}

	rows, err = view.History(img, []int64{5_000_000, 1234}, view.HistoryOptions{Now: now, NoTrunc: true})
	if err != nil {
		t.Fatal(err)
	}
	if rows[0].ID != img.ID.String() || rows[1].CreatedBy != "RUN /bin/sh -c apt-get update && apt-get install -y something-long # buildkit" ||
		rows[1].Size != "1234" || rows[3].Size != "5000000" || rows[0].CreatedSince != rows[0].CreatedAt {
		t.Errorf("History --no-trunc -H=false: %+v", rows)
	}

	// Layers the history does not describe get rows of their own.
	bare := testImage(t)
	bare.Config.History = nil
	rows, err = view.History(bare, []int64{10, 20}, view.HistoryOptions{Now: now, Human: true})
	if err != nil || len(rows) != 2 || rows[0].Size != "20B" || rows[1].Size != "10B" || rows[1].ID != "<missing>" {
		t.Errorf("History without history: %+v, %v", rows, err)
	}
	// A history of more layers than the image has is refused.
	short := testImage(t)
	short.Config.RootFS.DiffIDs = short.Config.RootFS.DiffIDs[:1]
	if _, err := view.History(short, []int64{10}, view.HistoryOptions{}); !errors.Is(err, image.ErrCorrupt) {
		t.Errorf("History with more non-empty entries than layers: %v", err)
	}
	if _, err := view.History(img, []int64{10}, view.HistoryOptions{}); err == nil {
		t.Error("History with a size missing: no error")
	}
}

func TestNewContainer(t *testing.T) {
	rootfs := t.TempDir()
	os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755)
	os.WriteFile(filepath.Join(rootfs, "etc", "passwd"), []byte("root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"), 0o644)
	img := testImage(t)
	c := &container.Container{ID: "0123456789ab", Dir: "/var/lib/berth/containers/0123456789ab"}
	st := container.State{
		ID: c.ID, Image: host + "/team/app:1.0", ImageID: img.ID.String(), Command: []string{"/bin/sh", "-c", "serve"},
		Created: created, Status: container.StatusExited, ExitCode: 3, Started: created.Add(time.Second),
		Finished: created.Add(time.Minute), Error: "", AutoRemove: false, Name: "web",
		RestartPolicy: container.RestartPolicy{Name: "on-failure", MaximumRetryCount: 3}, RestartCount: 2,
		Healthcheck: &container.HealthConfig{Test: []string{"CMD-SHELL", "wget -q localhost"}, Interval: time.Second, Retries: 2},
	}
	s, err := spec.Generate(img.Config, rootfs, spec.Options{
		Args: []string{"serve", "--port", "80"}, Env: []string{"B=2"}, Hostname: "box", Terminal: true,
		Memory: 64 << 20, CPUs: 1.5, PidsLimit: 100, ReadOnly: true,
		Mounts: []spec.Mount{{Source: "/srv/data", Destination: "/data", ReadOnly: true}, {Source: "/tmp/x", Destination: "/x"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Root.Path = c.Rootfs()
	doc := view.NewContainer(view.ContainerSource{
		Container: c, State: st, Spec: s, Image: &img.Config,
		LowerDirs: []string{"/var/lib/berth/layers/l/2", "/var/lib/berth/layers/l/1"},
	})
	golden(t, "container.json", []view.Container{doc})

	for _, tc := range []struct {
		name           string
		imageEntry     []string
		args           []string
		wantEntrypoint []string
		wantCmd        []string
	}{
		{"image entrypoint", []string{"/bin/sh", "-c"}, []string{"/bin/sh", "-c", "serve"}, []string{"/bin/sh", "-c"}, []string{"serve"}},
		{"--entrypoint", []string{"/bin/sh", "-c"}, []string{"/bin/echo", "hi"}, []string{"/bin/echo"}, []string{"hi"}},
		{"no entrypoint", nil, []string{"/bin/echo", "hi"}, nil, []string{"/bin/echo", "hi"}},
		{"entrypoint alone", []string{"/init"}, []string{"/init"}, []string{"/init"}, []string{}},
	} {
		cfg := img.Config
		cfg.Config.Entrypoint = tc.imageEntry
		s := *s
		p := *s.Process
		p.Args = tc.args
		s.Process = &p
		doc := view.NewContainer(view.ContainerSource{Container: c, State: st, Spec: &s, Image: &cfg})
		if !slices.Equal(doc.Config.Entrypoint, tc.wantEntrypoint) || !slices.Equal(doc.Config.Cmd, tc.wantCmd) ||
			doc.Path != tc.args[0] || !slices.Equal(doc.Args, tc.args[1:]) {
			t.Errorf("%s: Entrypoint %q Cmd %q Path %q Args %q", tc.name, doc.Config.Entrypoint, doc.Config.Cmd, doc.Path, doc.Args)
		}
	}

	// Without spec or image (both gone): the state alone; flattened: vfs.
	st.Flattened, st.Status, st.Pid = true, container.StatusRunning, 42
	doc = view.NewContainer(view.ContainerSource{Container: c, State: st})
	if doc.Path != "/bin/sh" || !doc.State.Running || doc.State.Pid != 42 || doc.GraphDriver.Name != "vfs" ||
		doc.GraphDriver.Data["Dir"] != c.Rootfs() || doc.Config.Cmd == nil || len(doc.Mounts) != 0 || doc.Mounts == nil {
		t.Errorf("container without spec and image: %+v", doc)
	}
}

func TestWriteDocuments(t *testing.T) {
	docs := []any{map[string]string{"Id": "a<b"}, map[string]string{"Id": "c"}}
	var b bytes.Buffer
	if err := view.WriteDocuments(&b, docs, nil); err != nil {
		t.Fatal(err)
	}
	if want := "[\n    {\n        \"Id\": \"a<b\"\n    },\n    {\n        \"Id\": \"c\"\n    }\n]\n"; b.String() != want {
		t.Errorf("JSON:\n%s\nwant:\n%s", b.String(), want)
	}
	tmpl, err := format.Parse("{{.Id}}", "")
	if err != nil {
		t.Fatal(err)
	}
	b.Reset()
	if err := view.WriteDocuments(&b, docs, tmpl); err != nil || b.String() != "a<b\nc\n" {
		t.Errorf("template: %q, %v", b.String(), err)
	}
	if err := view.WriteDocuments(&b, []any{docs}, tmpl); err == nil {
		t.Error("a template that does not fit the document succeeded")
	}
}

func TestContainerSecurity(t *testing.T) {
	rootfs := t.TempDir()
	img := testImage(t)
	img.Config.Config.User = "0"
	c := &container.Container{ID: "0123456789ab", Dir: "/var/lib/berth/containers/0123456789ab"}
	no := false
	for _, tc := range []struct {
		name      string
		sec       spec.Security
		priv      bool
		add, drop []string
		opts      []string
	}{
		{name: "default"},
		{name: "caps", sec: spec.Security{CapAdd: []string{"NET_ADMIN"}, CapDrop: []string{"chown"}}, add: []string{"CAP_NET_ADMIN"}, drop: []string{"CAP_CHOWN"}},
		{name: "unconfined", sec: spec.Security{SeccompUnconfined: true, NoNewPrivileges: &no}, opts: []string{"no-new-privileges=false", "seccomp=unconfined"}},
		{name: "privileged", sec: spec.Security{Privileged: true}, priv: true},
	} {
		s, err := spec.Generate(img.Config, rootfs, spec.Options{Args: []string{"x"}, Security: tc.sec})
		if err != nil {
			t.Fatal(err)
		}
		hc := view.NewContainer(view.ContainerSource{Container: c, Spec: s}).HostConfig
		if hc.Privileged != tc.priv || !slices.Equal(hc.CapAdd, tc.add) || !slices.Equal(hc.CapDrop, tc.drop) || !slices.Equal(hc.SecurityOpt, tc.opts) {
			t.Errorf("%s: privileged %v, cap add %v drop %v, security opts %v", tc.name, hc.Privileged, hc.CapAdd, hc.CapDrop, hc.SecurityOpt)
		}
	}
}

package ui_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/gc"
	"github.com/berth-registry/berth/manifest"
	"github.com/berth-registry/berth/registry/ui"
	"github.com/berth-registry/berth/storage/inmemory"
	"github.com/berth-registry/berth/storage/store"
)

// fixture is a store holding: app:v1 (an image of two layers, made by two
// history steps around an empty one, signed by an artifact that has its own
// attestation), app:multi and app:also (an index of app:v1 and another
// image), and nothing else.
type fixture struct {
	st                    *store.Store
	image, other, index   digest.Digest
	sig, attestation      digest.Digest
	imageBytes, multiSize int64
	layers                [][]byte
}

func putJSON(t *testing.T, st *store.Store, repo string, tags []string, mediaType string, v any) (digest.Digest, int64) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	d := digest.FromBytes(b)
	if _, err := st.PutManifest(t.Context(), repo, tags, d, mediaType, b); err != nil {
		t.Fatal(err)
	}
	return d, int64(len(b))
}

func putBlob(t *testing.T, st *store.Store, repo string, b []byte) map[string]any {
	t.Helper()
	d := digest.FromBytes(b)
	if _, err := st.PutBlob(t.Context(), repo, bytes.NewReader(b), d); err != nil {
		t.Fatal(err)
	}
	return map[string]any{"digest": d, "size": len(b)}
}

func newFixture(t *testing.T) *fixture {
	st := store.New(inmemory.New(), store.Options{})
	f := &fixture{st: st, layers: [][]byte{[]byte("layer one"), []byte("layer two, longer")}}
	image := func(arch, created string, layers [][]byte, cmd string) (digest.Digest, int64) {
		cfg, _ := json.Marshal(map[string]any{
			"architecture": arch, "os": "linux", "created": created,
			"config": map[string]any{"Cmd": []string{cmd}, "Env": []string{"A=1"}, "User": "app",
				"ExposedPorts": map[string]any{"80/tcp": map[string]any{}}, "Labels": map[string]string{"l": "<b>x</b>"}},
			"history": []map[string]any{
				{"created_by": "ADD one /"}, {"created_by": "ENV A=1", "empty_layer": true}, {"created_by": "COPY two /"},
			},
			"rootfs": map[string]any{"type": "layers", "diff_ids": []string{}},
		})
		c := putBlob(t, st, "app", cfg)
		c["mediaType"] = "application/vnd.oci.image.config.v1+json"
		var ls []any
		total := int64(len(cfg))
		for _, l := range layers {
			desc := putBlob(t, st, "app", l)
			desc["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip"
			ls = append(ls, desc)
			total += int64(len(l))
		}
		d, n := putJSON(t, st, "app", nil, manifest.MediaTypeOCIManifest, map[string]any{
			"schemaVersion": 2, "mediaType": manifest.MediaTypeOCIManifest, "config": c, "layers": ls})
		return d, total + n
	}
	var otherBytes int64
	f.image, f.imageBytes = image("amd64", "2026-01-02T03:04:05Z", f.layers, "serve")
	f.other, otherBytes = image("arm64", "2026-02-01T00:00:00Z", [][]byte{[]byte("arm layer")}, "serve-arm")
	if err := f.st.TouchTag(t.Context(), "app", "v1", f.image); err != nil { // tags it
		t.Fatal(err)
	}
	var indexBytes int64
	f.index, indexBytes = putJSON(t, st, "app", []string{"multi", "also"}, manifest.MediaTypeOCIIndex, map[string]any{
		"schemaVersion": 2, "mediaType": manifest.MediaTypeOCIIndex, "manifests": []any{
			map[string]any{"mediaType": manifest.MediaTypeOCIManifest, "digest": f.image, "size": 1,
				"platform": map[string]any{"os": "linux", "architecture": "amd64"}},
			map[string]any{"mediaType": manifest.MediaTypeOCIManifest, "digest": f.other, "size": 1,
				"platform": map[string]any{"os": "linux", "architecture": "arm64", "variant": "v8"}},
		}})
	f.multiSize = f.imageBytes + otherBytes + indexBytes
	empty := putBlob(t, st, "app", []byte("{}"))
	empty["mediaType"] = "application/vnd.oci.empty.v1+json"
	artifact := func(subject digest.Digest, typ string) digest.Digest {
		d, _ := putJSON(t, st, "app", nil, manifest.MediaTypeOCIManifest, map[string]any{
			"schemaVersion": 2, "mediaType": manifest.MediaTypeOCIManifest, "artifactType": typ,
			"config": empty, "layers": []any{empty},
			"subject": map[string]any{"mediaType": manifest.MediaTypeOCIManifest, "digest": subject, "size": 1}})
		return d
	}
	f.sig = artifact(f.image, "application/vnd.dev.cosign.artifact.sig.v1+json")
	f.attestation = artifact(f.sig, "application/vnd.in-toto+json")
	return f
}

func TestStoreSource(t *testing.T) {
	f := newFixture(t)
	src := ui.NewStoreSource(f.st, func(repo string) string { return map[string]string{"app": ""}[repo] })
	ctx := t.Context()

	repos, err := src.Repositories(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(repos) != 1 || repos[0].Name != "app" || repos[0].Tags != 3 || repos[0].Bytes != f.multiSize {
		t.Fatalf("Repositories = %+v, want app with 3 tags and %d bytes", repos, f.multiSize)
	}
	page, err := src.Repository(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tg := range page.TagList {
		names = append(names, tg.Name)
	}
	if !slices.Equal(names, []string{"also", "multi", "v1"}) {
		t.Fatalf("tags %v", names)
	}
	v1, multi := page.TagList[2], page.TagList[1]
	if v1.Digest != f.image || v1.Bytes != f.imageBytes || !slices.Equal(v1.Platforms, []string{"linux/amd64"}) ||
		!v1.Created.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) || v1.Referrers["application/vnd.dev.cosign.artifact.sig.v1+json"] != 1 {
		t.Errorf("v1 = %+v", v1)
	}
	if multi.Digest != f.index || multi.Bytes != f.multiSize || !slices.Equal(multi.Platforms, []string{"linux/amd64", "linux/arm64/v8"}) ||
		!multi.Created.Equal(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)) || multi.MediaType != manifest.MediaTypeOCIIndex {
		t.Errorf("multi = %+v", multi)
	}

	img, err := src.Image(ctx, "app", f.image)
	if err != nil {
		t.Fatal(err)
	}
	if img.Config == nil || !slices.Equal(img.Config.Cmd, []string{"serve"}) || img.Config.User != "app" ||
		!slices.Equal(img.Config.ExposedPorts, []string{"80/tcp"}) || img.Config.Labels["l"] != "<b>x</b>" {
		t.Errorf("config = %+v", img.Config)
	}
	if len(img.History) != 3 || img.History[0].Layer == nil || img.History[0].Layer.Size != int64(len(f.layers[0])) ||
		img.History[1].Layer != nil || img.History[2].Layer == nil || img.History[2].Layer.Size != int64(len(f.layers[1])) {
		t.Errorf("history = %+v", img.History)
	}
	if !slices.Equal(img.Tags, []string{"v1"}) || img.Platform != "linux/amd64" {
		t.Errorf("tags %v, platform %q", img.Tags, img.Platform)
	}
	if len(img.Referrers) != 1 || img.Referrers[0].Digest != f.sig || len(img.Referrers[0].Referrers) != 1 ||
		img.Referrers[0].Referrers[0].Digest != f.attestation || img.Referrers[0].Referrers[0].ArtifactType != "application/vnd.in-toto+json" {
		t.Errorf("referrers = %+v", img.Referrers)
	}
	idx, err := src.Image(ctx, "app", f.index)
	if err != nil {
		t.Fatal(err)
	}
	if len(idx.Children) != 2 || idx.Children[1].Platform != "linux/arm64/v8" || idx.Config != nil {
		t.Errorf("index = %+v", idx)
	}

	for _, err := range []error{
		func() error { _, err := src.Repository(ctx, "nothing/here"); return err }(),
		func() error { _, err := src.Image(ctx, "app", digest.FromString("absent")); return err }(),
		src.DeleteTag(ctx, "app", "absent"),
	} {
		if !errors.Is(err, ui.ErrNotFound) {
			t.Errorf("a missing thing: %v, want ErrNotFound", err)
		}
	}

	tags, err := src.DeleteManifest(ctx, "app", f.index)
	if err != nil || !slices.Equal(tags, []string{"also", "multi"}) {
		t.Fatalf("DeleteManifest = %v, %v; want [also multi]", tags, err)
	}
	if err := src.DeleteTag(ctx, "app", "v1"); err != nil {
		t.Fatal(err)
	}
	page, err = src.Repository(ctx, "app")
	if err != nil || len(page.TagList) != 0 {
		t.Errorf("after the deletes: %+v, %v; want no tags", page, err)
	}
}

// TestStoragePage: the storage page over the store shows what du shows and
// the last collection's record, once there is one.
func TestStoragePage(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	src := ui.NewStoreSource(f.st, nil).WithStorage(gc.NewUsageReporter(f.st, gc.UsagePolicy{}), nil)
	h, err := ui.New(ui.Options{Source: src})
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) string {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: %d", path, rec.Code)
		}
		return rec.Body.String()
	}
	page := get("/ui/storage")
	for _, want := range []string{`href="/ui/r/app"`, "No collection has run yet", "run <code>berth gc</code>"} {
		if !strings.Contains(page, want) {
			t.Errorf("storage page: no %q", want)
		}
	}
	if !strings.Contains(get("/ui/"), `href="/ui/storage"`) {
		t.Error("no link to the storage page")
	}
	if _, err := gc.Run(ctx, f.st, gc.Options{RecordAs: "berth gc", Grace: gc.NoGrace}); err != nil {
		t.Fatal(err)
	}
	if page := get("/ui/storage"); !strings.Contains(page, "Last run by <code>berth gc</code>") {
		t.Errorf("storage page after a collection: no record of it")
	}
	var p ui.StoragePage
	if err := json.Unmarshal([]byte(get("/ui/api/storage")), &p); err != nil || p.LastRun == nil || len(p.Usage.Repositories) != 1 {
		t.Errorf("/ui/api/storage: %+v, %v", p, err)
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/gc"
	"github.com/berth-registry/berth/storage/filesystem"
	"github.com/berth-registry/berth/storage/store"
)

// duFixture is what duRoot stored, by name: sizes of what each image holds.
type duFixture struct {
	root  string
	sizes map[string]int64 // image name -> manifest + config + layers, without the shared layer
	body  map[string]int64 // image name -> manifest body alone
	layer map[string]int64 // image name -> config + own layer
	base  int64            // the layer every image shares
}

// duRoot fills a filesystem root: team/app and team/db each hold a tagged
// image, team/db also an untagged one and a deleted one, other/app the
// same image as team/app; all images share a base layer. Everything is
// made two hours old.
func duRoot(t *testing.T) duFixture {
	t.Helper()
	ctx := context.Background()
	f := duFixture{root: t.TempDir(), sizes: map[string]int64{}, body: map[string]int64{}, layer: map[string]int64{}}
	d, err := filesystem.New(f.root)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	st := store.New(d, store.Options{})
	push := func(repo string, b []byte) digest.Digest {
		dg := digest.FromBytes(b)
		if _, err := st.PutBlob(ctx, repo, bytes.NewReader(b), dg); err != nil {
			t.Fatal(err)
		}
		return dg
	}
	base := []byte("the base layer, shared by all")
	f.base = int64(len(base))
	image := func(repo, tag, name string) digest.Digest {
		cfg := []byte(`{"os":"` + name + `"}`)
		layer := []byte("layer of " + name)
		cd, ld, bd := push(repo, cfg), push(repo, layer), push(repo, base)
		body := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
			`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},`+
			`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d},`+
			`{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`,
			cd, len(cfg), ld, len(layer), bd, len(base))
		var tags []string
		if tag != "" {
			tags = []string{tag}
		}
		res, err := st.PutManifest(ctx, repo, tags, "", "application/vnd.oci.image.manifest.v1+json", []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		f.body[name] = int64(len(body))
		f.layer[name] = int64(len(cfg) + len(layer))
		f.sizes[name] = f.body[name] + f.layer[name]
		return res.Digest
	}
	image("team/app", "v1", "app")
	image("other/app", "v1", "app")
	image("team/db", "v1", "db")
	image("team/db", "", "untagged")
	gone := image("team/db", "old", "gone")
	if err := st.DeleteManifest(ctx, "team/db", gone); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-2 * time.Hour)
	// Directories too: a link's directory dates the link on a filesystem.
	err = filepath.WalkDir(f.root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, past, past)
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// duJSON runs berth du --json with args and decodes the report.
func duJSON(t *testing.T, args ...string) gc.UsageReport {
	t.Helper()
	ta := newTestApp(nil)
	if code := ta.run(append([]string{"du", "--json"}, args...)); code != exitOK {
		t.Fatalf("du --json %q: exit %d, stderr %s", args, code, ta.stderr.String())
	}
	var rep gc.UsageReport
	if err := json.Unmarshal(ta.stdout.Bytes(), &rep); err != nil {
		t.Fatalf("du --json %q printed %q: %v", args, ta.stdout.String(), err)
	}
	return rep
}

func TestDU(t *testing.T) {
	f := duRoot(t)
	app := gc.RepositoryUsage{Name: "team/app", Bytes: f.sizes["app"] + f.base, SharedBytes: f.sizes["app"] + f.base,
		Manifests: 1, Tags: 1, Blobs: 4}
	db := gc.RepositoryUsage{Name: "team/db", Bytes: f.sizes["db"] + f.sizes["untagged"] + f.base, SharedBytes: f.base,
		ReclaimableBytes: f.layer["gone"], Manifests: 2, Tags: 1, Blobs: 7}

	rep := duJSON(t, "--root", f.root)
	want := []gc.RepositoryUsage{{Name: "other/app", Bytes: app.Bytes, SharedBytes: app.SharedBytes, Manifests: 1, Tags: 1, Blobs: 4}, app, db}
	if fmt.Sprint(rep.Repositories) != fmt.Sprint(want) {
		t.Errorf("repositories:\n got %+v\nwant %+v", rep.Repositories, want)
	}
	wantTotal := gc.UsageTotal{Repositories: 3, Bytes: f.sizes["app"] + f.sizes["db"] + f.sizes["untagged"] + f.base, Blobs: 10,
		SharedBytes: f.sizes["app"] + f.base, ReclaimableBytes: f.layer["gone"], UnlinkedReclaimableBytes: f.body["gone"],
		Manifests: 4, Tags: 3, LocalBytes: f.sizes["app"] + f.sizes["db"] + f.sizes["untagged"] + f.base}
	if rep.Total != wantTotal {
		t.Errorf("total:\n got %+v\nwant %+v", rep.Total, wantTotal)
	}

	// A glob; sharing with other/app, not listed, still counts.
	rep = duJSON(t, "--root", f.root, "team/*")
	if fmt.Sprint(rep.Repositories) != fmt.Sprint([]gc.RepositoryUsage{app, db}) {
		t.Errorf("team/*: %+v", rep.Repositories)
	}

	// --delete-untagged moves the untagged image to reclaimable; a longer
	// grace than the content's age leaves nothing reclaimable.
	rep = duJSON(t, "--root", f.root, "--delete-untagged", "team/db")
	wantDB := gc.RepositoryUsage{Name: "team/db", Bytes: f.sizes["db"] + f.base, SharedBytes: f.base,
		ReclaimableBytes: f.layer["gone"] + f.sizes["untagged"], Manifests: 1, Tags: 1, Blobs: 4}
	if len(rep.Repositories) != 1 || rep.Repositories[0] != wantDB || !rep.DeleteUntagged {
		t.Errorf("--delete-untagged team/db: %+v, want %+v", rep.Repositories, wantDB)
	}
	rep = duJSON(t, "--root", f.root, "--grace", "3h")
	if rep.Total.ReclaimableBytes != 0 || rep.Total.UnlinkedReclaimableBytes != 0 || rep.Total.Bytes != wantTotal.Bytes {
		t.Errorf("--grace 3h: total %+v, want nothing reclaimable", rep.Total)
	}

	// The config's gc section gives the defaults; flags override it.
	cfg := filepath.Join(t.TempDir(), "berth.yaml")
	if err := os.WriteFile(cfg, []byte("gc:\n  deleteUntagged: true\n  grace: 3h\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rep = duJSON(t, "--config", cfg, "--root", f.root, "team/db")
	// The untagged revision, two hours old, is too recent to judge with
	// grace 3h: kept. With the default grace, it and the deleted image's
	// blobs would be reclaimable.
	if !rep.DeleteUntagged || len(rep.Repositories) != 1 || rep.Repositories[0].Manifests != 2 || rep.Repositories[0].ReclaimableBytes != 0 {
		t.Errorf("config deleteUntagged, grace 3h: %+v", rep)
	}
	rep = duJSON(t, "--config", cfg, "--root", f.root, "--delete-untagged=false", "--grace", "1h", "team/db")
	if rep.DeleteUntagged || len(rep.Repositories) != 1 || rep.Repositories[0] != db {
		t.Errorf("flags over the config: %+v, want %+v", rep.Repositories, db)
	}

	// The table.
	ta := newTestApp(nil)
	if code := ta.run([]string{"du", "--root", f.root}); code != exitOK {
		t.Fatalf("du: exit %d, stderr %s", code, ta.stderr.String())
	}
	lines := strings.Split(strings.TrimSuffix(ta.stdout.String(), "\n"), "\n")
	wantLines := [][]string{
		{"REPOSITORY", "SIZE", "SHARED", "RECLAIMABLE", "MANIFESTS", "TAGS"},
		{"other/app", humanBytes(app.Bytes), humanBytes(app.SharedBytes), "0 B", "1", "1"},
		{"team/app", humanBytes(app.Bytes), humanBytes(app.SharedBytes), "0 B", "1", "1"},
		{"team/db", humanBytes(db.Bytes), humanBytes(db.SharedBytes), humanBytes(db.ReclaimableBytes), "2", "1"},
		{"(unlinked)", "-", "-", humanBytes(f.body["gone"]), "-", "-"},
		{"TOTAL", humanBytes(wantTotal.Bytes), humanBytes(wantTotal.SharedBytes), humanBytes(f.layer["gone"] + f.body["gone"]), "4", "3"},
	}
	if len(lines) != len(wantLines) {
		t.Fatalf("du printed %d lines, want %d:\n%s", len(lines), len(wantLines), ta.stdout.String())
	}
	for i, l := range lines {
		// Columns are separated by two spaces at least; sizes hold one.
		var cols []string
		for _, c := range strings.Split(l, "  ") {
			if c = strings.TrimSpace(c); c != "" {
				cols = append(cols, c)
			}
		}
		if fmt.Sprint(cols) != fmt.Sprint(wantLines[i]) {
			t.Errorf("line %d: %q, want columns %q", i, l, wantLines[i])
		}
	}
	// With a glob, unlinked blobs belong to no listed repository.
	ta = newTestApp(nil)
	if code := ta.run([]string{"du", "--root", f.root, "team/**"}); code != exitOK || strings.Contains(ta.stdout.String(), "(unlinked)") {
		t.Errorf("du team/**: exit %d, printed\n%s", code, ta.stdout.String())
	}
}

func TestDUUsageErrors(t *testing.T) {
	root := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"du", "--root", root, "team/["}, "team/["},
		{[]string{"du", "--root", root, "a//b"}, "empty component"},
		{[]string{"du", "--root", root, "a", "b"}, "accepts at most 1 arg"},
		{[]string{"du", "--root", root, "--grace", "-1h"}, "--grace -1h0m0s must not be negative"},
		{[]string{"du", "--root", root, "--jsn"}, "unknown flag: --jsn"},
	} {
		ta := newTestApp(nil)
		if code := ta.run(tc.args); code != exitUsage || !strings.Contains(ta.stderr.String(), tc.want) {
			t.Errorf("berth %q: exit %d, stderr %q; want exit %d and %q", tc.args, code, ta.stderr.String(), exitUsage, tc.want)
		}
	}
}

func TestHumanBytes(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{1536, "1.5 KiB"},
		{5 << 20, "5.0 MiB"},
		{3<<30 + 1<<29, "3.5 GiB"},
		{2 << 40, "2.0 TiB"},
		{1<<63 - 1, "8.0 EiB"},
	} {
		if got := humanBytes(tc.n); got != tc.want {
			t.Errorf("humanBytes(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

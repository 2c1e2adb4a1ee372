package store_test

import (
	"context"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/storage"
	"github.com/berth-registry/berth/storage/inmemory"
	"github.com/berth-registry/berth/storage/store"
)

// TestSummary: a repository's summary follows its tags through pushes,
// retags, tag and manifest deletes and retention's conditional deletes, and
// RefreshSummary repairs one that missed a change.
func TestSummary(t *testing.T) {
	ctx := context.Background()
	d := inmemory.New()
	s := store.New(d, store.Options{})
	push := func(tags ...string) digest.Digest {
		t.Helper()
		blob := randomBytes(t, 100)
		bd := pushBlob(t, s, "app", blob)
		cd := pushBlob(t, s, "app", []byte(`{}`))
		res, err := s.PutManifest(ctx, "app", tags, "", "application/vnd.oci.image.manifest.v1+json", imageManifest(cd, bd, 2, len(blob), ""))
		if err != nil {
			t.Fatal(err)
		}
		return res.Digest
	}
	want := func(what string, tags map[string]digest.Digest) {
		t.Helper()
		sum, ok, err := s.ReadSummary(ctx, "app")
		if err != nil || !ok {
			t.Fatalf("%s: ReadSummary = %v, %v", what, ok, err)
		}
		got := map[string]digest.Digest{}
		for name, tg := range sum.Tags {
			got[name] = tg.Digest
			if tg.Pushed.IsZero() {
				t.Errorf("%s: tag %s has no push time", what, name)
			}
		}
		if len(got) != len(tags) {
			t.Errorf("%s: summary tags %v, want %v", what, got, tags)
		}
		for name, dg := range tags {
			if got[name] != dg {
				t.Errorf("%s: summary tag %s = %s, want %s", what, name, got[name], dg)
			}
		}
	}
	if _, ok, err := s.ReadSummary(ctx, "app"); ok || err != nil {
		t.Fatalf("ReadSummary of a new repository = %v, %v; want none", ok, err)
	}
	a := push("v1", "latest")
	want("after the first push", map[string]digest.Digest{"v1": a, "latest": a})
	b := push("v2", "latest")
	want("after a retag", map[string]digest.Digest{"v1": a, "v2": b, "latest": b})
	if err := s.DeleteTag(ctx, "app", "v2"); err != nil {
		t.Fatal(err)
	}
	want("after a tag delete", map[string]digest.Digest{"v1": a, "latest": b})
	if err := s.DeleteManifest(ctx, "app", b); err != nil {
		t.Fatal(err)
	}
	want("after a manifest delete", map[string]digest.Digest{"v1": a})
	infos, err := s.TagInfos(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s.DeleteTagIf(ctx, "app", "v1", a, infos[0].ModTime); !ok || err != nil {
		t.Fatalf("DeleteTagIf = %v, %v", ok, err)
	}
	want("after retention", map[string]digest.Digest{})

	// A change the summary missed (another process's, racing): the
	// summary is rebuilt from the links.
	c := push("v3")
	if err := storage.WriteAll(ctx, d, "/docker/registry/v2/repositories/app/_berth/summary", []byte(`{"tags":{}}`)); err != nil {
		t.Fatal(err)
	}
	sum, infos, err := s.RefreshSummary(ctx, "app")
	if err != nil || len(infos) != 1 || sum.Tags["v3"].Digest != c {
		t.Fatalf("RefreshSummary = %+v, %d infos, %v", sum, len(infos), err)
	}
	want("after a refresh", map[string]digest.Digest{"v3": c})
	// A missing summary is rebuilt on the next change.
	if err := d.Delete(ctx, "/docker/registry/v2/repositories/app/_berth"); err != nil {
		t.Fatal(err)
	}
	e := push("v4")
	want("rebuilt on a change", map[string]digest.Digest{"v3": c, "v4": e})
}

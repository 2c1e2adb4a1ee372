package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

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

// TestSummaryFacts: the summary keeps, per tagged manifest, what a listing
// shows (sizes, platform, created, referrers by artifact type), follows
// referrers pushed and deleted, drops the facts of untagged manifests, and
// a summary stored without facts gets them on a refresh.
func TestSummaryFacts(t *testing.T) {
	ctx := context.Background()
	d := inmemory.New()
	s := store.New(d, store.Options{})
	layer := randomBytes(t, 1000)
	ld := pushBlob(t, s, "app", layer)
	config := []byte(`{"created":"2026-01-02T03:04:05Z","architecture":"arm64","os":"linux","variant":"v8","rootfs":{"type":"layers","diff_ids":[]}}`)
	cd := pushBlob(t, s, "app", config)
	body := imageManifest(cd, ld, len(config), len(layer), "")
	res, err := s.PutManifest(ctx, "app", []string{"v1"}, "", "application/vnd.oci.image.manifest.v1+json", body)
	if err != nil {
		t.Fatal(err)
	}
	img := res.Digest
	facts := func(what string) store.ManifestFacts {
		t.Helper()
		sum, ok, err := s.ReadSummary(ctx, "app")
		if err != nil || !ok {
			t.Fatalf("%s: ReadSummary = %v, %v", what, ok, err)
		}
		f, ok := sum.Manifests[img]
		if !ok {
			t.Fatalf("%s: no facts of %s in %+v", what, img, sum)
		}
		return f
	}
	f := facts("after the push")
	if want := int64(len(body) + len(config) + len(layer)); f.Bytes() != want {
		t.Errorf("Bytes = %d, want %d (%v)", f.Bytes(), want, f.Blobs)
	}
	if len(f.Platforms) != 1 || f.Platforms[0] != "linux/arm64/v8" {
		t.Errorf("Platforms = %v", f.Platforms)
	}
	if !f.Created.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("Created = %v", f.Created)
	}
	if len(f.Referrers) != 0 {
		t.Errorf("Referrers = %v before any was pushed", f.Referrers)
	}

	// A signature referring to it.
	empty := pushBlob(t, s, "app", []byte(`{}`))
	sig := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"artifactType":"application/vnd.dev.cosign.artifact.sig.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"%s","size":2},"layers":[],`+
		`"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%d}}`, empty, img, len(body)))
	sres, err := s.PutManifest(ctx, "app", nil, "", "application/vnd.oci.image.manifest.v1+json", sig)
	if err != nil {
		t.Fatal(err)
	}
	if f := facts("after a referrer"); f.Referrers[sres.Digest] != "application/vnd.dev.cosign.artifact.sig.v1+json" {
		t.Errorf("Referrers = %v, want the signature", f.Referrers)
	}
	if err := s.DeleteManifest(ctx, "app", sres.Digest); err != nil {
		t.Fatal(err)
	}
	if f := facts("after the referrer's delete"); len(f.Referrers) != 0 {
		t.Errorf("Referrers = %v after the delete", f.Referrers)
	}

	// A summary stored before facts were kept gets them on a refresh.
	if err := storage.WriteAll(ctx, d, "/docker/registry/v2/repositories/app/_berth/summary",
		[]byte(fmt.Sprintf(`{"tags":{"v1":{"digest":%q,"pushed":"2026-01-01T00:00:00Z"}}}`, img))); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.RefreshSummary(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if f := facts("after a refresh"); f.Bytes() == 0 {
		t.Errorf("refreshed facts %+v", f)
	}

	// Untagged: its facts go with the tag.
	if err := s.DeleteTag(ctx, "app", "v1"); err != nil {
		t.Fatal(err)
	}
	sum, _, err := s.ReadSummary(ctx, "app")
	if err != nil || len(sum.Manifests) != 0 {
		t.Errorf("after the untag: manifests %v, %v", sum.Manifests, err)
	}
}

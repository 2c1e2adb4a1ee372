package gc

import (
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// TestCacheExpiry: in a cached repository a manifest goes once nobody
// pulled it for ExpireAfter, with its tags and the blobs only it needs; an
// index pulled lately keeps its children, a pull by digest keeps an
// untagged manifest, and a blob a local image shares stays.
func TestCacheExpiry(t *testing.T) {
	now := retentionNow
	ago := func(days int) time.Time { return now.Add(-time.Duration(days) * 24 * time.Hour) }
	shared, onlyOld, onlyNew, childBlob := digest.FromString("shared"), digest.FromString("only-old"),
		digest.FromString("only-new"), digest.FromString("child-blob")
	oldM, newM, index, child, byDigest := digest.FromString("old"), digest.FromString("new"),
		digest.FromString("index"), digest.FromString("child"), digest.FromString("by-digest")
	localM := digest.FromString("local")

	cached := Repository{
		Manifests: map[digest.Digest]Manifest{
			oldM:     {Blobs: []digest.Digest{shared, onlyOld}, ModTime: ago(40)},
			newM:     {Blobs: []digest.Digest{onlyNew}, ModTime: ago(40)},
			index:    {Children: []digest.Digest{child}, ModTime: ago(40)},
			child:    {Blobs: []digest.Digest{childBlob}, ModTime: ago(40)},
			byDigest: {ModTime: ago(40)},
		},
		Tags: map[string]Tag{
			"old": {Digest: oldM, Pushed: ago(40)}, "new": {Digest: newM, Pushed: ago(40)},
			"multi": {Digest: index, Pushed: ago(40)},
		},
		Layers: map[digest.Digest]time.Time{shared: ago(40), onlyOld: ago(40), onlyNew: ago(40), childBlob: ago(40)},
		Pulled: map[digest.Digest]time.Time{oldM: ago(31), newM: ago(2), index: ago(1), byDigest: ago(3)},
	}
	local := Repository{
		Manifests: map[digest.Digest]Manifest{localM: {Blobs: []digest.Digest{shared}, ModTime: ago(40)}},
		Tags:      map[string]Tag{"v1": {Digest: localM, Pushed: ago(40)}},
		Layers:    map[digest.Digest]time.Time{shared: ago(40)},
	}
	blobs := map[digest.Digest]Blob{}
	for _, d := range []digest.Digest{shared, onlyOld, onlyNew, childBlob, oldM, newM, index, child, byDigest, localM} {
		blobs[d] = Blob{Size: 10, ModTime: ago(40)}
	}
	g := Graph{Repositories: map[string]Repository{"hub.example/library/app": cached, "team/app": local}, Blobs: blobs}
	rules := []CacheRule{{Prefix: "hub.example", ExpireAfter: 30 * 24 * time.Hour}}

	inUse, tags := ApplyCacheExpiry(g, rules, now)
	if len(tags) != 1 || tags[0].Tag != "old" || tags[0].Repository != "hub.example/library/app" {
		t.Fatalf("expired tags = %+v, want only hub.example/library/app:old", tags)
	}
	for _, d := range []digest.Digest{newM, index, child, byDigest} {
		if !inUse["hub.example/library/app"][d] {
			t.Errorf("%s is not in use, want it kept", d)
		}
	}
	if inUse["hub.example/library/app"][oldM] {
		t.Errorf("the manifest pulled 31 days ago is in use")
	}
	if _, ok := inUse["team/app"]; ok {
		t.Errorf("a local repository got cache roots")
	}

	g = withoutTags(g, tags)
	// DeleteUntagged false: local untagged manifests stay, cached ones do not.
	marks := Mark(g, MarkOptions{InUse: inUse})
	p := Sweep(g, marks, now.Add(-time.Hour))
	var gone []digest.Digest
	for _, m := range p.Manifests {
		gone = append(gone, m.Digest)
	}
	if !slices.Equal(gone, []digest.Digest{oldM}) {
		t.Errorf("manifests swept = %v, want only %s", gone, oldM)
	}
	for _, d := range []digest.Digest{shared, onlyNew, childBlob, localM} {
		if slices.Contains(p.Blobs, d) {
			t.Errorf("blob %s swept, want it kept", d)
		}
	}
	for _, d := range []digest.Digest{onlyOld, oldM} {
		if !slices.Contains(p.Blobs, d) {
			t.Errorf("blob %s kept, want it swept", d)
		}
	}

	// Usage splits local and cached bytes, the expired manifest excluded.
	u := Usage(g, UsageOptions{Caches: rules, Now: now, Cutoff: now.Add(-time.Hour)})
	if u.Total.CacheBytes != 60 || u.Total.LocalBytes != 20 {
		t.Errorf("usage: cache %d bytes, local %d; want 60 (6 blobs) and 20 (2 blobs)", u.Total.CacheBytes, u.Total.LocalBytes)
	}
	for _, r := range u.Repositories {
		if want := map[string]string{"hub.example/library/app": "hub.example", "team/app": ""}[r.Name]; r.Cache != want {
			t.Errorf("usage of %s: cache %q, want %q", r.Name, r.Cache, want)
		}
	}

	// ExpireAfter 0 keeps everything, as without a rule.
	inUse, tags = ApplyCacheExpiry(g, []CacheRule{{Prefix: "hub.example"}}, now)
	if len(inUse) != 0 || len(tags) != 0 {
		t.Errorf("ExpireAfter 0: in use %v, tags %v; want nothing", inUse, tags)
	}
}

// TestCacheMaxBytes: over its MaxBytes, a cache loses its least recently
// pulled images first, until what is left fits; a blob the survivors share
// with a dropped image counts once and stays.
func TestCacheMaxBytes(t *testing.T) {
	now := retentionNow
	ago := func(h int) time.Time { return now.Add(-time.Duration(h) * time.Hour) }
	shared := digest.FromString("shared")
	repo := Repository{Manifests: map[digest.Digest]Manifest{}, Tags: map[string]Tag{}, Pulled: map[digest.Digest]time.Time{}}
	blobs := map[digest.Digest]Blob{shared: {Size: 100}}
	var images []digest.Digest
	// a (pulled 30h ago), b (20h), c (10h): 10-byte bodies, a 100-byte
	// layer of their own and the shared 100-byte layer.
	for i, name := range []string{"a", "b", "c"} {
		d, layer := digest.FromString(name), digest.FromString(name+"-layer")
		repo.Manifests[d] = Manifest{Blobs: []digest.Digest{shared, layer}, ModTime: ago(40)}
		repo.Tags[name] = Tag{Digest: d, Pushed: ago(40)}
		repo.Pulled[d] = ago(30 - 10*i)
		blobs[d], blobs[layer] = Blob{Size: 10}, Blob{Size: 100}
		images = append(images, d)
	}
	g := Graph{Repositories: map[string]Repository{"hub.example/lib/x": repo}, Blobs: blobs}

	for _, tc := range []struct {
		max  int64
		gone []string
	}{
		{max: 430, gone: nil},           // 100 shared + 3 × 110 fits
		{max: 429, gone: []string{"a"}}, // one over: the oldest goes
		{max: 320, gone: []string{"a"}}, // 100 + 2 × 110
		{max: 319, gone: []string{"a", "b"}},
		{max: 1, gone: []string{"a", "b", "c"}},
	} {
		live, tags := ApplyCacheExpiry(g, []CacheRule{{Prefix: "hub.example", MaxBytes: tc.max}}, now)
		var gone []string
		for _, tg := range tags {
			gone = append(gone, tg.Tag)
		}
		if !slices.Equal(gone, tc.gone) {
			t.Errorf("MaxBytes %d: tags deleted %v, want %v", tc.max, gone, tc.gone)
		}
		for i, d := range images {
			want := !slices.Contains(tc.gone, []string{"a", "b", "c"}[i])
			if live["hub.example/lib/x"][d] != want {
				t.Errorf("MaxBytes %d: image %d in use %v, want %v", tc.max, i, !want, want)
			}
		}
	}
}

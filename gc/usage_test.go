package gc

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// usageFixture builds graphs for the Usage tests. Blob n has the size given
// to it, so that each expected sum names its parts.
type usageFixture struct {
	old, cutoff, recent time.Time
	sizes               map[string]int64
}

func newUsageFixture() *usageFixture {
	return &usageFixture{old: time.Unix(1000, 0), cutoff: time.Unix(2000, 0), recent: time.Unix(3000, 0), sizes: map[string]int64{}}
}

func ud(name string) digest.Digest { return digest.FromString("usage " + name) }

func uds(names ...string) []digest.Digest {
	var out []digest.Digest
	for _, n := range names {
		out = append(out, ud(n))
	}
	return out
}

// blobs stores each name with its size, all modified before the cutoff.
func (f *usageFixture) blobs(sizes map[string]int64) map[digest.Digest]Blob {
	m := map[digest.Digest]Blob{}
	for n, s := range sizes {
		f.sizes[n] = s
		m[ud(n)] = Blob{Size: s, ModTime: f.old}
	}
	return m
}

// size is the sum of the sizes of names.
func (f *usageFixture) size(names ...string) int64 {
	var n int64
	for _, name := range names {
		s, ok := f.sizes[name]
		if !ok {
			panic("no blob " + name)
		}
		n += s
	}
	return n
}

func (f *usageFixture) links(names ...string) map[digest.Digest]time.Time {
	m := map[digest.Digest]time.Time{}
	for _, n := range names {
		m[ud(n)] = f.old
	}
	return m
}

func tags(kv ...string) map[string]Tag {
	m := map[string]Tag{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = Tag{Digest: ud(kv[i+1])}
	}
	return m
}

// checkAgainstSweep: listing every repository, the reclaimable total is
// what Sweep plans, each blob once.
func checkAgainstSweep(t *testing.T, g Graph, opts UsageOptions) {
	t.Helper()
	opts.Repositories = ""
	rep := Usage(g, opts)
	plan := Sweep(g, Mark(g, MarkOptions{DeleteUntagged: opts.DeleteUntagged, Cutoff: opts.Cutoff}), opts.Cutoff)
	if got := rep.Total.ReclaimableBytes + rep.Total.UnlinkedReclaimableBytes; got != plan.Bytes {
		t.Errorf("reclaimable %d + unlinked %d = %d, Sweep plans %d bytes",
			rep.Total.ReclaimableBytes, rep.Total.UnlinkedReclaimableBytes, got, plan.Bytes)
	}
}

func TestUsageSharedLayer(t *testing.T) {
	f := newUsageFixture()
	g := Graph{
		Repositories: map[string]Repository{
			"a": {Manifests: map[digest.Digest]Manifest{ud("m1"): {Blobs: uds("c1", "shared")}},
				Tags: tags("v1", "m1"), Layers: f.links("c1", "shared")},
			"b": {Manifests: map[digest.Digest]Manifest{ud("m2"): {Blobs: uds("c2", "shared")}},
				Tags: tags("v1", "m2", "latest", "m2"), Layers: f.links("c2", "shared")},
		},
		Blobs: f.blobs(map[string]int64{"m1": 1, "c1": 2, "m2": 4, "c2": 8, "shared": 1000}),
	}
	opts := UsageOptions{Cutoff: f.cutoff}
	got := Usage(g, opts)
	want := UsageReport{
		Cutoff: f.cutoff,
		Repositories: []RepositoryUsage{
			{Name: "a", Bytes: f.size("m1", "c1", "shared"), SharedBytes: f.size("shared"), Manifests: 1, Tags: 1, Blobs: 3},
			{Name: "b", Bytes: f.size("m2", "c2", "shared"), SharedBytes: f.size("shared"), Manifests: 1, Tags: 2, Blobs: 3},
		},
		Total: UsageTotal{Repositories: 2, Bytes: f.size("m1", "c1", "m2", "c2", "shared"), Blobs: 5,
			SharedBytes: f.size("shared"), Manifests: 2, Tags: 3, LocalBytes: f.size("m1", "c1", "m2", "c2", "shared")},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Usage:\n got %+v\nwant %+v", got, want)
	}
	checkAgainstSweep(t, g, opts)
}

func TestUsageUntagged(t *testing.T) {
	f := newUsageFixture()
	g := Graph{
		Repositories: map[string]Repository{
			"a": {Manifests: map[digest.Digest]Manifest{
				ud("m1"): {Blobs: uds("c1", "l1")},
				ud("m0"): {Blobs: uds("c0", "l0", "l1"), ModTime: time.Unix(800, 0)}, // untagged, shares l1 with m1
			}, Tags: tags("v1", "m1"), Layers: f.links("c1", "l1", "c0", "l0", "recent")},
		},
		Blobs: f.blobs(map[string]int64{"m1": 1, "c1": 2, "l1": 4, "m0": 8, "c0": 16, "l0": 32, "recent": 64}),
	}
	// A layer pushed after the cutoff, which no manifest references yet:
	// neither used nor reclaimable.
	g.Blobs[ud("recent")] = Blob{Size: f.size("recent"), ModTime: f.recent}

	for _, tc := range []struct {
		name string
		opts UsageOptions
		want RepositoryUsage
	}{
		{"untagged kept", UsageOptions{Cutoff: f.cutoff},
			RepositoryUsage{Name: "a", Bytes: f.size("m1", "c1", "l1", "m0", "c0", "l0"), Manifests: 2, Tags: 1, Blobs: 6}},
		{"untagged deleted", UsageOptions{Cutoff: f.cutoff, DeleteUntagged: true},
			RepositoryUsage{Name: "a", Bytes: f.size("m1", "c1", "l1"), ReclaimableBytes: f.size("m0", "c0", "l0"),
				Manifests: 1, Tags: 1, Blobs: 3}},
		{"untagged deleted, blobs newer than the cutoff", UsageOptions{Cutoff: f.old, DeleteUntagged: true},
			RepositoryUsage{Name: "a", Bytes: f.size("m1", "c1", "l1"), Manifests: 1, Tags: 1, Blobs: 3}},
		// A revision pushed after the cutoff is too recent to judge: Mark
		// keeps it, untagged or not.
		{"untagged deleted, revision newer than the cutoff", UsageOptions{Cutoff: time.Unix(500, 0), DeleteUntagged: true},
			RepositoryUsage{Name: "a", Bytes: f.size("m1", "c1", "l1", "m0", "c0", "l0"), Manifests: 2, Tags: 1, Blobs: 6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Usage(g, tc.opts)
			if len(got.Repositories) != 1 || got.Repositories[0] != tc.want {
				t.Fatalf("repositories %+v, want [%+v]", got.Repositories, tc.want)
			}
			if got.Total.Bytes != tc.want.Bytes || got.Total.ReclaimableBytes != tc.want.ReclaimableBytes ||
				got.Total.SharedBytes != 0 || got.Total.UnlinkedReclaimableBytes != 0 {
				t.Errorf("total %+v does not match the only repository %+v", got.Total, tc.want)
			}
			if got.DeleteUntagged != tc.opts.DeleteUntagged || !got.Cutoff.Equal(tc.opts.Cutoff) {
				t.Errorf("report options %v %v, want %v %v", got.DeleteUntagged, got.Cutoff, tc.opts.DeleteUntagged, tc.opts.Cutoff)
			}
			checkAgainstSweep(t, g, tc.opts)
		})
	}
}

func TestUsageIndex(t *testing.T) {
	f := newUsageFixture()
	g := Graph{
		Repositories: map[string]Repository{
			"multi": {Manifests: map[digest.Digest]Manifest{
				ud("idx"):   {Children: uds("amd64", "arm64")},
				ud("amd64"): {Blobs: uds("c-amd64", "l-amd64", "l-common")},
				ud("arm64"): {Blobs: uds("c-arm64", "l-arm64", "l-common")},
				ud("old"):   {Blobs: uds("c-old")}, // untagged, in no index
			}, Tags: tags("v1", "idx"), Layers: f.links("c-amd64", "l-amd64", "c-arm64", "l-arm64", "l-common", "c-old")},
		},
		Blobs: f.blobs(map[string]int64{"idx": 1, "amd64": 2, "arm64": 4, "c-amd64": 8, "l-amd64": 16,
			"c-arm64": 32, "l-arm64": 64, "l-common": 128, "old": 256, "c-old": 512}),
	}
	opts := UsageOptions{Cutoff: f.cutoff, DeleteUntagged: true}
	got := Usage(g, opts)
	want := RepositoryUsage{Name: "multi",
		Bytes:            f.size("idx", "amd64", "arm64", "c-amd64", "l-amd64", "c-arm64", "l-arm64", "l-common"),
		ReclaimableBytes: f.size("old", "c-old"),
		Manifests:        3, Tags: 1, Blobs: 8}
	if len(got.Repositories) != 1 || got.Repositories[0] != want {
		t.Fatalf("repositories %+v, want [%+v]", got.Repositories, want)
	}
	checkAgainstSweep(t, g, opts)
}

func TestUsageGlob(t *testing.T) {
	f := newUsageFixture()
	image := func(m, c string, layers ...string) Repository {
		return Repository{Manifests: map[digest.Digest]Manifest{ud(m): {Blobs: uds(append([]string{c}, layers...)...)}},
			Tags: tags("v1", m), Layers: f.links(append([]string{c}, layers...)...)}
	}
	dropped := image("m-dropped", "c-dropped")
	g := Graph{
		Repositories: map[string]Repository{
			"team/app":     image("m-app", "c-app", "base", "app"),
			"team/db":      image("m-db", "c-db", "base", "db"),
			"team/app/ci":  image("m-ci", "c-ci", "ci"),
			"other":        image("m-other", "c-other", "app"),
			"team/dropped": {Manifests: map[digest.Digest]Manifest{}, Tags: map[string]Tag{}, Layers: dropped.Layers},
		},
		// team/dropped's manifest was deleted: its body is linked nowhere,
		// its config is still layer-linked there.
		Blobs: f.blobs(map[string]int64{"m-app": 1, "c-app": 2, "base": 4, "app": 8, "m-db": 16, "c-db": 32, "db": 64,
			"m-ci": 128, "c-ci": 256, "ci": 512, "m-other": 1024, "c-other": 2048,
			"m-dropped": 4096, "c-dropped": 8192}),
	}
	opts := UsageOptions{Cutoff: f.cutoff, Repositories: "team/*"}
	got := Usage(g, opts)
	want := UsageReport{
		Cutoff: f.cutoff,
		Repositories: []RepositoryUsage{
			// app is shared with "other", which the glob does not list.
			{Name: "team/app", Bytes: f.size("m-app", "c-app", "base", "app"), SharedBytes: f.size("base", "app"),
				Manifests: 1, Tags: 1, Blobs: 4},
			{Name: "team/db", Bytes: f.size("m-db", "c-db", "base", "db"), SharedBytes: f.size("base"),
				Manifests: 1, Tags: 1, Blobs: 4},
			{Name: "team/dropped", ReclaimableBytes: f.size("c-dropped")},
		},
		Total: UsageTotal{Repositories: 3,
			Bytes: f.size("m-app", "c-app", "base", "app", "m-db", "c-db", "db"), Blobs: 7,
			SharedBytes: f.size("base", "app"), ReclaimableBytes: f.size("c-dropped"),
			UnlinkedReclaimableBytes: f.size("m-dropped"), Manifests: 2, Tags: 2,
			LocalBytes: f.size("m-app", "c-app", "base", "app", "m-db", "c-db", "db")},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Usage team/*:\n got %+v\nwant %+v", got, want)
	}

	if got := Usage(g, UsageOptions{Cutoff: f.cutoff, Repositories: "team/**"}); got.Total.Repositories != 4 {
		t.Errorf("team/** listed %d repositories, want 4: %+v", got.Total.Repositories, got.Repositories)
	}
	if got := Usage(g, UsageOptions{Cutoff: f.cutoff, Repositories: "nothing"}); got.Repositories == nil || len(got.Repositories) != 0 ||
		got.Total.Bytes != 0 || got.Total.UnlinkedReclaimableBytes != f.size("m-dropped") {
		t.Errorf("a glob matching nothing: %+v", got)
	}
	if got := Usage(g, UsageOptions{Cutoff: f.cutoff, Repositories: "team/["}); len(got.Repositories) != 0 {
		t.Errorf("an invalid glob listed %+v", got.Repositories)
	}
	all := Usage(g, UsageOptions{Cutoff: f.cutoff})
	if all.Total.Repositories != 5 || all.Total.Bytes != f.size("m-app", "c-app", "base", "app", "m-db", "c-db", "db",
		"m-ci", "c-ci", "ci", "m-other", "c-other") {
		t.Errorf("every repository: total %+v", all.Total)
	}
	checkAgainstSweep(t, g, opts)
}

// TestUsageJSON pins the field names "berth du --json" and the API print.
func TestUsageJSON(t *testing.T) {
	rep := UsageReport{
		Cutoff:       time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		Repositories: []RepositoryUsage{{Name: "a", Bytes: 1, SharedBytes: 2, ReclaimableBytes: 3, Manifests: 4, Tags: 5, Blobs: 6}},
		Total: UsageTotal{Repositories: 1, Bytes: 7, Blobs: 8, SharedBytes: 9, ReclaimableBytes: 10,
			UnlinkedReclaimableBytes: 11, Manifests: 12, Tags: 13, LocalBytes: 14, CacheBytes: 15},
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"cutoff":"2025-01-02T03:04:05Z","deleteUntagged":false,` +
		`"repositories":[{"name":"a","bytes":1,"sharedBytes":2,"reclaimableBytes":3,"manifests":4,"tags":5,"blobs":6}],` +
		`"total":{"repositories":1,"bytes":7,"blobs":8,"sharedBytes":9,"reclaimableBytes":10,` +
		`"unlinkedReclaimableBytes":11,"manifests":12,"tags":13,"localBytes":14,"cacheBytes":15}}`
	if string(b) != want {
		t.Errorf("JSON:\n got %s\nwant %s", b, want)
	}
	empty, err := json.Marshal(Usage(Graph{}, UsageOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	if want := `"repositories":[]`; !json.Valid(empty) || !strings.Contains(string(empty), want) {
		t.Errorf("empty graph: %s lacks %s", empty, want)
	}
}

package gc

import (
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func dg(s string) digest.Digest { return digest.FromString(s) }

func TestMarkAndSweep(t *testing.T) {
	old := time.Unix(1000, 0)
	cutoff := time.Unix(2000, 0)
	recent := time.Unix(3000, 0)
	blobs := func(names ...string) map[digest.Digest]Blob {
		m := map[digest.Digest]Blob{}
		for _, n := range names {
			m[dg(n)] = Blob{Size: int64(len(n)), ModTime: old}
		}
		return m
	}
	links := func(names ...string) map[digest.Digest]time.Time {
		m := map[digest.Digest]time.Time{}
		for _, n := range names {
			m[dg(n)] = old
		}
		return m
	}
	tests := []struct {
		name      string
		g         Graph
		opts      MarkOptions
		wantBlobs []string
		wantLinks []LayerLink
	}{
		{
			name: "shared layer between two images is kept",
			g: Graph{
				Repositories: map[string]Repository{
					"a": {Manifests: map[digest.Digest]Manifest{dg("m1"): {Blobs: []digest.Digest{dg("c1"), dg("shared")}}},
						Tags: map[string]Tag{"v1": {Digest: dg("m1")}}, Layers: links("c1", "shared")},
					"b": {Manifests: map[digest.Digest]Manifest{dg("m2"): {Blobs: []digest.Digest{dg("c2"), dg("shared")}}},
						Layers: links("c2", "shared")},
				},
				Blobs: blobs("m1", "m2", "c1", "c2", "shared"),
			},
		},
		{
			name: "deleted manifest's exclusive blobs are swept, shared kept",
			g: Graph{
				Repositories: map[string]Repository{
					"a": {Manifests: map[digest.Digest]Manifest{dg("m1"): {Blobs: []digest.Digest{dg("c1"), dg("shared")}}},
						Layers: links("c1", "shared", "c2", "only2")},
				},
				// m2 (config c2, layer only2, shared) was deleted: its bytes remain.
				Blobs: blobs("m1", "c1", "shared", "m2", "c2", "only2"),
			},
			wantBlobs: []string{"m2", "c2", "only2"},
			wantLinks: []LayerLink{{"a", dg("c2")}, {"a", dg("only2")}},
		},
		{
			name: "index keeps its children, nested too",
			g: Graph{
				Repositories: map[string]Repository{
					"a": {Manifests: map[digest.Digest]Manifest{
						dg("idx"):   {Children: []digest.Digest{dg("inner")}},
						dg("inner"): {Children: []digest.Digest{dg("amd64")}},
						dg("amd64"): {Blobs: []digest.Digest{dg("c"), dg("l")}},
					}, Tags: map[string]Tag{"v1": {Digest: dg("idx")}}, Layers: links("c", "l")},
				},
				Blobs: blobs("idx", "inner", "amd64", "c", "l"),
			},
			opts: MarkOptions{DeleteUntagged: true},
		},
		{
			name: "referrer is kept while its subject is, collected with it",
			g: Graph{
				Repositories: map[string]Repository{
					"a": {Manifests: map[digest.Digest]Manifest{
						dg("img"):  {Blobs: []digest.Digest{dg("c")}},
						dg("sig"):  {Blobs: []digest.Digest{dg("sigblob")}, Subject: dg("img")},
						dg("sig2"): {Blobs: []digest.Digest{dg("sig2blob")}, Subject: dg("gone")},
					}, Tags: map[string]Tag{"v1": {Digest: dg("img")}}, Layers: links("c", "sigblob", "sig2blob")},
				},
				Blobs: blobs("img", "sig", "sig2", "c", "sigblob", "sig2blob"),
			},
			opts:      MarkOptions{DeleteUntagged: true},
			wantBlobs: []string{"sig2", "sig2blob"},
			wantLinks: []LayerLink{{"a", dg("sig2blob")}},
		},
		{
			name: "untagged manifest kept by default",
			g: Graph{
				Repositories: map[string]Repository{
					"a": {Manifests: map[digest.Digest]Manifest{dg("untagged"): {Blobs: []digest.Digest{dg("c")}}},
						Layers: links("c")},
				},
				Blobs: blobs("untagged", "c"),
			},
		},
		{
			name: "untagged manifest collected with DeleteUntagged",
			g: Graph{
				Repositories: map[string]Repository{
					"a": {Manifests: map[digest.Digest]Manifest{dg("untagged"): {Blobs: []digest.Digest{dg("c")}}},
						Layers: links("c")},
				},
				Blobs: blobs("untagged", "c"),
			},
			opts:      MarkOptions{DeleteUntagged: true},
			wantBlobs: []string{"untagged", "c"},
			wantLinks: []LayerLink{{"a", dg("c")}},
		},
		{
			name: "a blob linked in one repository and used by another: bytes kept, unused link removed",
			g: Graph{
				Repositories: map[string]Repository{
					"a": {Manifests: map[digest.Digest]Manifest{dg("m"): {Blobs: []digest.Digest{dg("l")}}}, Layers: links("l")},
					"b": {Layers: links("l")},
				},
				Blobs: blobs("m", "l"),
			},
			wantLinks: []LayerLink{{"b", dg("l")}},
		},
		{
			name: "recent files are never planned, referenced or not",
			g: Graph{
				Repositories: map[string]Repository{
					"a": {Layers: map[digest.Digest]time.Time{dg("new"): recent, dg("old"): old}},
				},
				Blobs: map[digest.Digest]Blob{dg("new"): {ModTime: recent}, dg("old"): {ModTime: old}, dg("edge"): {ModTime: cutoff}},
			},
			wantBlobs: []string{"old"},
			wantLinks: []LayerLink{{"a", dg("old")}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Sweep(tt.g, Mark(tt.g, tt.opts), cutoff)
			var want []digest.Digest
			var bytes int64
			for _, n := range tt.wantBlobs {
				want = append(want, dg(n))
				bytes += tt.g.Blobs[dg(n)].Size
			}
			slices.Sort(want)
			if !slices.Equal(p.Blobs, want) {
				t.Errorf("blobs = %v, want %v", p.Blobs, want)
			}
			if p.Bytes != bytes || p.Kept != len(tt.g.Blobs)-len(want) {
				t.Errorf("bytes %d kept %d, want %d and %d", p.Bytes, p.Kept, bytes, len(tt.g.Blobs)-len(want))
			}
			wantLinks := slices.Clone(tt.wantLinks)
			slices.SortFunc(wantLinks, func(a, b LayerLink) int {
				if a.Repository != b.Repository {
					return map[bool]int{true: -1, false: 1}[a.Repository < b.Repository]
				}
				return map[bool]int{true: -1, false: 1}[a.Digest < b.Digest]
			})
			if !slices.Equal(p.LayerLinks, wantLinks) {
				t.Errorf("links = %v, want %v", p.LayerLinks, wantLinks)
			}
		})
	}
}

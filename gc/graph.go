package gc

import (
	"cmp"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"
)

// Graph is what the collector knows of a registry: every repository and
// every stored blob. Run reads it from a store; tests build it by hand.
type Graph struct {
	Repositories map[string]Repository
	Blobs        map[digest.Digest]Blob // the shared blob store: blob and manifest bytes
}

// Repository is one repository's manifests, tags and layer links.
type Repository struct {
	Manifests map[digest.Digest]Manifest // every revision
	Tags      map[string]Tag
	Layers    map[digest.Digest]time.Time // layer links and their ModTime
}

// Tag is where a tag points and when it was last pushed (the ModTime of its
// current link).
type Tag struct {
	Digest digest.Digest
	Pushed time.Time
}

// Manifest is what a manifest references.
type Manifest struct {
	Blobs    []digest.Digest // config and layers
	Children []digest.Digest // index entries
	Subject  digest.Digest   // empty if none
	ModTime  time.Time       // of the revision link: when it was (last) pushed
}

// Blob is a stored blob.
type Blob struct {
	Size    int64
	ModTime time.Time
}

// Marks is what Mark found referenced.
type Marks struct {
	// Blobs are the digests whose bytes must stay (manifest bodies included).
	Blobs map[digest.Digest]bool
	// Repositories maps each repository to the digests its kept manifests
	// mark: its layer links to these stay.
	Repositories map[string]map[digest.Digest]bool
}

// MarkOptions tune Mark.
type MarkOptions struct {
	// DeleteUntagged makes only tagged manifests roots: an untagged manifest
	// is kept only as a child of a kept index or as a referrer of a kept
	// subject. Run does not offer it yet (it would have to remove revision
	// links under the same interlock as blobs).
	DeleteUntagged bool
}

// Mark marks everything the roots of g reach.
func Mark(g Graph, opts MarkOptions) Marks {
	m := Marks{Blobs: map[digest.Digest]bool{}, Repositories: map[string]map[digest.Digest]bool{}}
	for name, r := range g.Repositories {
		kept := map[digest.Digest]bool{}
		var queue []digest.Digest
		keep := func(d digest.Digest) {
			if !kept[d] {
				kept[d] = true
				queue = append(queue, d)
			}
		}
		for _, t := range r.Tags {
			keep(t.Digest)
		}
		if !opts.DeleteUntagged {
			for d := range r.Manifests {
				keep(d)
			}
		}
		// Referrers by subject, so that keeping a subject keeps them.
		referrers := map[digest.Digest][]digest.Digest{}
		for d, mf := range r.Manifests {
			if mf.Subject != "" {
				referrers[mf.Subject] = append(referrers[mf.Subject], d)
			}
		}
		for len(queue) > 0 {
			d := queue[len(queue)-1]
			queue = queue[:len(queue)-1]
			for _, c := range r.Manifests[d].Children {
				keep(c)
			}
			for _, ref := range referrers[d] {
				keep(ref)
			}
		}
		marked := map[digest.Digest]bool{}
		for d := range kept {
			marked[d] = true
			for _, b := range r.Manifests[d].Blobs {
				marked[b] = true
			}
		}
		for d := range marked {
			m.Blobs[d] = true
		}
		m.Repositories[name] = marked
	}
	return m
}

// Plan is what a sweep deletes.
type Plan struct {
	Blobs      []digest.Digest // unreferenced blobs older than the cutoff, sorted
	Bytes      int64           // their total size
	LayerLinks []LayerLink     // unreferenced layer links older than the cutoff, sorted
	Kept       int             // blobs that stay
}

// LayerLink names the link of a blob into a repository.
type LayerLink struct {
	Repository string
	Digest     digest.Digest
}

// Sweep plans the deletion of what m left unmarked in g and whose ModTime is
// before cutoff. The store checks the ModTime again when it deletes.
func Sweep(g Graph, m Marks, cutoff time.Time) Plan {
	var p Plan
	for d, b := range g.Blobs {
		if m.Blobs[d] || !b.ModTime.Before(cutoff) {
			p.Kept++
			continue
		}
		p.Blobs = append(p.Blobs, d)
		p.Bytes += b.Size
	}
	slices.Sort(p.Blobs)
	for name, r := range g.Repositories {
		for d, mod := range r.Layers {
			if !m.Repositories[name][d] && mod.Before(cutoff) {
				p.LayerLinks = append(p.LayerLinks, LayerLink{Repository: name, Digest: d})
			}
		}
	}
	slices.SortFunc(p.LayerLinks, func(a, b LayerLink) int {
		return cmp.Or(cmp.Compare(a.Repository, b.Repository), cmp.Compare(a.Digest, b.Digest))
	})
	return p
}

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
	// TagHistory lists, for each digest, the tags whose history (index
	// links) names it; deleting the manifest removes those entries too.
	TagHistory map[digest.Digest][]string
	// Indexed lists the entries of the repository's referrers index:
	// for each referrer, the subjects it is listed under. Marking does not
	// use it (a manifest's subject comes from its body); Run completes the
	// index from it.
	Indexed map[digest.Digest][]digest.Digest
	// Pulled is, in a cached repository (Options.Caches), when each
	// manifest was last pulled, where a pull was recorded.
	Pulled map[digest.Digest]time.Time
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
	// Kept maps each repository to its kept manifests and the reason each
	// is kept: "tagged <tag>", "child of <digest>", "referrer of <digest>",
	// "untagged manifests are kept", "newer than the cutoff" or "leased".
	Kept map[string]map[digest.Digest]string
	// BlobWhy says, for each marked blob, one kept manifest that needs it:
	// "<repository>@<digest>".
	BlobWhy map[digest.Digest]string
}

// MarkOptions tune Mark.
type MarkOptions struct {
	// DeleteUntagged makes only tagged manifests roots: an untagged manifest
	// is kept only as a child of a kept index or as a referrer of a kept
	// subject (or if newer than Cutoff, or leased).
	DeleteUntagged bool
	// Cutoff: manifest revisions written at or after it are roots (too
	// recent to judge). The zero time makes none.
	Cutoff time.Time
	// Leased are extra roots per repository: digests a client relied on
	// while the collector ran (see store.Lease). A leased digest that is
	// not a manifest of the repository is marked as a blob of it.
	Leased map[string][]digest.Digest
	// InUse, for the cached repositories that expire (ApplyCacheExpiry),
	// are their manifests in use: there they are the roots besides tags
	// and leases, and other untagged manifests are not kept.
	InUse map[string]map[digest.Digest]bool
}

// Mark marks everything the roots of g reach.
func Mark(g Graph, opts MarkOptions) Marks {
	m := Marks{
		Blobs:        map[digest.Digest]bool{},
		Repositories: map[string]map[digest.Digest]bool{},
		Kept:         map[string]map[digest.Digest]string{},
		BlobWhy:      map[digest.Digest]string{},
	}
	for name, r := range g.Repositories {
		kept := map[digest.Digest]string{}
		var queue []digest.Digest
		keep := func(d digest.Digest, why string) {
			if _, ok := kept[d]; !ok {
				kept[d] = why
				queue = append(queue, d)
			}
		}
		for _, tag := range sortedKeys(r.Tags) {
			keep(r.Tags[tag].Digest, "tagged "+tag)
		}
		for _, d := range opts.Leased[name] {
			keep(d, "leased")
		}
		inUse, cached := opts.InUse[name]
		for d, mf := range r.Manifests {
			switch {
			case cached && inUse[d]:
				keep(d, "pulled from the cache lately")
			case !opts.DeleteUntagged && !cached:
				keep(d, "untagged manifests are kept")
			case !opts.Cutoff.IsZero() && !mf.ModTime.Before(opts.Cutoff):
				keep(d, "newer than the cutoff")
			}
		}
		// Referrers by subject, so that keeping a subject keeps them.
		referrers := referrersBySubject(r)
		for len(queue) > 0 {
			d := queue[len(queue)-1]
			queue = queue[:len(queue)-1]
			for _, c := range r.Manifests[d].Children {
				keep(c, "child of "+d.String())
			}
			for _, ref := range referrers[d] {
				keep(ref, "referrer of "+d.String())
			}
		}
		marked := map[digest.Digest]bool{}
		for d := range kept {
			marked[d] = true
			m.note(d, name, d)
			for _, b := range r.Manifests[d].Blobs {
				marked[b] = true
				m.note(b, name, d)
			}
		}
		m.Repositories[name] = marked
		m.Kept[name] = kept
	}
	// Leases in repositories the graph does not know (created meanwhile).
	for name, ds := range opts.Leased {
		if _, ok := g.Repositories[name]; ok {
			continue
		}
		marked := map[digest.Digest]bool{}
		for _, d := range ds {
			marked[d] = true
			m.note(d, name, d)
		}
		m.Repositories[name] = marked
	}
	return m
}

// referrersBySubject lists the manifests of r that have a subject, by
// subject.
func referrersBySubject(r Repository) map[digest.Digest][]digest.Digest {
	out := map[digest.Digest][]digest.Digest{}
	for d, mf := range r.Manifests {
		if mf.Subject != "" {
			out[mf.Subject] = append(out[mf.Subject], d)
		}
	}
	return out
}

// note marks blob b as needed by manifest d of repo.
func (m *Marks) note(b digest.Digest, repo string, d digest.Digest) {
	m.Blobs[b] = true
	if _, ok := m.BlobWhy[b]; !ok {
		m.BlobWhy[b] = repo + "@" + d.String()
	}
}

// sortedKeys returns the keys of m in order.
func sortedKeys[K ~string, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Plan is what a sweep deletes.
type Plan struct {
	// Manifests are the revisions Mark did not keep (only with
	// MarkOptions.DeleteUntagged: otherwise every revision is kept), sorted.
	Manifests  []ManifestItem
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

// Sweep plans the deletion of what m left unmarked in g: manifest revisions
// Mark did not keep (Mark keeps those newer than its cutoff), and blobs and
// layer links whose ModTime is before cutoff.
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
		for d := range r.Manifests {
			if _, ok := m.Kept[name][d]; !ok {
				p.Manifests = append(p.Manifests, ManifestItem{Repository: name, Digest: d})
			}
		}
		for d, mod := range r.Layers {
			if !m.Repositories[name][d] && mod.Before(cutoff) {
				p.LayerLinks = append(p.LayerLinks, LayerLink{Repository: name, Digest: d})
			}
		}
	}
	slices.SortFunc(p.LayerLinks, func(a, b LayerLink) int {
		return cmp.Or(cmp.Compare(a.Repository, b.Repository), cmp.Compare(a.Digest, b.Digest))
	})
	slices.SortFunc(p.Manifests, func(a, b ManifestItem) int {
		return cmp.Or(cmp.Compare(a.Repository, b.Repository), cmp.Compare(a.Digest, b.Digest))
	})
	return p
}

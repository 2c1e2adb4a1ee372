package gc

import (
	"slices"
	"time"

	"github.com/opencontainers/go-digest"
)

// UsageOptions tune Usage.
type UsageOptions struct {
	// DeleteUntagged marks as Mark does with MarkOptions.DeleteUntagged:
	// untagged manifests older than Cutoff that nothing kept needs count
	// as reclaimable, not as used.
	DeleteUntagged bool
	// Cutoff is a collection's cutoff (its start less its grace), given to
	// Mark and Sweep: only blobs modified before it are reclaimable.
	Cutoff time.Time
	// Repositories is a glob over repository names (see MatchRepository);
	// "" lists every repository. It must be valid (see ValidateGlob): an
	// invalid glob lists none.
	Repositories string
	// Caches are the pull-through cache's prefixes: their repositories are
	// reported as caches (RepositoryUsage.Cache, UsageTotal.CacheBytes),
	// and their manifests expire as a collection at Now would expire them
	// (ApplyCacheExpiry; the graph must hold their pulls, see
	// ReadGraphWithPulls).
	Caches []CacheRule
	// Now is when the expiry of cached manifests is judged; zero means
	// Cutoff.
	Now time.Time
}

// UsageReport is the storage used per repository, as "berth du --json" and
// GET /v2/_berth/usage print it; field names are part of those interfaces.
type UsageReport struct {
	// Cutoff and DeleteUntagged are the options the reclaimable bytes were
	// computed with.
	Cutoff         time.Time `json:"cutoff"`
	DeleteUntagged bool      `json:"deleteUntagged"`
	// Repositories are the listed repositories, sorted by name; never nil.
	Repositories []RepositoryUsage `json:"repositories"`
	// Total sums the listed repositories, each blob counted once.
	Total UsageTotal `json:"total"`
}

// RepositoryUsage is the storage one repository uses. Sizes are those of
// the stored blobs; a referenced blob that is not stored counts for nothing.
type RepositoryUsage struct {
	Name string `json:"name"`
	// Cache is the prefix of the upstream the repository is a cache of,
	// "" for a local repository.
	Cache string `json:"cache,omitempty"`
	// Bytes is the size of the blobs the repository's kept manifests mark
	// (their bodies, configs, layers and children), each counted once.
	Bytes int64 `json:"bytes"`
	// SharedBytes is the part of Bytes that some other repository (listed
	// or not) marks too: deleting this repository would not free it.
	SharedBytes int64 `json:"sharedBytes"`
	// ReclaimableBytes is the size of the blobs a collection with the same
	// options would delete that are linked into this repository, by a
	// layer link or a manifest revision. A blob linked into several
	// repositories counts in each of them.
	ReclaimableBytes int64 `json:"reclaimableBytes"`
	// Manifests counts the manifest revisions that are kept (all of them
	// unless DeleteUntagged), Tags the tags, Blobs the blobs in Bytes.
	Manifests int `json:"manifests"`
	Tags      int `json:"tags"`
	Blobs     int `json:"blobs"`
}

// UsageTotal sums the listed repositories of a UsageReport.
type UsageTotal struct {
	// Repositories counts the listed repositories.
	Repositories int `json:"repositories"`
	// Bytes is the size of the union of the repositories' Bytes, each blob
	// counted once, and Blobs the number of those blobs.
	Bytes int64 `json:"bytes"`
	Blobs int   `json:"blobs"`
	// SharedBytes is the part of Bytes that two or more repositories (listed
	// or not) mark.
	SharedBytes int64 `json:"sharedBytes"`
	// ReclaimableBytes is the size of the union of the repositories'
	// reclaimable blobs, each counted once.
	ReclaimableBytes int64 `json:"reclaimableBytes"`
	// UnlinkedReclaimableBytes is the size of the blobs a collection would
	// delete that no repository links, the bodies of deleted manifests for
	// the most part. They belong to no repository, so the glob does not
	// filter them; with every repository listed, ReclaimableBytes plus
	// UnlinkedReclaimableBytes is what the collection would free.
	UnlinkedReclaimableBytes int64 `json:"unlinkedReclaimableBytes"`
	// Manifests and Tags are the sums of the repositories' counts.
	Manifests int `json:"manifests"`
	Tags      int `json:"tags"`
	// LocalBytes and CacheBytes split Bytes between the listed local
	// repositories and the listed caches of upstreams, each blob counted
	// once in each; a blob both mark counts in both.
	LocalBytes int64 `json:"localBytes"`
	CacheBytes int64 `json:"cacheBytes"`
}

// Usage reports the storage each repository of g uses, what it shares with
// other repositories and what a collection would reclaim from it, marking
// and sweeping by the rules of Mark and Sweep. It reads nothing but g.
func Usage(g Graph, opts UsageOptions) UsageReport {
	var inUse map[string]map[digest.Digest]bool
	if len(opts.Caches) > 0 {
		now := opts.Now
		if now.IsZero() {
			now = opts.Cutoff
		}
		var expired []TagItem
		inUse, expired = ApplyCacheExpiry(g, opts.Caches, now)
		g = withoutTags(g, expired)
	}
	marks := Mark(g, MarkOptions{DeleteUntagged: opts.DeleteUntagged, Cutoff: opts.Cutoff, InUse: inUse})
	plan := Sweep(g, marks, opts.Cutoff)
	reclaimable := make(map[digest.Digest]bool, len(plan.Blobs))
	for _, d := range plan.Blobs {
		reclaimable[d] = true
	}

	// How many repositories mark each stored blob, over the whole graph:
	// sharing with a repository outside the glob is sharing all the same.
	markedBy := map[digest.Digest]int{}
	for _, marked := range marks.Repositories {
		for d := range marked {
			if _, stored := g.Blobs[d]; stored {
				markedBy[d]++
			}
		}
	}

	// Reclaimable blobs linked into some repository; the rest are unlinked.
	linked := map[digest.Digest]bool{}

	rep := UsageReport{Cutoff: opts.Cutoff, DeleteUntagged: opts.DeleteUntagged, Repositories: []RepositoryUsage{}}
	used := map[digest.Digest]bool{}            // the union of the listed repositories' marks
	usedBy := [2]map[digest.Digest]bool{{}, {}} // the same for local [0] and cached [1] repositories
	reclaimed := map[digest.Digest]bool{}       // the union of their reclaimable blobs
	names := make([]string, 0, len(g.Repositories))
	for name := range g.Repositories {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		r := g.Repositories[name]
		// The reclaimable blobs linked into r, each once though it may be
		// both layer-linked and a revision.
		here := map[digest.Digest]bool{}
		for d := range r.Layers {
			if reclaimable[d] {
				here[d] = true
			}
		}
		for d := range r.Manifests {
			if reclaimable[d] {
				here[d] = true
			}
		}
		for d := range here {
			linked[d] = true
		}
		if !listed(opts.Repositories, name) {
			continue
		}

		u := RepositoryUsage{Name: name, Tags: len(r.Tags)}
		group := 0
		if i, ok := cacheRule(opts.Caches, name); ok {
			u.Cache, group = opts.Caches[i].Prefix, 1
		}
		marked := marks.Repositories[name]
		for d := range r.Manifests {
			if marked[d] {
				u.Manifests++
			}
		}
		for d := range marked {
			b, stored := g.Blobs[d]
			if !stored {
				continue
			}
			u.Bytes += b.Size
			u.Blobs++
			if markedBy[d] > 1 {
				u.SharedBytes += b.Size
			}
			used[d] = true
			usedBy[group][d] = true
		}
		for d := range here {
			u.ReclaimableBytes += g.Blobs[d].Size
			reclaimed[d] = true
		}
		rep.Repositories = append(rep.Repositories, u)
		rep.Total.Repositories++
		rep.Total.Manifests += u.Manifests
		rep.Total.Tags += u.Tags
	}

	for d := range used {
		size := g.Blobs[d].Size
		rep.Total.Bytes += size
		rep.Total.Blobs++
		if markedBy[d] > 1 {
			rep.Total.SharedBytes += size
		}
	}
	for d := range usedBy[0] {
		rep.Total.LocalBytes += g.Blobs[d].Size
	}
	for d := range usedBy[1] {
		rep.Total.CacheBytes += g.Blobs[d].Size
	}
	for d := range reclaimed {
		rep.Total.ReclaimableBytes += g.Blobs[d].Size
	}
	for _, d := range plan.Blobs {
		if !linked[d] {
			rep.Total.UnlinkedReclaimableBytes += g.Blobs[d].Size
		}
	}
	return rep
}

// listed reports whether the repository name matches glob, "" matching
// every name.
func listed(glob, name string) bool {
	if glob == "" {
		return true
	}
	ok, err := MatchRepository(glob, name)
	return ok && err == nil
}

package gc

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// CacheRule is the lifetime of a pull-through cache's content: the
// repositories under Prefix (<prefix>/<upstream repository>) are caches of
// an upstream, whose manifests go once nobody pulled them for ExpireAfter,
// or, least recently pulled first, while the cache holds more than
// MaxBytes.
type CacheRule struct {
	// Prefix is the repository prefix the upstream is served under.
	Prefix string `json:"prefix"`
	// ExpireAfter: a manifest neither pulled (see store.RecordPull) nor
	// stored for this long is deleted, with the tags that point at it,
	// unless a kept index lists it or it is a referrer of a kept subject.
	// Zero: no time limit.
	ExpireAfter time.Duration `json:"expireAfter"`
	// MaxBytes bounds the bytes the cached repositories under Prefix
	// reference (each blob once): while they reference more, the least
	// recently pulled manifest goes, with what only it keeps. Blobs that
	// local images share count too, though deleting the cached image does
	// not free them. Zero: no bound.
	MaxBytes int64 `json:"maxBytes"`
}

// expires reports whether the rule deletes anything.
func (r CacheRule) expires() bool { return r.ExpireAfter > 0 || r.MaxBytes > 0 }

// cacheRule returns the index of the rule whose Prefix repository name is
// under, and whether there is one.
func cacheRule(rules []CacheRule, name string) (int, bool) {
	for i, r := range rules {
		if strings.HasPrefix(name, r.Prefix+"/") {
			return i, true
		}
	}
	return -1, false
}

// cacheUnit is a manifest of a cached repository that is in use by its own
// pulls, with what it keeps: the manifests it reaches (children,
// referrers) and their blobs.
type cacheUnit struct {
	repo  string
	d     digest.Digest
	last  time.Time
	blobs []digest.Digest
}

// ApplyCacheExpiry returns, for each cached repository of g that a rule
// with an ExpireAfter or a MaxBytes governs, the manifests still in use at
// now (the roots that Mark keeps there instead of its untagged ones), and
// the tags that point at the others, which the run deletes.
//
// A manifest is in use when it was pulled or stored less than ExpireAfter
// before now (any time without ExpireAfter), or is a child or referrer of
// one in use (an index pulled by tag keeps the platforms it lists). Then,
// while the manifests in use under a rule's prefix reference more than its
// MaxBytes (each stored blob once, manifest bodies included), the least
// recently pulled of those in use by their own pulls goes, with what only
// it kept. It reads g only.
func ApplyCacheExpiry(g Graph, rules []CacheRule, now time.Time) (live map[string]map[digest.Digest]bool, tags []TagItem) {
	live = map[string]map[digest.Digest]bool{}
	units := make([][]cacheUnit, len(rules))
	roots := map[string][]digest.Digest{}
	for name, r := range g.Repositories {
		i, ok := cacheRule(rules, name)
		if !ok || !rules[i].expires() {
			continue
		}
		rule := rules[i]
		for d, m := range r.Manifests {
			last := m.ModTime
			if p, ok := r.Pulled[d]; ok && p.After(last) {
				last = p
			}
			if rule.ExpireAfter > 0 && last.Before(now.Add(-rule.ExpireAfter)) {
				continue
			}
			roots[name] = append(roots[name], d)
			if rule.MaxBytes > 0 {
				units[i] = append(units[i], cacheUnit{repo: name, d: d, last: last, blobs: blobsOf(r, reach(r, []digest.Digest{d}))})
			}
		}
		live[name] = reach(r, roots[name])
	}
	for i, us := range units {
		dropped := fitCache(g, us, rules[i].MaxBytes)
		for repo, ds := range dropped {
			roots[repo] = slices.DeleteFunc(roots[repo], func(d digest.Digest) bool { return slices.Contains(ds, d) })
			live[repo] = reach(g.Repositories[repo], roots[repo])
		}
	}
	for name, inUse := range live {
		i, _ := cacheRule(rules, name)
		why := "cache " + rules[i].Prefix
		if rules[i].ExpireAfter > 0 {
			why += " expireAfter " + rules[i].ExpireAfter.String()
		}
		if rules[i].MaxBytes > 0 {
			why += fmt.Sprintf(" maxBytes %d", rules[i].MaxBytes)
		}
		for t, tag := range g.Repositories[name].Tags {
			if !inUse[tag.Digest] {
				tags = append(tags, TagItem{Repository: name, Tag: t, Digest: tag.Digest, Pushed: tag.Pushed, Rule: why})
			}
		}
	}
	slices.SortFunc(tags, func(a, b TagItem) int {
		return cmp.Or(cmp.Compare(a.Repository, b.Repository), cmp.Compare(a.Tag, b.Tag))
	})
	return live, tags
}

// fitCache drops units, least recently used first, until the stored blobs
// the rest reference add up to at most maxBytes; it returns the dropped
// manifests by repository.
func fitCache(g Graph, units []cacheUnit, maxBytes int64) map[string][]digest.Digest {
	refs := map[digest.Digest]int{}
	var total int64
	for _, u := range units {
		for _, b := range u.blobs {
			if refs[b]++; refs[b] == 1 {
				total += g.Blobs[b].Size
			}
		}
	}
	slices.SortFunc(units, func(a, b cacheUnit) int {
		return cmp.Or(a.last.Compare(b.last), cmp.Compare(a.repo, b.repo), cmp.Compare(a.d, b.d))
	})
	dropped := map[string][]digest.Digest{}
	for _, u := range units {
		if total <= maxBytes {
			break
		}
		for _, b := range u.blobs {
			if refs[b]--; refs[b] == 0 {
				total -= g.Blobs[b].Size
			}
		}
		dropped[u.repo] = append(dropped[u.repo], u.d)
	}
	return dropped
}

// reach returns the manifests of r that roots reach: themselves, their
// children and their referrers, transitively.
func reach(r Repository, roots []digest.Digest) map[digest.Digest]bool {
	out := map[digest.Digest]bool{}
	referrers := referrersBySubject(r)
	queue := slices.Clone(roots)
	for _, d := range roots {
		out[d] = true
	}
	for len(queue) > 0 {
		d := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		for _, next := range append(slices.Clone(r.Manifests[d].Children), referrers[d]...) {
			if !out[next] {
				out[next] = true
				queue = append(queue, next)
			}
		}
	}
	return out
}

// blobsOf lists the manifests of set and the blobs they reference.
func blobsOf(r Repository, set map[digest.Digest]bool) []digest.Digest {
	var out []digest.Digest
	for d := range set {
		out = append(out, d)
		out = append(out, r.Manifests[d].Blobs...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

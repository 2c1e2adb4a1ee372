package gc

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// CacheRule is the lifetime of a pull-through cache's content: the
// repositories under Prefix (<prefix>/<upstream repository>) are caches of
// an upstream, whose manifests go once nobody pulled them for ExpireAfter.
type CacheRule struct {
	// Prefix is the repository prefix the upstream is served under.
	Prefix string `json:"prefix"`
	// ExpireAfter: a manifest neither pulled (see store.RecordPull) nor
	// stored for this long is deleted, with the tags that point at it,
	// unless a kept index lists it or it is a referrer of a kept subject.
	// Zero keeps everything.
	ExpireAfter time.Duration `json:"expireAfter"`
}

// cacheRule returns the rule whose Prefix repository name is under, if any.
func cacheRule(rules []CacheRule, name string) (CacheRule, bool) {
	for _, r := range rules {
		if strings.HasPrefix(name, r.Prefix+"/") {
			return r, true
		}
	}
	return CacheRule{}, false
}

// ApplyCacheExpiry returns, for each cached repository of g that a rule
// with an ExpireAfter governs, the manifests still in use at now (the
// roots that Mark keeps there instead of its untagged ones), and the tags
// that point at the others, which the run deletes. A manifest is in use
// when it was pulled or stored less than ExpireAfter before now, or is a
// child or referrer of one in use (an index pulled by tag keeps the
// platforms it lists). It reads g only.
func ApplyCacheExpiry(g Graph, rules []CacheRule, now time.Time) (live map[string]map[digest.Digest]bool, tags []TagItem) {
	live = map[string]map[digest.Digest]bool{}
	for name, r := range g.Repositories {
		rule, ok := cacheRule(rules, name)
		if !ok || rule.ExpireAfter <= 0 {
			continue
		}
		cutoff := now.Add(-rule.ExpireAfter)
		inUse := map[digest.Digest]bool{}
		var queue []digest.Digest
		use := func(d digest.Digest) {
			if !inUse[d] {
				inUse[d] = true
				queue = append(queue, d)
			}
		}
		for d, m := range r.Manifests {
			last := m.ModTime
			if p, ok := r.Pulled[d]; ok && p.After(last) {
				last = p
			}
			if !last.Before(cutoff) {
				use(d)
			}
		}
		referrers := referrersBySubject(r)
		for len(queue) > 0 {
			d := queue[len(queue)-1]
			queue = queue[:len(queue)-1]
			for _, c := range r.Manifests[d].Children {
				use(c)
			}
			for _, ref := range referrers[d] {
				use(ref)
			}
		}
		live[name] = inUse
		for t, tag := range r.Tags {
			if !inUse[tag.Digest] {
				tags = append(tags, TagItem{Repository: name, Tag: t, Digest: tag.Digest, Pushed: tag.Pushed,
					Rule: "cache " + rule.Prefix + " expireAfter " + rule.ExpireAfter.String()})
			}
		}
	}
	slices.SortFunc(tags, func(a, b TagItem) int {
		return cmp.Or(cmp.Compare(a.Repository, b.Repository), cmp.Compare(a.Tag, b.Tag))
	})
	return live, tags
}

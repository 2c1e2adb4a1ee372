package gc

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"
)

// Validate checks r: a well-formed Repositories glob (see ValidateGlob),
// KeepTags that compile as Go regular expressions, and no negative KeepLast
// or OlderThan. ApplyRetention refuses a rule that does not pass.
func (r RetentionRule) Validate() error {
	_, err := r.compile()
	return err
}

// compiledRule is a validated rule with its KeepTags compiled, anchored.
type compiledRule struct {
	RetentionRule
	keep []*regexp.Regexp
}

func (r RetentionRule) compile() (compiledRule, error) {
	c := compiledRule{RetentionRule: r}
	var errs []error
	if err := ValidateGlob(r.Repositories); err != nil {
		errs = append(errs, err)
	}
	if r.KeepLast < 0 {
		errs = append(errs, fmt.Errorf("keepLast %d is negative", r.KeepLast))
	}
	if r.OlderThan < 0 {
		errs = append(errs, fmt.Errorf("olderThan %s is negative", r.OlderThan))
	}
	for _, p := range r.KeepTags {
		// Compiled alone first, so that "a)|(b" is refused rather than
		// read as the anchored "^(?:a)|(b)$"; then anchored: "v1" keeps
		// the tag v1, not v10 or dev1.
		if _, err := regexp.Compile(p); err != nil {
			errs = append(errs, fmt.Errorf("keepTags %q: %w", p, err))
			continue
		}
		re, err := regexp.Compile(`^(?:` + p + `)$`)
		if err != nil {
			errs = append(errs, fmt.Errorf("keepTags %q: %w", p, err))
			continue
		}
		c.keep = append(c.keep, re)
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("retention rule %q: %w", r.Repositories, err)
	}
	return c, nil
}

// keeps reports whether tag matches one of the rule's KeepTags.
func (c compiledRule) keeps(tag string) bool {
	return slices.ContainsFunc(c.keep, func(re *regexp.Regexp) bool { return re.MatchString(tag) })
}

// ApplyRetention returns the tags of g that rules delete at time now, sorted
// by repository then tag. Each repository is governed by the first rule
// whose Repositories glob matches it (MatchRepository), or by none. Under a
// rule, a tag is deleted when all of these hold:
//
//   - it matches none of KeepTags (each a Go regular expression that must
//     match the whole tag);
//   - it is not among the KeepLast most recently pushed tags of the
//     repository: tags are ranked by Tag.Pushed, newest first, and tags
//     pushed at the same instant by name, in ascending order (so of "a" and
//     "b" pushed together, "a" ranks first). Every tag counts towards
//     KeepLast, whether or not KeepTags keeps it as well;
//   - it was pushed more than OlderThan before now (any age if OlderThan is
//     zero).
//
// A rule with neither KeepLast nor OlderThan set deletes nothing. An invalid
// rule (see RetentionRule.Validate) is an error, whether or not it matches a
// repository, and then nothing is returned. ApplyRetention reads g only.
func ApplyRetention(g Graph, rules []RetentionRule, now time.Time) ([]TagItem, error) {
	compiled := make([]compiledRule, len(rules))
	for i, r := range rules {
		c, err := r.compile()
		if err != nil {
			return nil, fmt.Errorf("gc: retention rule %d: %w", i+1, err)
		}
		compiled[i] = c
	}
	var out []TagItem
	for name, repo := range g.Repositories {
		var rule *compiledRule
		for i := range compiled {
			// The glob is valid: compile checked it.
			if ok, _ := MatchRepository(compiled[i].Repositories, name); ok {
				rule = &compiled[i]
				break
			}
		}
		if rule == nil || (rule.KeepLast == 0 && rule.OlderThan == 0) {
			continue
		}
		out = append(out, rule.apply(name, repo, now)...)
	}
	slices.SortFunc(out, func(a, b TagItem) int {
		return cmp.Or(cmp.Compare(a.Repository, b.Repository), cmp.Compare(a.Tag, b.Tag))
	})
	return out, nil
}

// apply returns the tags of repository name that c deletes.
func (c compiledRule) apply(name string, repo Repository, now time.Time) []TagItem {
	tags := make([]string, 0, len(repo.Tags))
	for t := range repo.Tags {
		tags = append(tags, t)
	}
	// Newest first; ties by name.
	slices.SortFunc(tags, func(a, b string) int {
		return cmp.Or(repo.Tags[b].Pushed.Compare(repo.Tags[a].Pushed), cmp.Compare(a, b))
	})
	cutoff := now.Add(-c.OlderThan)
	var out []TagItem
	for rank, t := range tags {
		tag := repo.Tags[t]
		switch {
		case rank < c.KeepLast:
		case c.OlderThan > 0 && !tag.Pushed.Before(cutoff):
		case c.keeps(t):
		default:
			out = append(out, TagItem{Repository: name, Tag: t, Digest: tag.Digest, Pushed: tag.Pushed, Rule: c.Repositories})
		}
	}
	return out
}

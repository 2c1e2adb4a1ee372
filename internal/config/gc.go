package config

import (
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"
)

// GC configures garbage collection: the periodic collection `berth serve`
// runs, and the defaults of `berth gc`, whose flags override them. It is
// independent of Storage.UploadPurging, the upload janitor: a collection
// also purges uploads idle longer than UploadMaxAge, while the janitor
// purges uploads by the time since they began, on its own schedule.
type GC struct {
	// Interval is the time between two collections run by `berth serve`,
	// the first one Interval after the start, each delayed by a random
	// jitter of up to a tenth of Interval. 0 runs none in the server (run
	// `berth gc` instead). Must not be negative. Default: 0.
	Interval time.Duration `yaml:"interval"`
	// Grace: nothing written or relied on by a client less than Grace
	// before a collection started is deleted. It must exceed the longest
	// manifest push plus clock skew (see the gc package doc). 0 means no
	// grace, safe only while no client pushes. Must not be negative.
	// Default: 1h.
	Grace time.Duration `yaml:"grace"`
	// DeleteUntagged deletes manifests that no tag, kept index or kept
	// subject needs. Default: false (untagged manifests are kept, as by
	// Distribution).
	DeleteUntagged bool `yaml:"deleteUntagged"`
	// UploadMaxAge: a collection purges uploads with no activity for this
	// long. Must be positive and at least Grace. Default: 24h.
	UploadMaxAge time.Duration `yaml:"uploadMaxAge"`
	// DryRun makes collections only plan, and log (the server) or print
	// (`berth gc`, unless --dry-run=false) what they would delete.
	// Default: false.
	DryRun bool `yaml:"dryRun"`
	// ReserveBytes is the size of the collector's reserve: a file of
	// zeros under _berth/gc that only garbage collection uses, so that a
	// collection can start on a full disk (or bucket quota), when it is
	// needed most. Made by `berth serve` at its start and again after
	// each collection. 0 keeps none. Must not be negative. Default:
	// 1048576 (1 MiB).
	ReserveBytes int64 `yaml:"reserveBytes"`
	// Retention lists rules that delete tags before each collection; the
	// first rule whose Repositories glob matches a repository applies to
	// it. It is set in YAML only: no environment variable sets a list of
	// rules. Default: none.
	Retention []RetentionRule `yaml:"retention"`
}

// RetentionRule says which tags of the matching repositories a collection
// deletes: a tag goes when it matches none of KeepTags, is not among the
// KeepLast most recently pushed tags of its repository, and was pushed more
// than OlderThan ago. A rule with neither KeepLast nor OlderThan deletes
// nothing. It mirrors gc.RetentionRule (this package may not import gc).
type RetentionRule struct {
	// Repositories is a glob over repository names: path.Match syntax per
	// "/"-separated component, and "**" as a whole component for any
	// number of components. Required.
	Repositories string `yaml:"repositories"`
	// KeepLast keeps the N most recently pushed tags. Must not be
	// negative. Default: 0.
	KeepLast int `yaml:"keepLast"`
	// KeepTags are Go regular expressions, each matched against the whole
	// tag; a matching tag is kept. Default: none. Omitted from dumps when
	// empty.
	KeepTags []string `yaml:"keepTags,omitempty"`
	// OlderThan: only tags pushed more than this long ago may go; 0 means
	// any age. Must not be negative. Default: 0.
	OlderThan time.Duration `yaml:"olderThan"`
}

func defaultGC() GC {
	return GC{
		Grace:        time.Hour,
		UploadMaxAge: 24 * time.Hour,
		ReserveBytes: 1 << 20,
		// Empty rather than nil: the dump of the defaults ("retention: []")
		// loads back to the same value.
		Retention: []RetentionRule{},
	}
}

func (g *GC) validate(report reportFunc) {
	if g.ReserveBytes < 0 {
		report("gc.reserveBytes", "%d must not be negative (0 keeps no reserve)", g.ReserveBytes)
	}
	if g.Interval < 0 {
		report("gc.interval", "%s must not be negative (0 runs no collection in the server)", g.Interval)
	}
	if g.Grace < 0 {
		report("gc.grace", "%s must not be negative (0 means no grace)", g.Grace)
	}
	if g.UploadMaxAge <= 0 {
		report("gc.uploadMaxAge", "%s must be positive", g.UploadMaxAge)
	} else if g.UploadMaxAge < g.Grace {
		report("gc.uploadMaxAge", "%s must be at least gc.grace (%s)", g.UploadMaxAge, g.Grace)
	}
	for i, r := range g.Retention {
		r.validate(fmt.Sprintf("gc.retention[%d]", i), report)
	}
}

// validate checks the rule as gc.RetentionRule.Validate does, which the
// commands call as well: the same glob and regular-expression rules,
// repeated here because this package may import only the standard library.
func (r *RetentionRule) validate(key string, report reportFunc) {
	if r.Repositories == "" {
		report(key+".repositories", "required: a repository glob such as team/* or **")
	} else {
		for _, c := range strings.Split(r.Repositories, "/") {
			if c == "**" {
				continue
			}
			if _, err := path.Match(c, ""); c == "" || err != nil {
				report(key+".repositories", "%q is not a valid glob", r.Repositories)
				break
			}
		}
	}
	if r.KeepLast < 0 {
		report(key+".keepLast", "%d must not be negative", r.KeepLast)
	}
	if r.OlderThan < 0 {
		report(key+".olderThan", "%s must not be negative", r.OlderThan)
	}
	for _, p := range r.KeepTags {
		// Alone, then anchored as gc matches it: "a)|(b" must not pass as
		// "^(?:a)|(b)$".
		_, err := regexp.Compile(p)
		if err == nil {
			_, err = regexp.Compile(`^(?:` + p + `)$`)
		}
		if err != nil {
			report(key+".keepTags", "%q is not a Go regular expression: %s", p, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
		}
	}
}

package gc

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// retentionNow is the "now" of the retention tests; tags are pushed hours
// before it.
var retentionNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// hoursAgo is a push time h hours before retentionNow.
func hoursAgo(h int) time.Time { return retentionNow.Add(-time.Duration(h) * time.Hour) }

// repoTags builds a repository whose tags were pushed at the given times;
// each tag points at the digest of its own name.
func repoTags(pushed map[string]time.Time) Repository {
	r := Repository{Tags: map[string]Tag{}}
	for name, at := range pushed {
		r.Tags[name] = Tag{Digest: digest.FromString(name), Pushed: at}
	}
	return r
}

func TestApplyRetention(t *testing.T) {
	// app: v1..v5 pushed 50, 40, 30, 20, 10 hours ago; latest 1 hour ago.
	app := repoTags(map[string]time.Time{
		"v1": hoursAgo(50), "v2": hoursAgo(40), "v3": hoursAgo(30),
		"v4": hoursAgo(20), "v5": hoursAgo(10), "latest": hoursAgo(1),
	})
	// tied: five tags pushed at the same instant.
	tied := repoTags(map[string]time.Time{
		"e": hoursAgo(5), "c": hoursAgo(5), "a": hoursAgo(5), "d": hoursAgo(5), "b": hoursAgo(5),
	})
	graph := func(repos map[string]Repository) Graph { return Graph{Repositories: repos} }

	tests := []struct {
		name  string
		g     Graph
		rules []RetentionRule
		want  []string // "repository:tag rule"
	}{
		{
			name:  "no rules delete nothing",
			g:     graph(map[string]Repository{"app": app}),
			rules: nil,
		},
		{
			name:  "a rule with neither keepLast nor olderThan deletes nothing",
			g:     graph(map[string]Repository{"app": app}),
			rules: []RetentionRule{{Repositories: "**", KeepTags: []string{"latest"}}},
		},
		{
			name:  "keepLast keeps the most recently pushed",
			g:     graph(map[string]Repository{"app": app}),
			rules: []RetentionRule{{Repositories: "app", KeepLast: 3}},
			want:  []string{"app:v1 app", "app:v2 app", "app:v3 app"},
		},
		{
			name:  "keepLast larger than the tag count deletes nothing",
			g:     graph(map[string]Repository{"app": app}),
			rules: []RetentionRule{{Repositories: "app", KeepLast: 100}},
		},
		{
			name:  "olderThan alone deletes every tag older",
			g:     graph(map[string]Repository{"app": app}),
			rules: []RetentionRule{{Repositories: "app", OlderThan: 25 * time.Hour}},
			want:  []string{"app:v1 app", "app:v2 app", "app:v3 app"},
		},
		{
			name:  "olderThan is strict: a tag pushed exactly olderThan ago stays",
			g:     graph(map[string]Repository{"app": app}),
			rules: []RetentionRule{{Repositories: "app", OlderThan: 30 * time.Hour}},
			want:  []string{"app:v1 app", "app:v2 app"},
		},
		{
			name:  "keepLast and olderThan must both allow the deletion",
			g:     graph(map[string]Repository{"app": app}),
			rules: []RetentionRule{{Repositories: "app", KeepLast: 5, OlderThan: 25 * time.Hour}},
			want:  []string{"app:v1 app"},
		},
		{
			name:  "olderThan protects recent tags beyond keepLast",
			g:     graph(map[string]Repository{"app": app}),
			rules: []RetentionRule{{Repositories: "app", KeepLast: 1, OlderThan: 35 * time.Hour}},
			want:  []string{"app:v1 app", "app:v2 app"},
		},
		{
			name: "keepTags are anchored full matches",
			g:    graph(map[string]Repository{"app": app}),
			rules: []RetentionRule{{Repositories: "app", KeepLast: 1,
				KeepTags: []string{"v1", "v[34]"}}},
			// "v1" does not keep v10-like tags, and does keep v1.
			want: []string{"app:v2 app", "app:v5 app"},
		},
		{
			name: "a keepTags pattern that only matches part of a tag keeps nothing",
			g:    graph(map[string]Repository{"app": app}),
			rules: []RetentionRule{{Repositories: "app", KeepLast: 1,
				KeepTags: []string{"v", "atest"}}},
			want: []string{"app:v1 app", "app:v2 app", "app:v3 app", "app:v4 app", "app:v5 app"},
		},
		{
			name: "tags kept by pattern still count towards keepLast",
			g:    graph(map[string]Repository{"app": app}),
			// latest and v5 are the two newest: latest is kept twice over,
			// and does not free a keepLast slot for v4.
			rules: []RetentionRule{{Repositories: "app", KeepLast: 2, KeepTags: []string{"latest"}}},
			want:  []string{"app:v1 app", "app:v2 app", "app:v3 app", "app:v4 app"},
		},
		{
			name:  "ties on push time are broken by tag name, ascending",
			g:     graph(map[string]Repository{"tied": tied}),
			rules: []RetentionRule{{Repositories: "tied", KeepLast: 2}},
			want:  []string{"tied:c tied", "tied:d tied", "tied:e tied"},
		},
		{
			name: "ties among older tags after a newer one",
			g: graph(map[string]Repository{"r": repoTags(map[string]time.Time{
				"new": hoursAgo(1), "z": hoursAgo(9), "y": hoursAgo(9), "x": hoursAgo(9), "old": hoursAgo(20),
			})}),
			rules: []RetentionRule{{Repositories: "r", KeepLast: 3}},
			// Ranked: new, x, y, z, old.
			want: []string{"r:old r", "r:z r"},
		},
		{
			name: "the first matching rule applies, later ones are not consulted",
			g: graph(map[string]Repository{
				"team/app": app, "team/tools/ci": app, "other": app,
			}),
			rules: []RetentionRule{
				{Repositories: "team/*", KeepLast: 5},
				{Repositories: "team/**", KeepLast: 4},
				{Repositories: "**", OlderThan: 30 * time.Minute, KeepTags: []string{"v.*"}},
			},
			want: []string{
				"other:latest **",
				"team/app:v1 team/*",
				"team/tools/ci:v1 team/**", "team/tools/ci:v2 team/**",
			},
		},
		{
			name: "a repository no rule matches keeps every tag",
			g: graph(map[string]Repository{
				"team/app": app, "library/alpine": app,
			}),
			rules: []RetentionRule{{Repositories: "team/*", KeepLast: 4}},
			want:  []string{"team/app:v1 team/*", "team/app:v2 team/*"},
		},
		{
			name:  "a rule matching no repository deletes nothing",
			g:     graph(map[string]Repository{"app": app, "tied": tied}),
			rules: []RetentionRule{{Repositories: "nothing/*", KeepLast: 1}},
		},
		{
			name:  "a matching rule that deletes nothing shields from later rules",
			g:     graph(map[string]Repository{"app": app}),
			rules: []RetentionRule{{Repositories: "app"}, {Repositories: "**", KeepLast: 1}},
		},
		{
			name:  "a repository without tags",
			g:     graph(map[string]Repository{"empty": {}}),
			rules: []RetentionRule{{Repositories: "**", KeepLast: 1, OlderThan: time.Hour}},
		},
		{
			name: "zero push times count as oldest",
			g: graph(map[string]Repository{"r": repoTags(map[string]time.Time{
				"unknown": {}, "known": hoursAgo(1),
			})}),
			rules: []RetentionRule{{Repositories: "r", KeepLast: 1}},
			want:  []string{"r:unknown r"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			items, err := ApplyRetention(tc.g, tc.rules, retentionNow)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, it := range items {
				got = append(got, it.Repository+":"+it.Tag+" "+it.Rule)
				tag := tc.g.Repositories[it.Repository].Tags[it.Tag]
				if it.Digest != tag.Digest || !it.Pushed.Equal(tag.Pushed) {
					t.Errorf("%s:%s carries digest %s pushed %s, want %s pushed %s",
						it.Repository, it.Tag, it.Digest, it.Pushed, tag.Digest, tag.Pushed)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("deleted\n %q\nwant\n %q", got, tc.want)
			}
		})
	}
}

// TestApplyRetentionDeterministic: the result does not depend on map order.
func TestApplyRetentionDeterministic(t *testing.T) {
	g := Graph{Repositories: map[string]Repository{}}
	for r := range 5 {
		tags := map[string]time.Time{}
		for i := range 20 {
			tags[fmt.Sprintf("t%02d", i)] = hoursAgo(i % 3) // many ties
		}
		g.Repositories[fmt.Sprintf("repo%d", r)] = repoTags(tags)
	}
	rules := []RetentionRule{{Repositories: "**", KeepLast: 7}}
	first, err := ApplyRetention(g, rules, retentionNow)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 5*13 {
		t.Fatalf("deleted %d tags, want %d", len(first), 5*13)
	}
	for range 20 {
		again, err := ApplyRetention(g, rules, retentionNow)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(again, first) {
			t.Fatalf("two runs differ:\n%v\n%v", first, again)
		}
	}
}

func TestRetentionRuleValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		rule RetentionRule
		want []string // substrings of the error; nil for valid
	}{
		{"valid", RetentionRule{Repositories: "team/**", KeepLast: 3, KeepTags: []string{`v\d+`, "latest"}, OlderThan: time.Hour}, nil},
		{"zero values", RetentionRule{Repositories: "**"}, nil},
		{"empty glob", RetentionRule{KeepLast: 1}, []string{"empty repository glob"}},
		{"bad glob", RetentionRule{Repositories: "team/[", KeepLast: 1}, []string{`retention rule "team/["`, "syntax error in pattern"}},
		{"empty component", RetentionRule{Repositories: "a//b", KeepLast: 1}, []string{"empty component"}},
		{"bad regexp", RetentionRule{Repositories: "**", KeepTags: []string{"ok", "v(1"}}, []string{`keepTags "v(1"`, "missing closing )"}},
		{"pattern escaping its anchors", RetentionRule{Repositories: "**", KeepTags: []string{"a)|(b"}}, []string{`keepTags "a)|(b"`, "unexpected )"}},
		{"negative keepLast", RetentionRule{Repositories: "**", KeepLast: -1}, []string{"keepLast -1 is negative"}},
		{"negative olderThan", RetentionRule{Repositories: "**", OlderThan: -time.Minute}, []string{"olderThan -1m0s is negative"}},
		{"every problem at once", RetentionRule{Repositories: "", KeepLast: -2, KeepTags: []string{"["}, OlderThan: -1},
			[]string{"empty repository glob", "keepLast -2", "olderThan", `keepTags "["`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.rule.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestApplyRetentionInvalidRule: an invalid rule is an error even when it
// would match no repository, and names the rule.
func TestApplyRetentionInvalidRule(t *testing.T) {
	g := Graph{Repositories: map[string]Repository{"app": repoTags(map[string]time.Time{"v1": hoursAgo(100)})}}
	items, err := ApplyRetention(g, []RetentionRule{
		{Repositories: "app", KeepLast: 1},
		{Repositories: "nothing", KeepLast: 1, KeepTags: []string{"(("}},
	}, retentionNow)
	if err == nil || !strings.Contains(err.Error(), "retention rule 2") || items != nil {
		t.Fatalf("ApplyRetention = %v, %v; want no items and an error naming rule 2", items, err)
	}
}

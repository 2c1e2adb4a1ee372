package gc

import "testing"

func TestMatchRepository(t *testing.T) {
	for _, tc := range []struct {
		glob, name string
		want       bool
	}{
		{"**", "a", true},
		{"**", "a/b/c", true},
		{"team/*", "team/app", true},
		{"team/*", "team/app/x", false},
		{"team/*", "team", false},
		{"team/**", "team", true},
		{"team/**", "team/app/x", true},
		{"team/**", "teams/app", false},
		{"**/cache", "a/b/cache", true},
		{"**/cache", "cache", true},
		{"**/cache", "a/cache/b", false},
		{"a/**/z", "a/z", true},
		{"a/**/z", "a/b/c/z", true},
		{"a/**/z", "a/b/c/y", false},
		{"app-?", "app-1", true},
		{"app-[0-9]", "app-x", false},
		{"exact/name", "exact/name", true},
		{"exact/name", "exact/nam", false},
		{"*", "a/b", false},
	} {
		got, err := MatchRepository(tc.glob, tc.name)
		if err != nil || got != tc.want {
			t.Errorf("MatchRepository(%q, %q) = %v, %v; want %v", tc.glob, tc.name, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "a//b", "a/[", "/a"} {
		if _, err := MatchRepository(bad, "a"); err == nil {
			t.Errorf("MatchRepository(%q) accepted a malformed glob", bad)
		}
	}
}

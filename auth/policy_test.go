package auth

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestMatchRepository(t *testing.T) {
	for _, tc := range []struct {
		glob, name string
		want       bool
	}{
		{"*", "alpine", true},
		{"*", "library/alpine", false},
		{"**", "alpine", true},
		{"**", "a/b/c", true},
		{"team-a/*", "team-a/app", true},
		{"team-a/*", "team-a/x/app", false},
		{"team-a/*", "team-a", false},
		{"team-a/*", "team-ab/app", false},
		{"team-a/**", "team-a", true},
		{"team-a/**", "team-a/app", true},
		{"team-a/**", "team-a/x/app", true},
		{"team-a/**", "team-ab/app", false},
		{"a/**/z", "a/z", true},
		{"a/**/z", "a/b/c/z", true},
		{"a/**/z", "a/b/c/y", false},
		{"app-*", "app-web", true},
		{"app-*", "app-", true},
		{"app-*", "web-app", false},
		{"*-web", "app-web", true},
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "aXbY", false},
		{"public/*", "public/nginx", true},
		{"public/*", "public", false},
		{"library/alpine", "library/alpine", true},
		{"library/alpine", "library/alpine2", false},
		{"a**", "abc", false}, // invalid glob matches nothing
		{"a//b", "a/b", false},
	} {
		if got := MatchRepository(tc.glob, tc.name); got != tc.want {
			t.Errorf("MatchRepository(%q, %q) = %v, want %v", tc.glob, tc.name, got, tc.want)
		}
	}
}

func TestExamplePolicy(t *testing.T) {
	p, err := LoadPolicy(filepath.Join("..", "configs", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	all := []string{"pull", "push", "delete"}
	for _, tc := range []struct {
		subject, scope string
		want           []string
	}{
		{"alice", "repository:anything/deep/x:pull,push,delete", all},
		{"alice", "repository:x:*", []string{"*"}},
		{"alice", "registry:catalog:*", []string{"*"}},
		{"alice", "repository:x:frobnicate", []string{}},
		{"bob", "repository:team-a/app:pull,push,delete", []string{"pull", "push"}},
		{"bob", "repository:team-a/app:*", []string{}},
		{"bob", "repository:team-b/app:pull", []string{}},
		{"bob", "registry:catalog:*", []string{}},
		{"bob", "repository:public/nginx:pull,push", []string{"pull"}},
		{"dave", "repository:public/nginx:pull", []string{"pull"}},
		{"dave", "repository:team-a/app:pull", []string{}},
		{"", "repository:public/nginx:pull,push", []string{"pull"}},
		{"", "repository:public/a/b:pull", []string{}},
		{"", "repository:team-a/app:pull", []string{}},
		{"", "registry:catalog:*", []string{}},
		{"carol", "repository:team-a/app:pull,pull", []string{"pull"}},
		{"carol", "other:team-a/app:pull", []string{}},
	} {
		want, err := ParseScope(tc.scope)
		if err != nil {
			t.Fatal(err)
		}
		got := p.Allowed(tc.subject, want)
		if got.Type != want.Type || got.Name != want.Name || got.Actions == nil || !slices.Equal(got.Actions, tc.want) {
			t.Errorf("Allowed(%q, %s) = %+v, want actions %q", tc.subject, tc.scope, got, tc.want)
		}
	}
}

func TestParsePolicyRejects(t *testing.T) {
	for name, doc := range map[string]string{
		"empty":          ``,
		"unknown key":    "rules: []\nfoo: 1\n",
		"unknown rule":   "rules:\n- repositories: [a]\n  actions: [pull]\n  anonymous: true\n  repo: x\n",
		"unknown action": "rules:\n- repositories: [a]\n  actions: [read]\n  anonymous: true\n",
		"unknown group":  "rules:\n- repositories: [a]\n  actions: [pull]\n  groups: [nope]\n",
		"no subject":     "rules:\n- repositories: [a]\n  actions: [pull]\n",
		"no repos":       "rules:\n- actions: [pull]\n  anonymous: true\n",
		"no actions":     "rules:\n- repositories: [a]\n  anonymous: true\n",
		"bad glob":       "rules:\n- repositories: [a**]\n  actions: [pull]\n  anonymous: true\n",
		"empty comp":     "rules:\n- repositories: [a//b]\n  actions: [pull]\n  anonymous: true\n",
		"catalog group":  "catalog:\n  groups: [nope]\n",
		"two docs":       "rules: []\n---\nrules: []\n",
	} {
		if _, err := ParsePolicy([]byte(doc)); !errors.Is(err, ErrInvalidPolicy) {
			t.Errorf("%s: err = %v, want ErrInvalidPolicy", name, err)
		}
	}
}

func TestLoadPolicyMissing(t *testing.T) {
	_, err := LoadPolicy(filepath.Join(t.TempDir(), "none.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v, want not exist", err)
	}
	path := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(path, []byte("rules: [}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPolicy(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("err = %v, want one naming %s", err, path)
	}
}

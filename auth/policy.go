package auth

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// ErrInvalidPolicy is wrapped by every LoadPolicy and ParsePolicy error about the
// document's content (unknown keys, bad globs, unknown groups or actions).
var ErrInvalidPolicy = errors.New("auth: invalid policy")

// Policy says which subjects may perform which actions. It is immutable after loading and
// safe for concurrent use. The YAML form (see configs/policy.yaml):
//
//	groups:                    # group name -> user names
//	  admins: [alice]
//	rules:                     # a subject gets the union of every rule it matches
//	  - repositories: ["**"]   # repository name globs, see below
//	    actions: ["*"]         # pull, push, delete, or * for all of them
//	    users: [bob]           # any of users, groups, authenticated, anonymous
//	    groups: [admins]
//	    authenticated: false   # every user who logged in
//	    anonymous: false       # requests without credentials (subject "")
//	catalog:                   # who may list repositories (registry:catalog:*)
//	  groups: [admins]
//
// Repository globs match a repository name component by component ("/"-separated):
// "*" inside a component matches any run of characters within that one component, so
// "team-a/*" matches "team-a/app" but not "team-a/x/app", and "*" matches only
// single-component names; a component that is exactly "**" matches zero or more whole
// components, so "library/**" matches "library", "library/a" and "library/a/b", and "**"
// matches every name. Every other character is literal; "**" inside a longer component
// ("a**") is refused.
//
// anonymous rules apply only to requests without credentials, not to logged-in users:
// give "authenticated: true" the same access if users should not get less than anonymous.
type Policy struct {
	rules   []compiledRule
	catalog subjects
	// memberOf maps a user to the groups it belongs to.
	memberOf map[string][]string
}

type subjects struct {
	Users         []string `yaml:"users"`
	Groups        []string `yaml:"groups"`
	Authenticated bool     `yaml:"authenticated"`
	Anonymous     bool     `yaml:"anonymous"`
}

type policyRule struct {
	Repositories []string `yaml:"repositories"`
	Actions      []string `yaml:"actions"`
	subjects     `yaml:",inline"`
}

type policyDoc struct {
	Groups  map[string][]string `yaml:"groups"`
	Rules   []policyRule        `yaml:"rules"`
	Catalog subjects            `yaml:"catalog"`
}

type compiledRule struct {
	globs   [][]string // each glob split into components
	actions []string
	who     subjects
}

// LoadPolicy reads and validates a policy file; see Policy for the format. Unknown keys
// are errors.
func LoadPolicy(path string) (*Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: loading policy: %w", err)
	}
	p, err := ParsePolicy(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// ParsePolicy decodes and validates a policy document; see Policy for the format.
func ParsePolicy(b []byte) (*Policy, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var doc policyDoc
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: empty document", ErrInvalidPolicy)
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalidPolicy, err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: more than one YAML document", ErrInvalidPolicy)
	}

	p := &Policy{memberOf: map[string][]string{}, catalog: doc.Catalog}
	for g, users := range doc.Groups {
		if g == "" {
			return nil, fmt.Errorf("%w: empty group name", ErrInvalidPolicy)
		}
		for _, u := range users {
			if u == "" {
				return nil, fmt.Errorf("%w: group %q: empty user name", ErrInvalidPolicy, g)
			}
			if !slices.Contains(p.memberOf[u], g) {
				p.memberOf[u] = append(p.memberOf[u], g)
			}
		}
	}
	checkSubjects := func(where string, s subjects, required bool) error {
		for _, u := range s.Users {
			if u == "" {
				return fmt.Errorf("%w: %s: empty user name", ErrInvalidPolicy, where)
			}
		}
		for _, g := range s.Groups {
			if _, ok := doc.Groups[g]; !ok {
				return fmt.Errorf("%w: %s: unknown group %q", ErrInvalidPolicy, where, g)
			}
		}
		if required && len(s.Users) == 0 && len(s.Groups) == 0 && !s.Authenticated && !s.Anonymous {
			return fmt.Errorf("%w: %s: no users, groups, authenticated or anonymous", ErrInvalidPolicy, where)
		}
		return nil
	}
	if err := checkSubjects("catalog", doc.Catalog, false); err != nil {
		return nil, err
	}
	for i, r := range doc.Rules {
		where := fmt.Sprintf("rule %d", i+1)
		if err := checkSubjects(where, r.subjects, true); err != nil {
			return nil, err
		}
		if len(r.Repositories) == 0 {
			return nil, fmt.Errorf("%w: %s: no repositories", ErrInvalidPolicy, where)
		}
		if len(r.Actions) == 0 {
			return nil, fmt.Errorf("%w: %s: no actions", ErrInvalidPolicy, where)
		}
		for _, a := range r.Actions {
			if !knownAction(a) {
				return nil, fmt.Errorf("%w: %s: unknown action %q", ErrInvalidPolicy, where, a)
			}
		}
		cr := compiledRule{actions: r.Actions, who: r.subjects}
		for _, g := range r.Repositories {
			parts, err := compileGlob(g)
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %v", ErrInvalidPolicy, where, err)
			}
			cr.globs = append(cr.globs, parts)
		}
		p.rules = append(p.rules, cr)
	}
	return p, nil
}

func compileGlob(g string) ([]string, error) {
	parts := strings.Split(g, "/")
	for _, c := range parts {
		if c == "" {
			return nil, fmt.Errorf("glob %q has an empty component", g)
		}
		if c != "**" && strings.Contains(c, "**") {
			return nil, fmt.Errorf(`glob %q: "**" must be a whole component`, g)
		}
	}
	return parts, nil
}

// MatchRepository reports whether the repository name matches glob, with the semantics
// documented on Policy. An invalid glob matches nothing.
func MatchRepository(glob, name string) bool {
	parts, err := compileGlob(glob)
	if err != nil {
		return false
	}
	return matchParts(parts, strings.Split(name, "/"))
}

// matchParts matches name's components against glob's. A "**" matches any run of
// components and every other glob component exactly one name component. It runs in
// O(len(glob)·len(name)) component matches, never exponentially: on a mismatch it goes
// back only to the latest "**", letting it take one more component (taking more at an
// earlier "**" instead can never help, since the later one can take them as well).
func matchParts(glob, name []string) bool {
	g, n := 0, 0
	star, mark := -1, 0 // the latest "**" and where its run of components ends
	for n < len(name) {
		switch {
		case g < len(glob) && glob[g] == "**":
			star, mark = g, n
			g++
		case g < len(glob) && matchComponent(glob[g], name[n]):
			g++
			n++
		case star >= 0:
			mark++
			g, n = star+1, mark
		default:
			return false
		}
	}
	for g < len(glob) && glob[g] == "**" {
		g++
	}
	return g == len(glob)
}

// matchComponent matches one component; "*" matches any run of characters (never "/",
// since components contain none). Like matchParts, it goes back only to the latest
// "*", in O(len(pat)·len(s)).
func matchComponent(pat, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pat) && pat[p] == '*':
			star, mark = p, i
			p++
		case p < len(pat) && pat[p] == s[i]:
			p++
			i++
		case star >= 0:
			mark++
			p, i = star+1, mark
		default:
			return false
		}
	}
	for p < len(pat) && pat[p] == '*' {
		p++
	}
	return p == len(pat)
}

func (p *Policy) applies(s subjects, subject string) bool {
	if subject == "" {
		return s.Anonymous
	}
	if s.Authenticated || slices.Contains(s.Users, subject) {
		return true
	}
	for _, g := range p.memberOf[subject] {
		if slices.Contains(s.Groups, g) {
			return true
		}
	}
	return false
}

// Allowed returns the part of want that subject may perform: want's type and name with
// the requested actions the policy grants, in the requested order, without duplicates.
// subject "" is an anonymous request. A requested "*" is granted only by a rule granting
// "*"; a rule granting "*" grants every action. registry:catalog:* is granted to the
// catalog subjects; any other type yields no actions. Actions is never nil, so an empty
// grant encodes as [] in a token. A nil *Policy grants nothing.
func (p *Policy) Allowed(subject string, want Access) Access {
	got := Access{Type: want.Type, Name: want.Name, Actions: []string{}}
	if p == nil {
		return got
	}
	var granted []string
	switch want.Type {
	case TypeRegistry:
		if want.Name == "catalog" && p.applies(p.catalog, subject) {
			granted = []string{ActionAll}
		}
	case TypeRepository:
		for _, r := range p.rules {
			if !p.applies(r.who, subject) {
				continue
			}
			for _, g := range r.globs {
				if matchParts(g, strings.Split(want.Name, "/")) {
					granted = append(granted, r.actions...)
					break
				}
			}
		}
	}
	all := slices.Contains(granted, ActionAll)
	for _, a := range want.Actions {
		if want.Type == TypeRepository && !knownAction(a) {
			continue // a rule granting "*" must not grant actions nobody defined
		}
		if (all || slices.Contains(granted, a)) && !slices.Contains(got.Actions, a) {
			got.Actions = append(got.Actions, a)
		}
	}
	return got
}

func knownAction(a string) bool {
	switch a {
	case ActionPull, ActionPush, ActionDelete, ActionAll:
		return true
	}
	return false
}

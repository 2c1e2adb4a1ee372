package importfence

import (
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// A Rule says which packages a package may not depend on, directly or
// through others. A dependency is forbidden when it matches a pattern of Deny
// and none of Except; the package itself is always allowed.
//
// Patterns are those of go list: "..." matches any string, slashes included,
// so "net/http/..." is net/http and its sub-packages, "...aws..." any path
// containing aws and "..." every package; a pattern without "..." is one
// exact import path. The pattern "std" matches the standard library. A
// pattern ending in "/" matches the paths that begin with it:
// "golang.org/x/sys/" is every package of x/sys but not the path
// golang.org/x/sys.
type Rule struct {
	Deny   []string // patterns of the forbidden packages; at least one
	Except []string // patterns of packages allowed although Deny matches them
}

// A Violation is a package that the fenced package depends on although its
// rule forbids it.
type Violation struct {
	Dep     string // import path of the dependency
	Pattern string // the pattern of Rule.Deny it matches
}

// Violations returns the dependencies of pkg (an import path) that rule
// forbids, in go list's order. It returns an error if go list cannot list
// pkg, or if rule has no Deny pattern or an empty one.
func Violations(pkg string, rule Rule) ([]Violation, error) {
	if len(rule.Deny) == 0 {
		return nil, errors.New("importfence: the rule denies nothing")
	}
	deny, err := compile(rule.Deny)
	if err != nil {
		return nil, err
	}
	except, err := compile(rule.Except)
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{.Standard}}", pkg)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list -deps %s: %v\n%s", pkg, err, stderr.String())
	}
	var vs []Violation
	for line := range strings.Lines(string(out)) {
		dep, std, _ := strings.Cut(strings.TrimSpace(line), " ")
		if dep == pkg || except.match(dep, std == "true") != "" {
			continue
		}
		if p := deny.match(dep, std == "true"); p != "" {
			vs = append(vs, Violation{Dep: dep, Pattern: p})
		}
	}
	return vs, nil
}

// Check fails t with one error for each dependency of pkg that rule forbids
// (see Violations), or fatally if Violations returns an error.
func Check(t testing.TB, pkg string, rule Rule) {
	t.Helper()
	vs, err := Violations(pkg, rule)
	if err != nil {
		t.Fatalf("%v", err)
		return
	}
	for _, v := range vs {
		t.Errorf("%s depends on %s, which its fence forbids (it matches %q)", pkg, v.Dep, v.Pattern)
	}
}

// patterns are compiled patterns, each kept with its text.
type patterns []struct {
	text string
	re   *regexp.Regexp // nil for "std"
}

// compile compiles go list patterns as cmd/go does ("..." matches anything,
// and a trailing "/..." also matches the path before it), and a trailing "/"
// as a prefix.
func compile(texts []string) (patterns, error) {
	ps := make(patterns, len(texts))
	for i, text := range texts {
		ps[i].text = text
		if text == "" {
			return nil, errors.New("importfence: an empty pattern")
		}
		if text == "std" {
			continue
		}
		re := strings.ReplaceAll(regexp.QuoteMeta(text), `\.\.\.`, `.*`)
		if s, ok := strings.CutSuffix(re, `/.*`); ok {
			re = s + `(/.*)?`
		} else if strings.HasSuffix(re, "/") {
			re += `.*`
		}
		ps[i].re = regexp.MustCompile(`^` + re + `$`)
	}
	return ps, nil
}

// match returns the first pattern matching the import path dep, which is a
// standard library package if std, or "" if none does.
func (ps patterns) match(dep string, std bool) string {
	for _, p := range ps {
		if p.re == nil && std || p.re != nil && p.re.MatchString(dep) {
			return p.text
		}
	}
	return ""
}

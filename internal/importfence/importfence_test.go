package importfence_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/importfence"
)

const mod = "github.com/berth-registry/berth"

// TestViolations checks real packages of this module against rules they
// break and rules they keep.
func TestViolations(t *testing.T) {
	for _, tc := range []struct {
		name string
		pkg  string
		rule importfence.Rule
		want []importfence.Violation
	}{{
		name: "a denied package of the module",
		pkg:  mod + "/auth/issuer",
		rule: importfence.Rule{Deny: []string{mod + "/manifest/..."}},
		want: []importfence.Violation{{Dep: mod + "/manifest", Pattern: mod + "/manifest/..."}},
	}, {
		name: "an exception",
		pkg:  mod + "/auth/issuer",
		rule: importfence.Rule{Deny: []string{mod + "/manifest/..."}, Except: []string{mod + "/manifest"}},
	}, {
		name: "a denied standard package",
		pkg:  mod + "/internal/reload",
		rule: importfence.Rule{Deny: []string{"os"}},
		want: []importfence.Violation{{Dep: "os", Pattern: "os"}},
	}, {
		name: "standard library only, broken",
		pkg:  mod + "/internal/config",
		rule: importfence.Rule{Deny: []string{"..."}, Except: []string{"std"}},
		want: []importfence.Violation{{Dep: "gopkg.in/yaml.v3", Pattern: "..."}},
	}, {
		name: "standard library only, kept (the package itself is allowed)",
		pkg:  mod + "/internal/reload",
		rule: importfence.Rule{Deny: []string{"..."}, Except: []string{"std"}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := importfence.Violations(tc.pkg, tc.rule)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Violations(%s) = %v, want %v", tc.pkg, got, tc.want)
			}
		})
	}
}

// fakeTB records what Check reports instead of failing the test.
type fakeTB struct {
	testing.TB
	errors, fatals []string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Errorf(format string, args ...any) {
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.fatals = append(f.fatals, fmt.Sprintf(format, args...))
}

// TestCheck checks that a violation fails the test, naming the package, the
// dependency and the pattern, and that a fence that cannot be checked fails
// it too rather than passing.
func TestCheck(t *testing.T) {
	var f fakeTB
	importfence.Check(&f, mod+"/auth/issuer", importfence.Rule{Deny: []string{mod + "/manifest/..."}})
	if len(f.errors) != 1 || len(f.fatals) != 0 {
		t.Fatalf("errors %q, fatals %q; want one error", f.errors, f.fatals)
	}
	for _, s := range []string{mod + "/auth/issuer depends on " + mod + "/manifest,", mod + "/manifest/..."} {
		if !strings.Contains(f.errors[0], s) {
			t.Errorf("error %q does not say %q", f.errors[0], s)
		}
	}

	f = fakeTB{}
	importfence.Check(&f, mod+"/auth/issuer", importfence.Rule{Deny: []string{mod + "/registry/..."}})
	if len(f.errors)+len(f.fatals) != 0 {
		t.Errorf("a kept rule reported errors %q, fatals %q", f.errors, f.fatals)
	}

	for _, tc := range []struct {
		pkg  string
		rule importfence.Rule
	}{
		{mod + "/nosuchpackage", importfence.Rule{Deny: []string{"..."}}},
		{mod + "/auth/issuer", importfence.Rule{}},
		{mod + "/auth/issuer", importfence.Rule{Deny: []string{""}}},
	} {
		f = fakeTB{}
		importfence.Check(&f, tc.pkg, tc.rule)
		if len(f.fatals) != 1 {
			t.Errorf("Check(%s, %+v): fatals %q, want one", tc.pkg, tc.rule, f.fatals)
		}
	}
}

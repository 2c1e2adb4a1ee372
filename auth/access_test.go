package auth

import (
	"errors"
	"net/http"
	"reflect"
	"testing"
)

func TestParseScope(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Access
	}{
		{"repository:a/b:pull,push", Access{"repository", "a/b", []string{"pull", "push"}}},
		{"registry:catalog:*", Access{"registry", "catalog", []string{"*"}}},
		{"repository:h:5000/a/b:pull", Access{"repository", "h:5000/a/b", []string{"pull"}}},
		{"repository(plugin):p:pull", Access{"repository(plugin)", "p", []string{"pull"}}},
		{"repository:a:pull,,push", Access{"repository", "a", []string{"pull", "push"}}},
	} {
		got, err := ParseScope(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseScope(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	if got := (Access{"repository", "h:5000/a", []string{"pull", "push"}}).String(); got != "repository:h:5000/a:pull,push" {
		t.Errorf("String = %q", got)
	}
	for _, in := range []string{"", "repository", "repository:a/b", ":a:pull", "repository::pull",
		"repository:a/b:", "repository:a/b:,", "repository:a b:pull", `repository:a"b:pull`} {
		if a, err := ParseScope(in); !errors.Is(err, ErrInvalidScope) {
			t.Errorf("ParseScope(%q) = %+v, %v; want ErrInvalidScope", in, a, err)
		}
	}
}

func TestRequired(t *testing.T) {
	const man = "/v2/{name}/manifests/{reference}"
	repo := func(actions ...string) []Access { return []Access{{TypeRepository, "a/b", actions}} }
	for _, tc := range []struct {
		method, route, name string
		want                []Access
	}{
		{http.MethodGet, man, "a/b", repo("pull")},
		{http.MethodHead, "/v2/{name}/blobs/{digest}", "a/b", repo("pull")},
		{http.MethodPost, "/v2/{name}/blobs/uploads/", "a/b", repo("pull", "push")},
		{http.MethodPatch, "/v2/{name}/blobs/uploads/{id}", "a/b", repo("pull", "push")},
		{http.MethodPut, man, "a/b", repo("pull", "push")},
		{http.MethodDelete, man, "a/b", repo("delete")},
		{http.MethodDelete, "/v2/{name}/blobs/uploads/{id}", "a/b", repo("push")},
		{"OPTIONS", man, "a/b", repo("*")},
		{http.MethodGet, "/v2/_catalog", "", []Access{{TypeRegistry, "catalog", []string{"*"}}}},
		{http.MethodGet, "/v2/_berth/usage", "", []Access{{TypeRegistry, "catalog", []string{"*"}}}},
		{http.MethodGet, "/v2/", "", nil},
	} {
		if got := Required(tc.method, tc.route, tc.name); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Required(%s, %s, %q) = %+v, want %+v", tc.method, tc.route, tc.name, got, tc.want)
		}
	}
}

func TestAllowed(t *testing.T) {
	ab := func(actions ...string) Access { return Access{TypeRepository, "a/b", actions} }
	for _, tc := range []struct {
		name    string
		granted []Access
		need    Access
		want    bool
	}{
		{"exact", []Access{ab("pull")}, ab("pull"), true},
		{"pull-only pushing", []Access{ab("pull")}, ab("pull", "push"), false},
		{"split over entries", []Access{ab("pull"), ab("push")}, ab("pull", "push"), true},
		{"star covers all", []Access{ab("*")}, ab("pull", "push", "delete"), true},
		{"delete with pull,push", []Access{ab("pull", "push")}, ab("delete"), false},
		{"a/b on a/b/c", []Access{ab("*")}, Access{TypeRepository, "a/b/c", []string{"pull"}}, false},
		{"a/b on a/bc", []Access{ab("*")}, Access{TypeRepository, "a/bc", []string{"pull"}}, false},
		{"a/b on a", []Access{ab("*")}, Access{TypeRepository, "a", []string{"pull"}}, false},
		{"other type", []Access{{"registry", "a/b", []string{"*"}}}, ab("pull"), false},
		{"need star, granted list", []Access{ab("pull", "push", "delete")}, ab("*"), false},
		{"catalog", []Access{{TypeRegistry, "catalog", []string{"*"}}}, Access{TypeRegistry, "catalog", []string{"*"}}, true},
		{"no actions needed", []Access{ab("*")}, ab(), false},
		{"nothing granted", nil, ab("pull"), false},
	} {
		if got := Allowed(tc.granted, tc.need); got != tc.want {
			t.Errorf("%s: Allowed = %v, want %v", tc.name, got, tc.want)
		}
	}
}

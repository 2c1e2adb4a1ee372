package pull

import (
	"errors"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestParseReference(t *testing.T) {
	const dgst = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		in, def string
		want    Reference
	}{
		{"localhost:5000/team/app:1.0", "", Reference{"localhost:5000", "team/app", "1.0", ""}},
		{"localhost/app", "", Reference{"localhost", "app", "latest", ""}},
		{"registry.test/a/b/c", "", Reference{"registry.test", "a/b/c", "latest", ""}},
		{"127.0.0.1:5000/app@" + dgst, "", Reference{"127.0.0.1:5000", "app", "", digest.Digest(dgst)}},
		{"127.0.0.1:5000/app:v2@" + dgst, "", Reference{"127.0.0.1:5000", "app", "v2", digest.Digest(dgst)}},
		{"[::1]:5000/app:v1", "", Reference{"[::1]:5000", "app", "v1", ""}},
		{"app", "127.0.0.1:5000", Reference{"127.0.0.1:5000", "app", "latest", ""}},
		{"team/app:v1", "127.0.0.1:5000", Reference{"127.0.0.1:5000", "team/app", "v1", ""}},
		{"app@" + dgst, "localhost:5000", Reference{"localhost:5000", "app", "", digest.Digest(dgst)}},
		{"team/app", "https://registry.test:5000/", Reference{"registry.test:5000", "team/app", "latest", ""}},
	} {
		got, err := ParseReference(tc.in, tc.def)
		if err != nil || got != tc.want {
			t.Errorf("ParseReference(%q, %q) = %+v, %v; want %+v", tc.in, tc.def, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ in, def string }{
		{"", "localhost"},
		{"app", ""},                 // no registry, no default
		{"team/app", ""},            // "team" is not a host
		{"localhost:5000/App", ""},  // upper case
		{"localhost:5000/app:", ""}, // empty tag
		{"localhost:5000/app@sha256:abc", ""},
		{"localhost:5000/app:t@g", ""},
		{"app", "not a host"},
		{"localhost:5000//app", ""},
	} {
		if got, err := ParseReference(tc.in, tc.def); !errors.Is(err, ErrInvalidReference) {
			t.Errorf("ParseReference(%q, %q) = %+v, %v; want ErrInvalidReference", tc.in, tc.def, got, err)
		}
	}
}

func TestReferenceString(t *testing.T) {
	for _, s := range []string{"localhost:5000/a/b:v1", "localhost:5000/a@sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"} {
		r, err := ParseReference(s, "")
		if err != nil {
			t.Fatal(err)
		}
		if r.String() != s {
			t.Errorf("String() = %q, want %q", r.String(), s)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "localhost:5000": true, "LOCALHOST:1": true,
		"127.0.0.1": true, "127.1.2.3:5000": true, "[::1]:5000": true, "::1": true,
		"registry.test": false, "10.0.0.1:5000": false, "localhost.test:5000": false, "[::2]:5000": false,
	} {
		if got := isLoopback(host); got != want {
			t.Errorf("isLoopback(%q) = %t, want %t", host, got, want)
		}
	}
}

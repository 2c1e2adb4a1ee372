package issuer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/berth-registry/berth/auth"
	"github.com/berth-registry/berth/manifest"
)

// A policy granting everything on every name: without the name check, each
// malformed name below would be granted.
const grantAllPolicy = `
rules:
  - repositories: ["**"]
    users: [bob]
    actions: ["*"]
  - repositories: ["**"]
    anonymous: true
    actions: [pull]
`

// malformedNames are repository names the registry's grammar refuses; a
// verifier that matches them against globs ("team-a/**") could read them as
// other names.
var malformedNames = []string{
	"a/../b", "team-a/../admin", "a/./b", "a//b", "../b", "a/..", "..", ".", "./a",
	"%2e%2e/b", "a/%2e%2e/b", "a%2fb", "a%2F..%2Fb", "a/%2E/b", "team-a%2f..%2fadmin",
	"A", "a/B", "Team-a/app", "/a", "a/", "/", "a/b/",
	"-a", "a-", "a.", "_a", "a_", "a..b", "a___b", "a._b", "a/-", "café/app", "a/*", "**", "a?b", "a#b", "a\x00b",
	"localhost:5000/a", strings.Repeat("a", 256),
}

// TestMalformedNamesGrantNothing: the issuer signs no grant on a repository
// name the registry refuses, whatever the policy allows, in both flows and
// for anonymous requests; a valid name in the same request is still granted.
func TestMalformedNamesGrantNothing(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpath := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(htpath, []byte("bob:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	users, err := auth.LoadHtpasswd(htpath)
	if err != nil {
		t.Fatal(err)
	}
	policy, err := auth.ParsePolicy([]byte(grantAllPolicy))
	if err != nil {
		t.Fatal(err)
	}
	iss, err := New(Config{Issuer: testIssuer, Service: testService, Key: key, Users: func() *auth.Htpasswd { return users }, Policy: func() *auth.Policy { return policy }})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{iss: iss, key: key}

	const valid = "team-a/app"
	for _, name := range malformedNames {
		if manifest.ValidateName(name) == nil {
			t.Fatalf("%q is a valid name: the test list is wrong", name)
		}
		t.Run(url.PathEscape(name), func(t *testing.T) {
			scopes := []string{"repository:" + name + ":pull,push", "repository:" + valid + ":pull"}
			q := url.Values{"service": {testService}, "scope": scopes}
			for _, who := range []struct{ user, password string }{{"bob", "s3cret"}, {"", ""}} {
				code, body := f.get(t, q.Encode(), who.user, who.password)
				if code != http.StatusOK {
					t.Fatalf("GET as %q: status %d, %v", who.user, code, body)
				}
				c, _ := f.verify(t, body["token"].(string))
				want := []auth.Access{{Type: auth.TypeRepository, Name: valid, Actions: []string{"pull"}}}
				if !accessEqual(c.Access, want) {
					t.Errorf("GET as %q granted %+v, want only %+v", who.user, c.Access, want)
				}
			}
			code, body := f.post(t, url.Values{"grant_type": {"password"}, "username": {"bob"}, "password": {"s3cret"},
				"service": {testService}, "client_id": {"test"}, "scope": {strings.Join(scopes, " ")}})
			if code != http.StatusOK {
				t.Fatalf("POST: status %d, %v", code, body)
			}
			c, _ := f.verify(t, body["access_token"].(string))
			want := []auth.Access{{Type: auth.TypeRepository, Name: valid, Actions: []string{"pull"}}}
			if !accessEqual(c.Access, want) {
				t.Errorf("POST granted %+v, want only %+v", c.Access, want)
			}
		})
	}
}

package auth

import (
	"crypto"
	"crypto/x509"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"
)

// FuzzTokenAuthorize checks the registry's side of bearer tokens: an
// Authorization header never panics the authorizer, is refused with a 401
// *Challenge, and authenticates only as what the issuer's key signed.
func FuzzTokenAuthorize(f *testing.F) {
	keys := verifyKeysOnce()
	kid := thumb(f, &keys.es.PublicKey)
	need := []Access{{Type: TypeRepository, Name: "a/b", Actions: []string{ActionPull}}}
	granted := baseClaims(Access{Type: TypeRepository, Name: "a/b", Actions: []string{ActionPull, ActionPush}})
	valid := sign(f, jwt.SigningMethodES256, keys.es, map[string]any{"kid": kid}, granted)
	expired := baseClaims(granted.Access...)
	expired.ExpiresAt = jwt.NewNumericDate(testNow.Add(-time.Hour))
	other := baseClaims(granted.Access...)
	other.Audience = jwt.ClaimStrings{"elsewhere"}
	for _, h := range []string{
		"Bearer " + valid, "bearer  " + valid + " ", "Bearer " + valid + "x", "Bearer " + strings.TrimSuffix(valid, valid[len(valid)-3:]),
		"Bearer " + sign(f, jwt.SigningMethodES256, keys.attacker, map[string]any{"kid": kid}, granted),
		"Bearer " + sign(f, jwt.SigningMethodES256, keys.es, map[string]any{"kid": kid}, expired),
		"Bearer " + sign(f, jwt.SigningMethodES256, keys.es, map[string]any{"kid": kid}, other),
		"Bearer " + sign(f, jwt.SigningMethodES256, keys.es, map[string]any{"kid": kid, "crit": []string{"exp"}}, granted),
		"Bearer " + sign(f, jwt.SigningMethodES256, keys.es, map[string]any{"jku": "https://evil.test/jwks"}, granted),
		"Bearer " + sign(f, jwt.SigningMethodHS256, []byte("secret"), map[string]any{"kid": kid}, granted),
		"Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSJ9.",
		"Basic YWxpY2U6czNjcmV0", "Bearer", "Bearer ", "", "Bearer a.b.c", "Bearer ...", "Negotiate x",
	} {
		f.Add(h)
	}
	v := newTestVerifier(f, nil, &keys.es.PublicKey)
	a := NewTokenAuthorizer(v, "https://reg.test/auth/token", testService)
	f.Fuzz(func(t *testing.T, h string) {
		r := &http.Request{Header: http.Header{}}
		if h != "" {
			r.Header.Set("Authorization", h)
		}
		id, err := a.Authorize(r, need)
		if err != nil {
			var ch *Challenge
			if !errors.As(err, &ch) || ch.Status != http.StatusUnauthorized || ch.Scheme != "Bearer" {
				t.Fatalf("%q: refused with %T %v, not a 401 Bearer challenge", h, err, err)
			}
			return
		}
		if id.Subject != granted.Subject || !reflect.DeepEqual(id.Access, granted.Access) {
			t.Fatalf("%q authenticated as %q with %v, which the issuer never signed", h, id.Subject, id.Access)
		}
	})
}

// FuzzBasicAuthorize checks htpasswd mode: only the user's own name and
// password authenticate, and everything else is a 401 Basic challenge.
func FuzzBasicAuthorize(f *testing.F) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		f.Fatal(err)
	}
	path := filepath.Join(f.TempDir(), "htpasswd")
	if err := os.WriteFile(path, []byte("alice:"+string(hash)+"\n"), 0o600); err != nil {
		f.Fatal(err)
	}
	users, err := LoadHtpasswd(path)
	if err != nil {
		f.Fatal(err)
	}
	// What docker login and curl -u send, and near misses.
	for _, h := range []string{"Basic YWxpY2U6czNjcmV0", "basic YWxpY2U6czNjcmV0", "Basic  YWxpY2U6czNjcmV0", "Basic YWxpY2U6czNjcmV0==",
		"Basic YWxpY2U6czNjcmV", "Basic YWxpY2U=", "Basic OnMzY3JldA==", "Basic YWxpY2U6czNjcmV0Cg==", "Bearer YWxpY2U6czNjcmV0", "Basic", ""} {
		f.Add(h)
	}
	a := NewBasicAuthorizer(BasicConfig{Users: func() *Htpasswd { return users }, Realm: "berth"})
	f.Fuzz(func(t *testing.T, h string) {
		r := &http.Request{Header: http.Header{}}
		if h != "" {
			r.Header.Set("Authorization", h)
		}
		id, err := a.Authorize(r, nil)
		if err != nil {
			var ch *Challenge
			if !errors.As(err, &ch) || ch.Status != http.StatusUnauthorized || ch.Scheme != "Basic" {
				t.Fatalf("%q: refused with %T %v, not a 401 Basic challenge", h, err, err)
			}
			return
		}
		if user, password, _ := r.BasicAuth(); user != "alice" || password != "s3cret" || id.Subject != "alice" {
			t.Fatalf("%q authenticated as %q", h, id.Subject)
		}
	})
}

// FuzzParseScope checks that a parsed scope has a type, a name and
// actions, and that its String parses back to it.
func FuzzParseScope(f *testing.F) {
	// Scopes docker, containerd, crane and oras ask the token endpoint for.
	for _, s := range []string{"repository:library/busybox:pull", "repository:a/b:pull,push", "registry:catalog:*",
		"repository:localhost:5000/a:pull", "repository:a:delete,,pull", "repository(plugin):a:pull", "repository::pull",
		":a:pull", "repository:a:", "repository:a", "repository:a b:pull", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseScope(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidScope) {
				t.Fatalf("ParseScope(%q): %v does not wrap ErrInvalidScope", s, err)
			}
			return
		}
		if a.Type == "" || a.Name == "" || len(a.Actions) == 0 || slices.Contains(a.Actions, "") {
			t.Fatalf("ParseScope(%q) = %+v", s, a)
		}
		again, err := ParseScope(a.String())
		if err != nil || !reflect.DeepEqual(again, a) {
			t.Fatalf("ParseScope(%q) = %+v, whose String %q parses as %+v, %v", s, a, a.String(), again, err)
		}
	})
}

// FuzzParsePolicy checks that a policy document is refused with
// ErrInvalidPolicy or grants, for any request, only actions that were
// asked for, once each, on the resource asked about.
func FuzzParsePolicy(f *testing.F) {
	docs := []string{`rules: [{repositories: ["**"], actions: ["*"], anonymous: true}]`,
		"groups: {g: [bob]}\nrules:\n  - repositories: [\"team/*\", \"x/**\"]\n    groups: [g]\n    actions: [pull, push]\ncatalog: {users: [bob]}\n",
		`rules: [{repositories: ["a**"], actions: [pull]}]`, `rules: [{repositories: ["a"], actions: [fly]}]`, `groups: {g: [a]}`,
		`rules: [{repositories: ["a"], actions: [pull], groups: [nope]}]`, `unknown: 1`, ``, `- x`, `rules: {}`}
	if b, err := os.ReadFile(filepath.Join("..", "configs", "policy.yaml")); err == nil {
		docs = append(docs, string(b))
	} else {
		f.Fatalf("the shipped policy: %v", err)
	}
	for i, d := range docs {
		subject := []string{"", "alice", "bob", "carol"}[i%4]
		f.Add([]byte(d), subject, "repository:team-a/app:pull,push,delete,*,fly")
		f.Add([]byte(d), subject, "registry:catalog:*")
	}
	f.Fuzz(func(t *testing.T, doc []byte, subject, scope string) {
		p, err := ParsePolicy(doc)
		if err != nil {
			if !errors.Is(err, ErrInvalidPolicy) {
				t.Fatalf("ParsePolicy: %v does not wrap ErrInvalidPolicy", err)
			}
			return
		}
		want, err := ParseScope(scope)
		if err != nil {
			return
		}
		got := p.Allowed(subject, want)
		if got.Type != want.Type || got.Name != want.Name || got.Actions == nil {
			t.Fatalf("Allowed(%q, %v) = %+v", subject, want, got)
		}
		for i, a := range got.Actions {
			if !slices.Contains(want.Actions, a) || slices.Contains(got.Actions[:i], a) {
				t.Fatalf("Allowed(%q, %v) = %v: %q was not asked for, or twice", subject, want, got.Actions, a)
			}
			if want.Type == TypeRepository && !knownAction(a) {
				t.Fatalf("Allowed(%q, %v) grants the unknown action %q", subject, want, a)
			}
		}
	})
}

// FuzzParseJWKS checks the JWK set reader: a set it reads, written again,
// reads as the same keys.
func FuzzParseJWKS(f *testing.F) {
	keys := verifyKeysOnce()
	for _, pub := range []crypto.PublicKey{&keys.es.PublicKey, &keys.rs.PublicKey, keys.ed.Public()} {
		f.Add(mustJWKS(f, pub))
	}
	for _, s := range []string{`{"keys":[]}`, `{"keys":null}`, `{}`, `{"keys":[{"kty":"EC","crv":"P-384"}]}`,
		`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`, `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA","d":"AAAA"}]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		pubs, err := ParseJWKS(b)
		if err != nil {
			return
		}
		out, err := MarshalJWKS(pubs...)
		if err != nil {
			t.Fatalf("MarshalJWKS of what ParseJWKS read: %v", err)
		}
		again, err := ParseJWKS(out)
		if err != nil || len(again) != len(pubs) {
			t.Fatalf("%s read back: %d keys, %v", out, len(again), err)
		}
		for i := range pubs {
			a, _ := x509.MarshalPKIXPublicKey(pubs[i])
			b, _ := x509.MarshalPKIXPublicKey(again[i])
			if string(a) != string(b) {
				t.Fatalf("key %d changed on the way through %s", i, out)
			}
		}
	})
}

// matchPartsByDefinition and matchComponentByDefinition are the glob
// semantics of Policy written as directly as possible (exponential in the
// number of wildcards): the oracle for FuzzMatchRepository.
func matchPartsByDefinition(glob, name []string) bool {
	if len(glob) == 0 {
		return len(name) == 0
	}
	if glob[0] == "**" {
		for skip := 0; skip <= len(name); skip++ {
			if matchPartsByDefinition(glob[1:], name[skip:]) {
				return true
			}
		}
		return false
	}
	return len(name) > 0 && matchComponentByDefinition(glob[0], name[0]) && matchPartsByDefinition(glob[1:], name[1:])
}

func matchComponentByDefinition(pat, s string) bool {
	star := strings.IndexByte(pat, '*')
	if star < 0 {
		return pat == s
	}
	if !strings.HasPrefix(s, pat[:star]) {
		return false
	}
	for i := star; i <= len(s); i++ {
		if matchComponentByDefinition(pat[star+1:], s[i:]) {
			return true
		}
	}
	return false
}

// FuzzMatchRepository checks the policy's repository globs against their
// definition, on globs with few enough wildcards for the definition to
// answer quickly; the fuzzing engine reports any input that makes
// MatchRepository itself slow (it once was exponential).
func FuzzMatchRepository(f *testing.F) {
	for _, c := range [][2]string{{"team-a/*", "team-a/app"}, {"team-a/**", "team-a"}, {"**", "a/b/c"}, {"*", "a/b"},
		{"library/**/x", "library/a/b/x"}, {"a*b*c", "aXbYbZc"}, {"**/**/x", "a/x"}, {"*a*a*a*b", strings.Repeat("a", 40)},
		{"**/a/**/a/**/b", strings.Repeat("a/", 30) + "a"}, {"a**", "a"}, {"a//b", "a/b"}} {
		f.Add(c[0], c[1])
	}
	f.Fuzz(func(t *testing.T, glob, name string) {
		got := MatchRepository(glob, name)
		parts, err := compileGlob(glob)
		if err != nil {
			if got {
				t.Fatalf("invalid glob %q matches %q", glob, name)
			}
			return
		}
		if strings.Count(glob, "*") > 4 || len(name) > 64 {
			return
		}
		if want := matchPartsByDefinition(parts, strings.Split(name, "/")); got != want {
			t.Fatalf("MatchRepository(%q, %q) = %v, by definition %v", glob, name, got, want)
		}
	})
}

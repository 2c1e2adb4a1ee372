package pull

import (
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzParseReference checks that ParseReference refuses with
// ErrInvalidReference or returns a reference whose parts are valid and
// whose String parses back to the same reference, with or without the
// default registry.
func FuzzParseReference(f *testing.F) {
	// References as people type them to docker, podman and crane.
	for _, s := range []string{"busybox", "library/debian:12", "localhost:5000/multiarch:latest",
		"registry.test/team/app@sha256:16093e154d08be89494e10a938eae1fa646050eb5965f2d5d860e809b04a2b3f",
		"127.0.0.1:5000/a/b:v1@sha256:0f2bd2850d663ab82d103985d4204bd04feb1242fbcc463a3ac66e9bfd115fba",
		"[::1]:5000/x", "Upper/case", "a:b:c", "host:port/x", "x/", "/x", "a@sha256:abc", "a::b", ""} {
		for _, def := range []string{"", "reg.test", "localhost:5000", "https://reg.test/v2/", "myhost"} {
			f.Add(s, def)
		}
	}
	f.Fuzz(func(t *testing.T, s, defaultRegistry string) {
		ref, err := ParseReference(s, defaultRegistry)
		if err != nil {
			if !errors.Is(err, ErrInvalidReference) {
				t.Fatalf("ParseReference(%q, %q): %v does not wrap ErrInvalidReference", s, defaultRegistry, err)
			}
			return
		}
		if ref.Registry == "" || ref.Repository == "" || ref.Tag == "" && ref.Digest == "" {
			t.Fatalf("ParseReference(%q, %q) = %+v", s, defaultRegistry, ref)
		}
		if n, err := NormalizeRegistry(ref.Registry); err != nil || n != ref.Registry {
			t.Fatalf("registry %q of %q normalizes to %q, %v", ref.Registry, s, n, err)
		}
		if ref.Digest != "" {
			if err := ref.Digest.Validate(); err != nil {
				t.Fatalf("digest of %q: %v", s, err)
			}
		}
		for _, def := range []string{"", defaultRegistry} {
			again, err := ParseReference(ref.String(), def)
			if err != nil || again != ref {
				t.Fatalf("%q parsed as %+v, whose String %q parses (default %q) as %+v, %v", s, ref, ref.String(), def, again, err)
			}
		}
	})
}

// FuzzNormalizeRegistry checks that a normalized registry is a fixed point
// and is what a reference naming it parses to.
func FuzzNormalizeRegistry(f *testing.F) {
	for _, s := range []string{"localhost:5000", "https://reg.test:5000/", "http://127.0.0.1:5000", "HTTPS://Reg.Test/v1/",
		"[::1]:5000", "index.docker.io", "reg_test", "host:", ":5000", "https://", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := NormalizeRegistry(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidReference) || !errors.Is(err, errBadRegistry) {
				t.Fatalf("NormalizeRegistry(%q): %v", s, err)
			}
			return
		}
		if again, err := NormalizeRegistry(n); err != nil || again != n {
			t.Fatalf("NormalizeRegistry(%q) = %q, which normalizes to %q, %v", s, n, again, err)
		}
		if !looksLikeRegistry(n) {
			// "0/x" is a repository name: such a host cannot be the default registry either.
			if ref, err := ParseReference("x", n); !errors.Is(err, ErrInvalidReference) {
				t.Fatalf("x in the default registry %q parses as %+v, %v", n, ref, err)
			}
			return
		}
		if ref, err := ParseReference(n+"/x", ""); err != nil || ref.Registry != n || ref.Repository != "x" {
			t.Fatalf("%q/x parses as %+v, %v", n, ref, err)
		}
	})
}

// renderChallenges writes challenges back as a WWW-Authenticate value, every
// parameter quoted.
func renderChallenges(cs []challenge) string {
	var parts []string
	for _, c := range cs {
		s := c.scheme
		for i, k := range slices.Sorted(maps.Keys(c.params)) {
			if i > 0 {
				s += ","
			}
			v := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(c.params[k])
			s += " " + k + `="` + v + `"`
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// FuzzParseChallenges checks the WWW-Authenticate parser: schemes and
// parameter names are non-empty lower-case tokens, what it parsed written
// back parses to the same, and pick answers only Bearer or Basic.
func FuzzParseChallenges(f *testing.F) {
	// Challenges of Docker Hub, GHCR, Harbor, Distribution, Quay, ECR, berth.
	for _, s := range []string{
		`Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"`,
		`Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:user/image:pull"`,
		`Bearer realm="https://harbor.test/service/token",service="harbor-registry",scope="repository:p/r:pull,push"`,
		`Bearer realm="http://127.0.0.1:5000/auth/token",service="berth",scope="repository:a:pull",error="insufficient_scope"`,
		`Bearer realm="https://quay.io/v2/auth",service="quay.io"`,
		`Basic realm="Registry Realm"`, `Basic realm="https://123456789012.dkr.ecr.us-east-1.amazonaws.com/",service="ecr.amazonaws.com"`,
		`Basic realm="x", Bearer realm="https://a/t", service=s`, `Negotiate abc==, Basic realm=r`,
		`Bearer realm="a\"b\\c`, `"garbage`, `, ,`, `Bearer =x`, `Bearer realm=`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cs := parseChallengeList(s)
		for _, c := range cs {
			if c.scheme == "" || c.scheme != strings.ToLower(c.scheme) || readToken(c.scheme, new(int)) != c.scheme {
				t.Fatalf("%q: scheme %q", s, c.scheme)
			}
			for k := range c.params {
				if k == "" || k != strings.ToLower(k) || readToken(k, new(int)) != k {
					t.Fatalf("%q: parameter name %q", s, k)
				}
			}
		}
		rendered := renderChallenges(cs)
		again := parseChallenges(http.Header{"Www-Authenticate": {rendered}})
		if len(cs) == 0 && len(again) == 0 {
			return
		}
		if !reflect.DeepEqual(again, cs) {
			t.Fatalf("%q parsed as %v, written back as %q, parses as %v", s, cs, rendered, again)
		}
		if c, ok := pick(cs); ok && c.scheme != "bearer" && c.scheme != "basic" {
			t.Fatalf("%q: picked %q", s, c.scheme)
		}
	})
}

// FuzzDecodeToken checks a token server's answer: refused with
// ErrBadResponse, or a non-empty token expiring between the least and the
// most lifetime allowed, less the margin.
func FuzzDecodeToken(f *testing.F) {
	// Answers of Docker Hub, Distribution's token server, GHCR, ACR (access_token only) and berth.
	for _, s := range []string{
		`{"token":"eyJhbGciOiJFUzI1NiJ9.e30.sig","access_token":"eyJhbGciOiJFUzI1NiJ9.e30.sig","expires_in":300,"issued_at":"2024-01-01T00:00:00Z"}`,
		`{"token":"abc"}`, `{"access_token":"abc","expires_in":3600,"refresh_token":"r"}`,
		`{"token":"abc","expires_in":-5}`, `{"token":"abc","expires_in":99999999999}`, `{"token":"abc","expires_in":"300"}`,
		`{"token":""}`, `{}`, `null`, `[]`, ``, `{"token":"a"} trailing`, `{"expires_in":1e400,"token":"x"}`,
	} {
		f.Add([]byte(s))
	}
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) {
		tr, err := decodeToken(strings.NewReader(string(body)), start, "token.test")
		if err != nil {
			if !errors.Is(err, ErrBadResponse) {
				t.Fatalf("%q: %v does not wrap ErrBadResponse", body, err)
			}
			return
		}
		if tr.token == "" {
			t.Fatalf("%q: accepted without a token", body)
		}
		if d := tr.expires.Sub(start); d < minTokenLifetime-tokenMargin || d > maxTokenLifetime-tokenMargin {
			t.Fatalf("%q: token lives %v", body, d)
		}
	})
}

// FuzzContentRangeStart checks the pull client's reading of a 206 answer's
// Content-Range: a start that is not negative, and that reads back.
func FuzzContentRangeStart(f *testing.F) {
	for _, s := range []string{"bytes 100-999/1000", "bytes 0-0/1", "bytes 5-9/*", " bytes 7-8/9 ", "bytes */1000",
		"bytes -5-9/10", "bytes +5-9/10", "items 1-2/3", "bytes 9223372036854775808-1/2", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		start, err := contentRangeStart(s)
		if err != nil {
			return
		}
		if start < 0 {
			t.Fatalf("Content-Range %q: start %d", s, start)
		}
		if again, err := contentRangeStart("bytes " + strconv.FormatInt(start, 10) + "-"); err != nil || again != start {
			t.Fatalf("Content-Range %q: start %d reads back as %d, %v", s, start, again, err)
		}
	})
}

// FuzzDockerConfig checks the docker config.json reader and writer: a file
// is refused with ErrDockerConfig or read; credentials are looked up with
// typed errors only; and credentials set, saved and read again come back
// as set, with every other registry's credentials and every other key
// kept.
func FuzzDockerConfig(f *testing.F) {
	// What docker login, podman login, Docker Desktop and older clients write.
	for _, s := range []string{
		`{"auths":{"registry.test:5000":{"auth":"YWxpY2U6cGE6c3M="}}}`,
		`{"auths":{"https://index.docker.io/v1/":{"auth":"Ym9iOnB3"}},"credsStore":"desktop","currentContext":"default"}`,
		`{"auths":{"ghcr.io":{}},"credHelpers":{"123.dkr.ecr.us-east-1.amazonaws.com":"ecr-login"}}`,
		`{"auths":{"tok.test":{"auth":"Y2Fyb2w6","identitytoken":"refresh-123"}},"psFormat":"table {{.ID}}"}`,
		`{"auths":{"plain.test":{"username":"dave","password":"pw2"},"broken.test":{"auth":"%%%"}}}`,
		`{"auths":{"unpadded.test":{"auth":"YTpi"}},"proxies":{"default":{"httpProxy":"http://p:3128"}}}`,
		`{"auths":null}`, `null`, ``, `   `, `[]`, `{"auths":[]}`, `{"auths":{"x":1}}`, `{"credsStore":1}`,
	} {
		f.Add([]byte(s), "fuzz.test:5000", "user", "secret", "")
	}
	f.Add([]byte(`{}`), "https://fuzz.test/v1/", "", "", "idtoken")
	f.Add([]byte(`{}`), "localhost:5000", "a:b", "c", "")
	f.Fuzz(func(t *testing.T, file []byte, registry, user, password, identity string) {
		// An identity token comes from a token server's JSON answer: it is UTF-8.
		identity = strings.ToValidUTF8(identity, "?")
		dir := t.TempDir()
		path := filepath.Join(dir, "config.json")
		if err := os.WriteFile(path, file, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadDockerConfig(path)
		if err != nil {
			if !errors.Is(err, ErrDockerConfig) {
				t.Fatalf("LoadDockerConfig: %v does not wrap ErrDockerConfig", err)
			}
			return
		}
		typed := func(err error) bool {
			return errors.Is(err, ErrDockerConfig) || errors.Is(err, ErrCredentialHelper) || errors.Is(err, ErrInvalidReference)
		}
		before := map[string]Credentials{}
		for _, k := range slices.Sorted(maps.Keys(cfg.auths)) {
			cr, err := cfg.Credentials(k)
			if err != nil {
				if !typed(err) {
					t.Fatalf("Credentials(%q): %v", k, err)
				}
				continue
			}
			if n, err := NormalizeRegistry(k); err == nil {
				before[n] = cr
			}
		}
		want := Credentials{Username: user, Password: password, IdentityToken: identity}
		if err := cfg.SetCredentials(registry, want); err != nil {
			if !typed(err) {
				t.Fatalf("SetCredentials(%q): %v", registry, err)
			}
			return
		}
		if err := cfg.Save(); err != nil {
			t.Fatalf("Save: %v", err)
		}
		if names, _ := filepath.Glob(filepath.Join(dir, "*")); len(names) != 1 {
			t.Fatalf("Save left %q", names)
		}
		again, err := LoadDockerConfig(path)
		if err != nil {
			t.Fatalf("reading back what Save wrote: %v", err)
		}
		reg, _ := NormalizeRegistry(registry)
		if per, store, err := again.helpers(reg); err == nil && per == "" && (store == "" || !want.IsZero()) {
			if want.IdentityToken != "" {
				want.Password = ""
			}
			if got, err := again.Credentials(reg); err != nil || got != want {
				t.Fatalf("credentials of %q set to %+v read back as %+v, %v", reg, want, got, err)
			}
		}
		for r, cr := range before {
			if r == reg {
				continue
			}
			if got, err := again.Credentials(r); err != nil || got != cr {
				t.Fatalf("credentials of %q were %+v, after Save %+v, %v", r, cr, got, err)
			}
		}
		for k, v := range cfg.top {
			if k == "auths" {
				continue
			}
			var a, b any
			if json.Unmarshal(v, &a) != nil || json.Unmarshal(again.top[k], &b) != nil || !reflect.DeepEqual(a, b) {
				t.Fatalf("key %q was %s, after Save %s", k, v, again.top[k])
			}
		}
	})
}

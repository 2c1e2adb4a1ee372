package main

import (
	"crypto"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/auth"
)

// runStdin runs berth like app.run, with stdin as the commands' input.
func (ta *testApp) runStdin(stdin string, args ...string) int {
	root := ta.newRootCmd()
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(&ta.stderr, "berth: %s\n", err)
	if ee := (*exitError)(nil); errors.As(err, &ee) {
		return ee.code
	}
	return exitFailure
}

func TestAuthHelp(t *testing.T) {
	ta := newTestApp(nil)
	if code := ta.run([]string{"auth", "--help"}); code != exitOK {
		t.Fatalf("exit %d: %s", code, ta.stderr.String())
	}
	for _, w := range []string{"keygen", "htpasswd", "token"} {
		if !strings.Contains(ta.stdout.String(), w) {
			t.Errorf("auth --help lacks %q:\n%s", w, ta.stdout.String())
		}
	}
}

// TestAuthKeygen: keygen writes a 0600 key, prints its kid and JWKS, and
// refuses to overwrite an existing file.
func TestAuthKeygen(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys", "signing.pem")
	ta := newTestApp(nil)
	if code := ta.run([]string{"auth", "keygen", "--out", file}); code != exitOK {
		t.Fatalf("exit %d: %s", code, ta.stderr.String())
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	key, err := auth.LoadOrCreateSigningKey(file)
	if err != nil {
		t.Fatal(err)
	}
	kid, err := auth.Thumbprint(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(ta.stdout.String(), "\n"), "\n")
	if len(lines) != 2 || lines[0] != "kid: "+kid {
		t.Fatalf("keygen printed %q, want kid: %s and the JWKS", ta.stdout.String(), kid)
	}
	keys, err := auth.ParseJWKS([]byte(lines[1]))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 {
		t.Fatalf("JWKS has %d keys", len(keys))
	}
	if k, _ := auth.Thumbprint(keys[0]); k != kid {
		t.Errorf("JWKS key has thumbprint %s, want %s", k, kid)
	}
	if alg, _ := auth.Algorithm(keys[0]); alg != "ES256" {
		t.Errorf("key algorithm %s, want ES256", alg)
	}

	before, _ := os.ReadFile(file)
	ta = newTestApp(nil)
	if code := ta.run([]string{"auth", "keygen", "--out", file}); code != exitUsage {
		t.Errorf("keygen over an existing key: exit %d, want %d", code, exitUsage)
	}
	if !strings.Contains(ta.stderr.String(), "already exists") || ta.stdout.Len() != 0 {
		t.Errorf("keygen over an existing key: stdout %q, stderr %q", ta.stdout.String(), ta.stderr.String())
	}
	if after, _ := os.ReadFile(file); string(after) != string(before) {
		t.Error("keygen changed an existing key")
	}
}

// TestAuthHtpasswd: the printed line and the lines written to a file
// verify with auth.LoadHtpasswd; a user's line is replaced, others kept.
func TestAuthHtpasswd(t *testing.T) {
	dir := t.TempDir()

	ta := newTestApp(nil)
	if code := ta.runStdin("s3cret\n", "auth", "htpasswd", "alice", "--cost", "4"); code != exitOK {
		t.Fatalf("exit %d: %s", code, ta.stderr.String())
	}
	printed := filepath.Join(dir, "printed")
	if !strings.HasPrefix(ta.stdout.String(), "alice:$2") {
		t.Fatalf("printed %q", ta.stdout.String())
	}
	if err := os.WriteFile(printed, ta.stdout.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := auth.LoadHtpasswd(printed)
	if err != nil {
		t.Fatal(err)
	}
	if !h.Check("alice", "s3cret") || h.Check("alice", "s3cret\n") {
		t.Error("printed line does not verify the password (alone)")
	}

	file := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(file, []byte("# team a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ user, password, want string }{
		{"alice", "first", `added user "alice"`},
		{"bob", "bobs-password\r\n", `added user "bob"`}, // CRLF from a Windows pipe
		{"alice", "second", `replaced user "alice"`},
	} {
		ta := newTestApp(nil)
		if code := ta.runStdin(tc.password, "auth", "htpasswd", tc.user, "--file", file, "--cost", "4"); code != exitOK {
			t.Fatalf("%s: exit %d: %s", tc.user, code, ta.stderr.String())
		}
		if !strings.Contains(ta.stdout.String(), tc.want) {
			t.Errorf("%s: printed %q, want %q", tc.user, ta.stdout.String(), tc.want)
		}
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("htpasswd file mode %v, want 0600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(file)
	if lines := strings.Split(string(b), "\n"); len(lines) != 4 || lines[0] != "# team a" || !strings.HasPrefix(lines[1], "alice:") || !strings.HasPrefix(lines[2], "bob:") {
		t.Errorf("htpasswd file:\n%s", b)
	}
	h, err = auth.LoadHtpasswd(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		user, password string
		ok             bool
	}{{"alice", "second", true}, {"alice", "first", false}, {"bob", "bobs-password", true}} {
		if got := h.Check(c.user, c.password); got != c.ok {
			t.Errorf("Check(%s, %s) = %v, want %v", c.user, c.password, got, c.ok)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".htpasswd.tmp-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}

	for _, tc := range []struct {
		name, stdin string
		args        []string
		want        string
	}{
		{"no password", "", []string{"carol"}, "no password on stdin"},
		{"colon in user", "pw\n", []string{"ca:rol"}, "contain no ':'"},
		{"no user", "pw\n", nil, "accepts 1 arg"},
		{"bad cost", "pw\n", []string{"carol", "--cost", "99"}, "--cost 99"},
	} {
		ta := newTestApp(nil)
		if code := ta.runStdin(tc.stdin, append([]string{"auth", "htpasswd"}, tc.args...)...); code != exitUsage {
			t.Errorf("%s: exit %d, want %d", tc.name, code, exitUsage)
		}
		if !strings.Contains(ta.stderr.String(), tc.want) {
			t.Errorf("%s: stderr %q, want %q", tc.name, ta.stderr.String(), tc.want)
		}
	}
}

// TestAuthToken: the token verifies against the key's public part with the
// registry's verifier and carries the subject, the scopes and the TTL.
func TestAuthToken(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "signing.pem")
	key, err := auth.LoadOrCreateSigningKey(file)
	if err != nil {
		t.Fatal(err)
	}
	ta := newTestApp(nil)
	start := time.Now()
	code := ta.run([]string{"auth", "token", "--key", file, "--user", "ci",
		"--scope", "repository:team-a/app:pull,push", "--scope", "registry:catalog:*",
		"--service", "registry.example.com", "--issuer", "berth-test", "--ttl", "10m"})
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, ta.stderr.String())
	}
	v, err := auth.NewVerifier(auth.VerifierConfig{Issuer: "berth-test", Audience: "registry.example.com", Keys: []crypto.PublicKey{key.Public()}})
	if err != nil {
		t.Fatal(err)
	}
	claims, err := v.Verify(strings.TrimSpace(ta.stdout.String()))
	if err != nil {
		t.Fatal(err)
	}
	if claims.Subject != "ci" {
		t.Errorf("subject %q", claims.Subject)
	}
	want := []auth.Access{
		{Type: "repository", Name: "team-a/app", Actions: []string{"pull", "push"}},
		{Type: "registry", Name: "catalog", Actions: []string{"*"}},
	}
	if !slices.EqualFunc(claims.Access, want, func(a, b auth.Access) bool {
		return a.Type == b.Type && a.Name == b.Name && slices.Equal(a.Actions, b.Actions)
	}) {
		t.Errorf("access %+v, want %+v", claims.Access, want)
	}
	if exp := claims.ExpiresAt.Time; exp.Before(start.Add(9*time.Minute)) || exp.After(time.Now().Add(10*time.Minute)) {
		t.Errorf("expires at %v, want 10m after %v", exp, start)
	}
	// Another service's verifier refuses it.
	other, err := auth.NewVerifier(auth.VerifierConfig{Issuer: "berth-test", Audience: "other", Keys: []crypto.PublicKey{key.Public()}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Verify(strings.TrimSpace(ta.stdout.String())); err == nil {
		t.Error("a verifier for another service accepted the token")
	}

	missing := filepath.Join(dir, "none.pem")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing key", []string{"--key", missing, "--user", "u", "--scope", "repository:a:pull"}, "berth auth keygen creates one"},
		{"no key flag", []string{"--user", "u", "--scope", "repository:a:pull"}, "--key is required"},
		{"no scope", []string{"--key", file, "--user", "u"}, "--scope is required"},
		{"bad scope", []string{"--key", file, "--user", "u", "--scope", "repository:a"}, "invalid scope"},
		{"bad ttl", []string{"--key", file, "--user", "u", "--scope", "repository:a:pull", "--ttl", "-1h"}, "--ttl"},
	} {
		ta := newTestApp(nil)
		if code := ta.run(append([]string{"auth", "token"}, tc.args...)); code != exitUsage {
			t.Errorf("%s: exit %d, want %d", tc.name, code, exitUsage)
		}
		if !strings.Contains(ta.stderr.String(), tc.want) || ta.stdout.Len() != 0 {
			t.Errorf("%s: stdout %q, stderr %q, want %q", tc.name, ta.stdout.String(), ta.stderr.String(), tc.want)
		}
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("token created a key at %s", missing)
	}
}

package ui_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/berth-registry/berth/auth"
	"github.com/berth-registry/berth/auth/issuer"
	"github.com/berth-registry/berth/registry/ui"
)

// signedUI is the UI over the fake source with the built-in issuer as its
// Access: alice may do everything, bob may pull team/**, anonymous visitors
// may pull alpine.
func signedUI(t *testing.T) (*ui.UI, *fakeSource, func(user string)) {
	t.Helper()
	dir := t.TempDir()
	hashes := map[string]string{}
	write := func(changed ...string) *auth.Htpasswd {
		for _, u := range changed {
			hash, err := bcrypt.GenerateFromPassword([]byte(u+"-password"), bcrypt.MinCost)
			if err != nil {
				t.Fatal(err)
			}
			hashes[u] = string(hash) // a new salt: a new fingerprint, as after a password change
		}
		var lines []string
		for u, h := range hashes {
			lines = append(lines, u+":"+h)
		}
		p := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		h, err := auth.LoadHtpasswd(p)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	users := write("alice", "bob")
	policy, err := auth.ParsePolicy([]byte(`
rules:
  - repositories: ["**"]
    users: [alice]
    actions: ["*"]
  - repositories: ["team/**"]
    users: [bob]
    actions: [pull]
  - repositories: [alpine]
    anonymous: true
    actions: [pull]
`))
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := issuer.New(issuer.Config{Issuer: "berth", Service: "berth", Key: key,
		Users: func() *auth.Htpasswd { return users }, Policy: func() *auth.Policy { return policy }})
	if err != nil {
		t.Fatal(err)
	}
	sessionKey, err := iss.DeriveKey("ui session")
	if err != nil {
		t.Fatal(err)
	}
	src := &fakeSource{}
	h, err := ui.New(ui.Options{Source: src, DeleteEnabled: true, Access: iss, SessionKey: sessionKey})
	if err != nil {
		t.Fatal(err)
	}
	// changePassword gives user a new password (and fingerprint).
	changePassword := func(user string) { users = write(user) }
	return h, src, changePassword
}

// browser keeps cookies across requests to h, as a browser would.
type browser struct {
	t       *testing.T
	h       http.Handler
	cookies map[string]*http.Cookie
}

func (b *browser) do(method, target string, form url.Values, origin string) (*http.Response, string) {
	b.t.Helper()
	var body *strings.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	} else {
		body = strings.NewReader("")
	}
	req := httptest.NewRequest(method, target, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	for _, c := range b.cookies {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	b.h.ServeHTTP(rec, req)
	res := rec.Result()
	for _, c := range res.Cookies() {
		b.cookies[c.Name] = c
	}
	b2, _ := io.ReadAll(res.Body)
	return res, string(b2)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf returns the CSRF token of the forms on page.
func (b *browser) csrf(page string) string {
	b.t.Helper()
	_, body := b.do(http.MethodGet, page, nil, "")
	m := csrfField.FindStringSubmatch(body)
	if m == nil {
		b.t.Fatalf("no CSRF token on %s", page)
	}
	return m[1]
}

func (b *browser) signIn(user, password string) *http.Response {
	b.t.Helper()
	res, _ := b.do(http.MethodPost, "/ui/login", url.Values{"user": {user}, "password": {password},
		"csrf": {b.csrf("/ui/login")}, "next": {"/ui/r/team/app"}}, "http://example.com")
	return res
}

func TestSignIn(t *testing.T) {
	h, src, changePassword := signedUI(t)
	origin := "http://example.com" // httptest requests go to example.com

	anon := &browser{t: t, h: h, cookies: map[string]*http.Cookie{}}
	_, list := anon.do(http.MethodGet, "/ui/", nil, "")
	if !strings.Contains(list, "alpine") || strings.Contains(list, "team/app") || !strings.Contains(list, `href="/ui/login"`) {
		t.Errorf("anonymous repository list: want alpine only and a sign-in link:\n%s", list)
	}
	if res, _ := anon.do(http.MethodGet, "/ui/r/team/app", nil, ""); res.StatusCode != http.StatusNotFound {
		t.Errorf("anonymous GET of a private repository: %d, want 404", res.StatusCode)
	}
	if _, api := anon.do(http.MethodGet, "/ui/api/repositories", nil, ""); strings.Contains(api, "team/app") {
		t.Errorf("anonymous JSON list shows a private repository: %s", api)
	}
	if res := anon.signIn("alice", "wrong"); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("a wrong password: %d, want 401", res.StatusCode)
	}

	bob := &browser{t: t, h: h, cookies: map[string]*http.Cookie{}}
	res := bob.signIn("bob", "bob-password")
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/ui/r/team/app" {
		t.Fatalf("bob signs in: %d to %q", res.StatusCode, res.Header.Get("Location"))
	}
	c := bob.cookies["berth_session"]
	if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
		t.Fatalf("session cookie %+v: want HttpOnly and SameSite=Strict", c)
	}
	_, page := bob.do(http.MethodGet, "/ui/r/team/app", nil, "")
	if !strings.Contains(page, "latest") || strings.Contains(page, "delete tag") || !strings.Contains(page, "bob") {
		t.Errorf("bob's view of team/app: want the tags, no delete control, his name:\n%.2000s", page)
	}
	token := bob.csrf("/ui/r/team/app")
	if res, _ := bob.do(http.MethodPost, "/ui/r/team/app/-/delete-tag", url.Values{"tag": {"latest"}, "csrf": {token}}, origin); res.StatusCode != http.StatusForbidden {
		t.Errorf("bob's forged delete: %d, want 403", res.StatusCode)
	}

	alice := &browser{t: t, h: h, cookies: map[string]*http.Cookie{}}
	alice.signIn("alice", "alice-password")
	if res, _ := alice.do(http.MethodPost, "/ui/r/team/app/-/delete-tag", url.Values{"tag": {"latest"}}, origin); res.StatusCode != http.StatusForbidden {
		t.Errorf("alice's delete without the CSRF token: %d, want 403", res.StatusCode)
	}
	if res, _ := alice.do(http.MethodPost, "/ui/r/team/app/-/delete-tag", url.Values{"tag": {"latest"}, "csrf": {bob.csrf("/ui/r/team/app")}}, origin); res.StatusCode != http.StatusForbidden {
		t.Errorf("alice's delete with bob's CSRF token: %d, want 403", res.StatusCode)
	}
	token = alice.csrf("/ui/r/team/app")
	if res, _ := alice.do(http.MethodPost, "/ui/r/team/app/-/delete-tag", url.Values{"tag": {"latest"}, "csrf": {token}}, origin); res.StatusCode != http.StatusSeeOther {
		t.Errorf("alice's delete: %d, want 303", res.StatusCode)
	}
	if len(src.deletedTags) != 1 || src.deletedTags[0] != "latest" {
		t.Errorf("deleted tags %v, want [latest] (alice's only)", src.deletedTags)
	}

	// A password change ends the session; signing out ends it too.
	changePassword("bob")
	if res, _ := bob.do(http.MethodGet, "/ui/r/team/app", nil, ""); res.StatusCode != http.StatusNotFound {
		t.Errorf("bob after his password changed: %d, want 404 (signed out)", res.StatusCode)
	}
	res, _ = alice.do(http.MethodPost, "/ui/logout", url.Values{"csrf": {alice.csrf("/ui/")}}, origin)
	if res.StatusCode != http.StatusSeeOther {
		t.Errorf("sign out: %d", res.StatusCode)
	}
	if res, _ := alice.do(http.MethodGet, "/ui/r/team/app", nil, ""); res.StatusCode != http.StatusNotFound {
		t.Errorf("alice after signing out: %d, want 404", res.StatusCode)
	}
}

func TestSignInRedirectsOnlyInside(t *testing.T) {
	h, _, _ := signedUI(t)
	for _, next := range []string{"https://evil.example/", "//evil.example/ui/", "/v2/_catalog", `/\evil.example`, "javascript:alert(1)"} {
		b := &browser{t: t, h: h, cookies: map[string]*http.Cookie{}}
		res, _ := b.do(http.MethodPost, "/ui/login", url.Values{"user": {"alice"}, "password": {"alice-password"},
			"csrf": {b.csrf("/ui/login")}, "next": {next}}, "http://example.com")
		if loc := res.Header.Get("Location"); res.StatusCode != http.StatusSeeOther || loc != "/ui/" {
			t.Errorf("next %q: %d to %q, want 303 to /ui/", next, res.StatusCode, loc)
		}
	}
}

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
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/berth-registry/berth/auth"
)

func hashOf(t *testing.T, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// htpasswdOf loads an htpasswd file of the given "user:hash" lines.
func htpasswdOf(t *testing.T, lines ...string) *auth.Htpasswd {
	t.Helper()
	p := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := auth.LoadHtpasswd(p)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestRefreshBoundToCredential: a refresh token works while its user's
// htpasswd entry is unchanged (whatever happens to other users), and stops
// working when the user is removed or changes password; the token holds no
// hash.
func TestRefreshBoundToCredential(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	policy, err := auth.ParsePolicy([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	bob1, alice := "bob:"+hashOf(t, "s3cret"), "alice:"+hashOf(t, "alice-pw")
	users := htpasswdOf(t, bob1, alice)
	now := time.Unix(1_750_000_000, 0)
	iss, err := New(Config{Issuer: testIssuer, Service: testService, Key: key,
		Users:  func() *auth.Htpasswd { return users },
		Policy: func() *auth.Policy { return policy },
		Now:    func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{iss: iss, key: key}
	login := func(user, password string) string {
		t.Helper()
		code, body := f.post(t, url.Values{"grant_type": {"password"}, "username": {user}, "password": {password},
			"service": {testService}, "client_id": {"test"}, "access_type": {"offline"}})
		if code != http.StatusOK || body["refresh_token"] == nil {
			t.Fatalf("login %s: %d %v", user, code, body)
		}
		return body["refresh_token"].(string)
	}
	refresh := func(token string) int {
		t.Helper()
		code, _ := f.post(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token},
			"service": {testService}, "client_id": {"test"}, "scope": {"repository:team-a/app:pull"}})
		return code
	}

	bobToken, aliceToken := login("bob", "s3cret"), login("alice", "alice-pw")
	if strings.Contains(bobToken, "$2") {
		t.Error("refresh token carries a bcrypt hash")
	}
	var c refreshClaims
	if _, _, err := jwt.NewParser().ParseUnverified(bobToken, &c); err != nil || c.Credential == "" ||
		strings.Contains(c.Credential, "$2") || strings.Contains(bob1, c.Credential) {
		t.Errorf("refresh claims %+v, %v: want a fingerprint, not the hash", c, err)
	}
	if code := refresh(bobToken); code != http.StatusOK {
		t.Fatalf("fresh refresh token: %d", code)
	}

	// Another user added, bob's line unchanged: still valid.
	users = htpasswdOf(t, bob1, alice, "carol:"+hashOf(t, "carol-pw"))
	if code := refresh(bobToken); code != http.StatusOK {
		t.Errorf("refresh after another user was added: %d, want 200", code)
	}

	// Bob changes password: the old token ends, a new login works.
	users = htpasswdOf(t, "bob:"+hashOf(t, "new-s3cret"), alice)
	if code := refresh(bobToken); code != http.StatusUnauthorized {
		t.Errorf("refresh after a password change: %d, want 401", code)
	}
	bobToken2 := login("bob", "new-s3cret")
	if code := refresh(bobToken2); code != http.StatusOK {
		t.Errorf("refresh token of the new password: %d, want 200", code)
	}

	// Bob removed: his token ends, alice's does not.
	users = htpasswdOf(t, alice)
	if code := refresh(bobToken2); code != http.StatusUnauthorized {
		t.Errorf("refresh after the user was removed: %d, want 401", code)
	}
	if code := refresh(aliceToken); code != http.StatusOK {
		t.Errorf("alice's refresh after bob was removed: %d, want 200", code)
	}

}

package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// TestAuthUsersReloaded runs berth in token mode and changes its htpasswd
// file while it serves: a user added with `berth auth htpasswd` logs in
// without a restart, and once removed, neither that user's password nor the
// refresh token docker would keep as its identitytoken works any more; the
// other user's refresh token still does.
func TestAuthUsersReloaded(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte("alice-pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	aliceLine := "alice:" + string(hash) + "\n"
	htpasswd := filepath.Join(dir, "htpasswd")
	policy := filepath.Join(dir, "policy.yaml")
	for path, content := range map[string]string{
		htpasswd: aliceLine,
		policy:   "rules:\n  - repositories: [\"**\"]\n    authenticated: true\n    actions: [pull]\n",
	} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	srv := startServerWith(t, Options{Kind: Berth, Driver: Filesystem, Root: t.TempDir(), Auth: fmt.Sprintf(
		"  mode: token\n  htpasswd: %q\n  issuer:\n    key: %q\n    policy: %q\n",
		htpasswd, filepath.Join(dir, "auth-key.pem"), policy)})

	// login is docker login: the GET flow with offline_token; it returns the
	// status and the refresh token. user "": an anonymous token request.
	login := func(user, password string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, srv.URL+"/auth/token?service=berth&offline_token=true&client_id=docker", nil)
		if err != nil {
			t.Fatal(err)
		}
		if user != "" {
			req.SetBasicAuth(user, password)
		}
		code, body := roundTrip(t, req)
		refresh, _ := body["refresh_token"].(string)
		return code, refresh
	}
	// refresh is what docker does with its identitytoken: the OAuth2 POST flow.
	refresh := func(token string) int {
		t.Helper()
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}, "service": {"berth"},
			"client_id": {"docker"}, "scope": {"repository:team/app:pull"}}
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/auth/token", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		code, _ := roundTrip(t, req)
		return code
	}
	// reloaded waits until the server has logged n reloads of the htpasswd
	// file (it looks at the file at most once a second, when it is used).
	reloaded := func(n int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			b, err := os.ReadFile(srv.LogPath)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Count(string(b), `msg="reloaded htpasswd file"`) >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the server did not reload the htpasswd file (%d times)", n)
			}
			// The file is looked at when a login uses it: an anonymous token
			// request checks no password and counts no failure.
			if code, _ := login("", ""); code != http.StatusOK {
				t.Fatalf("anonymous token request: %d", code)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	code, aliceRefresh := login("alice", "alice-pw")
	if code != http.StatusOK || aliceRefresh == "" {
		t.Fatalf("alice: %d, refresh token %t", code, aliceRefresh != "")
	}

	// Add bob the documented way.
	cmd := exec.Command(berthBinary(t), "auth", "htpasswd", "bob", "--file", htpasswd, "--cost", "4")
	cmd.Stdin = strings.NewReader("bob-pw\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("berth auth htpasswd bob: %v\n%s", err, out)
	}
	reloaded(1)
	code, bobRefresh := login("bob", "bob-pw")
	if code != http.StatusOK || bobRefresh == "" {
		t.Fatalf("bob after being added: %d, refresh token %t", code, bobRefresh != "")
	}
	if code := refresh(bobRefresh); code != http.StatusOK {
		t.Fatalf("bob's refresh token: %d", code)
	}

	// Remove bob: a new file renamed over the old one, as editors do.
	tmp := htpasswd + ".new"
	if err := os.WriteFile(tmp, []byte(aliceLine), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, htpasswd); err != nil {
		t.Fatal(err)
	}
	reloaded(2)
	if code := refresh(bobRefresh); code != http.StatusUnauthorized {
		t.Errorf("bob's refresh token after his removal: %d, want 401", code)
	}
	if code, _ := login("bob", "bob-pw"); code != http.StatusUnauthorized {
		t.Errorf("bob's password after his removal: %d, want 401", code)
	}
	if code := refresh(aliceRefresh); code != http.StatusOK {
		t.Errorf("alice's refresh token: %d, want 200", code)
	}
}

// roundTrip sends req and decodes the JSON body.
func roundTrip(t *testing.T, req *http.Request) (int, map[string]any) {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		t.Fatalf("%s %s: %d, body: %v", req.Method, req.URL.Path, res.StatusCode, err)
	}
	return res.StatusCode, body
}

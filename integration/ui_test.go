package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
)

// TestUI: the web UI of a real berth serves the test images pushed by
// skopeo: the repository list (HTML and JSON), a repository's tags with
// pull commands, an image's history and layers, an index's platforms; a
// delete from another site is refused, one from the UI itself removes the
// tag. Under token auth it offers to sign in (TestUIBrowser drives that
// in a browser).
func TestUI(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	env := toolEnv(t)
	needTools(t, env, "skopeo")
	dir, imgs := testImages(t)
	srv := startServer(t, Berth, Filesystem, t.TempDir())
	byName := map[string]testImage{}
	for _, img := range imgs {
		byName[img.Name] = img
	}
	for _, p := range []struct{ name, ref string }{{"debian", "library/debian:12"}, {"multiarch", "team/multi:v1"}} {
		if err := run(t.Context(), env, io.Discard, "skopeo", "--insecure-policy", "copy", "--all", "--preserve-digests",
			"--dest-tls-verify=false", "oci:"+filepath.Join(dir, p.name)+":latest", "docker://"+srv.Host+"/"+p.ref); err != nil {
			t.Fatalf("push %s: %v", p.name, err)
		}
	}
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
		}
		return resp.StatusCode, string(b)
	}
	wantPage := func(path string, want ...string) {
		t.Helper()
		status, body := get(path)
		if status != http.StatusOK {
			t.Fatalf("GET %s: %d", path, status)
		}
		for _, w := range want {
			if !strings.Contains(body, w) {
				t.Errorf("GET %s: no %q in the page", path, w)
			}
		}
	}

	wantPage("/ui/", "library/debian", "team/multi")
	_, list := get("/ui/api/repositories")
	var repos []struct {
		Name  string `json:"name"`
		Tags  int    `json:"tags"`
		Bytes int64  `json:"bytes"`
	}
	if err := json.Unmarshal([]byte(list), &repos); err != nil || len(repos) != 2 {
		t.Fatalf("/ui/api/repositories: %v, %s", err, list)
	}
	for _, r := range repos {
		if r.Tags != 1 || r.Bytes <= 0 {
			t.Errorf("repository %+v: want 1 tag and a size", r)
		}
	}
	debian, multi := byName["debian"].Digest, byName["multiarch"].Digest
	wantPage("/ui/r/library/debian", "docker pull "+srv.Host+"/library/debian:12", debian)
	wantPage("/ui/r/library/debian/@"+debian, "debootstrap", "Layers", "12")
	wantPage("/ui/r/team/multi", "linux/amd64", "linux/arm64")
	wantPage("/ui/r/team/multi/@"+multi, "linux/amd64")
	if status, _ := get("/ui/r/no/such"); status != http.StatusNotFound {
		t.Errorf("GET of an unknown repository's page: %d, want 404", status)
	}

	del := func(origin string) int {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/ui/r/library/debian/-/delete-tag",
			strings.NewReader(url.Values{"tag": {"12"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	tags := func() string {
		_, body := httpDo(t, noRedirect, http.MethodGet, srv.URL+"/v2/library/debian/tags/list", nil, nil, http.StatusOK)
		return string(body)
	}
	if status := del("http://evil.example"); status != http.StatusForbidden || !strings.Contains(tags(), `"12"`) {
		t.Errorf("a cross-site delete: %d, tags %s; want 403 and the tag kept", status, tags())
	}
	if status := del(srv.URL); status != http.StatusSeeOther || strings.Contains(tags(), `"12"`) {
		t.Errorf("a delete from the UI: %d, tags %s; want 303 and the tag gone", status, tags())
	}

	// Under token auth the UI asks visitors to sign in (TestUIBrowser
	// signs in), and shows anonymous visitors nothing the policy keeps
	// from them.
	tok := startTokenServer(t, "alice", "secret")
	resp, err := http.Get(tok.URL + "/ui/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `href="/ui/login"`) {
		t.Errorf("GET /ui/ under token auth: %d, want the page with a sign-in link", resp.StatusCode)
	}
}

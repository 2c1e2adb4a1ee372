package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/bcrypt"
)

// TestUIBrowser drives headless Chromium (Debian's chromium, which make
// test installs) through the web UI of a real berth in token mode with its
// built-in issuer, with chromedp: the anonymous list hides private
// repositories; alice signs in, sorts a repository by push time, opens an
// image with a signature referrer (its history, layers and referrer tree)
// and deletes a tag through the page's own form and confirmation dialog;
// bob, who may only pull, sees no delete control, and a delete he forges
// is refused. A screenshot of each page goes to the test's artifact
// directory (go test -artifacts keeps them; the path is logged).
func TestUIBrowser(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	chromium, err := exec.LookPath("chromium")
	prerequisite(t, err == nil, "chromium not installed (make test installs Debian's chromium)")
	env := toolEnv(t)
	needTools(t, env, "skopeo")
	dir, imgs := testImages(t)
	srv := startUIServer(t)
	byName := map[string]testImage{}
	for _, img := range imgs {
		byName[img.Name] = img
	}
	// app:old first, then app:new a second later: sorted by push time,
	// newest first, new comes before old.
	for _, p := range []struct{ name, ref string }{
		{"busybox", "team/app:old"}, {"debian", "team/app:new"}, {"multiarch", "public/tool:v1"},
	} {
		if err := run(t.Context(), env, io.Discard, "skopeo", "--insecure-policy", "copy", "--all", "--preserve-digests",
			"--dest-tls-verify=false", "--dest-creds", "alice:alice-password",
			"oci:"+filepath.Join(dir, p.name)+":latest", "docker://"+srv.Host+"/"+p.ref); err != nil {
			t.Fatalf("push %s: %v", p.name, err)
		}
		time.Sleep(1100 * time.Millisecond) // distinct push times at the pages' one-second resolution
	}
	debian := byName["debian"]
	sig := pushSignature(t, srv, "team/app", debian)

	shots := t.ArtifactDir()
	t.Logf("screenshots in %s", shots)
	alloc, cancel := chromedp.NewExecAllocator(t.Context(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(t.TempDir()))...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(alloc)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	// Accept the delete forms' confirmation dialogs.
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range dialogs {
			if err != nil {
				return
			}
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	shot := func(name string) {
		t.Helper()
		b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	eval := func(js string) []string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return v
	}
	const tagCells = `[...document.querySelectorAll("#tags tbody td.tag")].map(td => td.textContent.trim())`

	signIn := func(user string) {
		t.Helper()
		do("signing in as "+user,
			chromedp.Navigate(srv.URL+"/ui/login"),
			chromedp.WaitVisible(chromedp.CSS(`#user`)),
			chromedp.SendKeys(chromedp.CSS(`#user`), user),
			chromedp.SendKeys(chromedp.CSS(`#password`), user+"-password"),
			chromedp.Click(chromedp.CSS(`form.login button`)),
			chromedp.WaitVisible(chromedp.CSS(`header .user`)))
	}

	do("the anonymous repository list",
		chromedp.Navigate(srv.URL+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/ui/r/public/tool"]`)))
	shot("anonymous")
	if list := text("main"); strings.Contains(list, "team/app") {
		t.Errorf("the anonymous list shows the private team/app:\n%s", list)
	}

	signIn("alice")
	do("the repository list",
		chromedp.Navigate(srv.URL+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/ui/r/team/app"]`)))
	shot("repositories")
	list := text("main")
	for _, want := range []string{"team/app", "public/tool"} {
		if !strings.Contains(list, want) {
			t.Errorf("alice's repository list does not show %s", want)
		}
	}

	do("the storage page",
		chromedp.Navigate(srv.URL+"/ui/storage"),
		chromedp.WaitVisible(chromedp.CSS(`#usage`)))
	shot("storage")
	if st := text("main"); !strings.Contains(st, "team/app") || !strings.Contains(st, "berth gc") {
		t.Errorf("the storage page does not show team/app's usage and the collection:\n%s", st)
	}

	do("back to the repository list", chromedp.Navigate(srv.URL+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/ui/r/team/app"]`)))
	do("the repository, sorted by push time",
		chromedp.Click(chromedp.CSS(`a[href="/ui/r/team/app"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#tags`)),
		chromedp.Click(chromedp.CSS(`#tags th[data-key="pushed"] a`)),
		chromedp.Sleep(300*time.Millisecond), // a client-side sort or a new page: let either settle
		chromedp.WaitVisible(chromedp.CSS(`#tags`)))
	shot("repository")
	sortDir := eval(`[document.querySelector('#tags th[data-key="pushed"]').getAttribute("aria-sort") || ""]`)
	order := eval(tagCells)
	want := map[string]string{"descending": "new,old", "ascending": "old,new"}[sortDir[0]]
	if want == "" || strings.Join(order, ",") != want {
		t.Errorf("sorted by push time (aria-sort %q): %v, want %s", sortDir[0], order, want)
	}

	do("the image with its signature",
		chromedp.Navigate(srv.URL+"/ui/r/team/app/@"+debian.Digest),
		chromedp.WaitVisible(chromedp.CSS(`main`)))
	shot("image")
	img := text("main")
	for _, want := range []string{"debootstrap", "History", "Layers", "Referrers", sig[:19]} {
		if !strings.Contains(img, want) {
			t.Errorf("the image page does not show %q", want)
		}
	}

	do("deleting tag old through the page",
		chromedp.Navigate(srv.URL+"/ui/r/team/app"),
		chromedp.WaitVisible(chromedp.CSS(`#tags`)),
		chromedp.Click(chromedp.CSS(`form[action$="/delete-tag"]:has(input[value="old"]) button`)),
		chromedp.WaitNotPresent(chromedp.CSS(`input[value="old"]`)))
	shot("after-delete")
	if left := eval(tagCells); strings.Join(left, ",") != "new" {
		t.Errorf("tags on the page after the delete: %v, want only new", left)
	}
	_, body := httpDo(t, noRedirect, http.MethodGet, srv.URL+"/v2/team/app/tags/list", nil,
		map[string]string{"Authorization": "Bearer " + uiToken(t, srv, "repository:team/app:pull")}, http.StatusOK)
	var tl struct{ Tags []string }
	if err := json.Unmarshal(body, &tl); err != nil || strings.Join(tl.Tags, ",") != "new" {
		t.Errorf("tags after the delete: %s (%v), want only new", body, err)
	}

	// bob may pull team/**, nothing more.
	do("signing out", chromedp.Click(chromedp.CSS(`header form[action="/ui/logout"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/ui/login"]`)))
	signIn("bob")
	do("bob's view of team/app",
		chromedp.Navigate(srv.URL+"/ui/r/team/app"),
		chromedp.WaitVisible(chromedp.CSS(`#tags`)))
	shot("pull-only")
	if n := eval(`[String(document.querySelectorAll("form[action$='/delete-tag'], form[action$='/delete']").length)]`); n[0] != "0" {
		t.Errorf("bob sees %s delete forms, want none", n[0])
	}
	// A delete bob forges with his own session and CSRF token: a form he
	// adds to the page himself.
	forge := chromedp.Evaluate[bool](`(() => {
			const f = document.createElement("form");
			f.method = "post"; f.action = "/ui/r/team/app/-/delete-tag";
			for (const [k, v] of [["tag", "new"], ["csrf", document.querySelector("input[name=csrf]").value]]) {
				const i = document.createElement("input"); i.type = "hidden"; i.name = k; i.value = v; f.append(i);
			}
			document.body.append(f); f.submit(); return true;
		})()`)
	do("bob's forged delete",
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error { _, err := forge(ctx, tg); return err }),
		chromedp.WaitVisible(chromedp.CSS(`main h1`)),
		chromedp.Sleep(300*time.Millisecond))
	shot("forged-delete")
	if h1 := text("main h1"); !strings.Contains(h1, "403") {
		t.Errorf("bob's forged delete answered %q, want 403", h1)
	}
	do("bob's view of team/app again",
		chromedp.Navigate(srv.URL+"/ui/r/team/app"),
		chromedp.WaitVisible(chromedp.CSS(`#tags`)))
	if left := eval(tagCells); strings.Join(left, ",") != "new" {
		t.Errorf("tags after bob's forged delete: %v, want new still there", left)
	}
	do("bob asks for the storage page", chromedp.Navigate(srv.URL+"/ui/storage"),
		chromedp.WaitVisible(chromedp.CSS(`main h1`)))
	if h1 := text("main h1"); !strings.Contains(h1, "404") {
		t.Errorf("bob's storage page: %q, want 404 (it names every repository)", h1)
	}
}

// startUIServer starts berth in token mode with its built-in issuer: alice
// may do everything, bob may pull team/**, anonymous visitors may pull
// public/**. Passwords are USER-password.
func startUIServer(t *testing.T) *Server {
	t.Helper()
	dir := t.TempDir()
	var lines []string
	for _, u := range []string{"alice", "bob"} {
		hash, err := bcrypt.GenerateFromPassword([]byte(u+"-password"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, u+":"+string(hash))
	}
	htpasswd, policy := filepath.Join(dir, "htpasswd"), filepath.Join(dir, "policy.yaml")
	for path, content := range map[string]string{
		htpasswd: strings.Join(lines, "\n") + "\n",
		policy: "rules:\n" +
			"  - repositories: [\"**\"]\n    users: [alice]\n    actions: [\"*\"]\n" +
			"  - repositories: [\"team/**\"]\n    users: [bob]\n    actions: [pull]\n" +
			"  - repositories: [\"public/**\"]\n    anonymous: true\n    authenticated: true\n    actions: [pull]\n" +
			"catalog:\n  users: [alice]\n",
	} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return startServerWith(t, Options{Kind: Berth, Driver: Filesystem, Root: t.TempDir(), Auth: fmt.Sprintf(
		"  mode: token\n  htpasswd: %q\n  issuer:\n    key: %q\n    policy: %q\n",
		htpasswd, filepath.Join(dir, "auth-key.pem"), policy)})
}

// uiToken returns a token of srv's issuer for alice and scope.
func uiToken(t *testing.T, srv *Server, scope string) string {
	t.Helper()
	q := url.Values{"service": {"berth"}, "scope": {scope}}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/auth/token?"+q.Encode(), nil)
	req.SetBasicAuth("alice", "alice-password")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.Token == "" {
		t.Fatalf("token for %s: %s, %v", scope, resp.Status, err)
	}
	return tok.Token
}

// pushSignature pushes an OCI artifact whose subject is img into repo (a
// stand-in for a cosign signature) and returns its digest.
func pushSignature(t *testing.T, srv *Server, repo string, img testImage) string {
	t.Helper()
	base := srv.URL
	auth := map[string]string{"Authorization": "Bearer " + uiToken(t, srv, "repository:"+repo+":pull,push")}
	empty := []byte("{}")
	payload := []byte(`{"critical":{"image":{"docker-manifest-digest":"` + img.Digest + `"}}}`)
	for _, b := range [][]byte{empty, payload} {
		h := map[string]string{"Content-Type": "application/octet-stream"}
		maps.Copy(h, auth)
		httpDo(t, noRedirect, http.MethodPost, base+"/v2/"+repo+"/blobs/uploads/?digest="+sha256Digest(b), b, h, http.StatusCreated)
	}
	body := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"artifactType":"application/vnd.dev.cosign.artifact.sig.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":%q,"size":2},`+
		`"layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","digest":%q,"size":%d}],`+
		`"subject":{"mediaType":%q,"digest":%q,"size":%d}}`,
		ociManifest, sha256Digest(empty), sha256Digest(payload), len(payload), img.MediaType, img.Digest, img.Size)
	d := sha256Digest(body)
	h := map[string]string{"Content-Type": ociManifest}
	maps.Copy(h, auth)
	httpDo(t, noRedirect, http.MethodPut, base+"/v2/"+repo+"/manifests/"+d, body, h, http.StatusCreated)
	return d
}

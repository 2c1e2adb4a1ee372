package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// TestUIBrowser drives headless Chromium (Debian's chromium, which make
// test installs) through the web UI of a real berth with chromedp: the
// repository list, a repository sorted by push time, an image with a
// signature referrer (its history, layers and referrer tree), and deleting
// a tag through the page's own form and confirmation dialog. A screenshot
// of each page goes to the test's artifact directory (go test -artifacts
// keeps them; the path is logged). Signing in and per-user rights come
// with the UI's sign-in.
func TestUIBrowser(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	chromium, err := exec.LookPath("chromium")
	prerequisite(t, err == nil, "chromium not installed (make test installs Debian's chromium)")
	env := toolEnv(t)
	needTools(t, env, "skopeo")
	dir, imgs := testImages(t)
	srv := startServer(t, Berth, Filesystem, t.TempDir())
	byName := map[string]testImage{}
	for _, img := range imgs {
		byName[img.Name] = img
	}
	// app:old first, then app:new a second later: sorted by push time,
	// newest first, new comes before old.
	for _, p := range []struct{ name, ref string }{
		{"busybox", "team/app:old"}, {"debian", "team/app:new"}, {"multiarch", "team/multi:v1"},
	} {
		if err := run(t.Context(), env, io.Discard, "skopeo", "--insecure-policy", "copy", "--all", "--preserve-digests",
			"--dest-tls-verify=false", "oci:"+filepath.Join(dir, p.name)+":latest", "docker://"+srv.Host+"/"+p.ref); err != nil {
			t.Fatalf("push %s: %v", p.name, err)
		}
		time.Sleep(1100 * time.Millisecond) // distinct push times at the pages' one-second resolution
	}
	debian := byName["debian"]
	sig := pushSignature(t, srv.URL, "team/app", debian)

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

	do("the repository list",
		chromedp.Navigate(srv.URL+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/ui/r/team/app"]`)))
	shot("repositories")
	list := text("main")
	for _, want := range []string{"team/app", "team/multi"} {
		if !strings.Contains(list, want) {
			t.Errorf("the repository list does not show %s", want)
		}
	}

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
	_, body := httpDo(t, noRedirect, http.MethodGet, srv.URL+"/v2/team/app/tags/list", nil, nil, http.StatusOK)
	var tl struct{ Tags []string }
	if err := json.Unmarshal(body, &tl); err != nil || strings.Join(tl.Tags, ",") != "new" {
		t.Errorf("tags after the delete: %s (%v), want only new", body, err)
	}
}

// pushSignature pushes an OCI artifact whose subject is img into repo (a
// stand-in for a cosign signature) and returns its digest.
func pushSignature(t *testing.T, base, repo string, img testImage) string {
	t.Helper()
	empty := []byte("{}")
	payload := []byte(`{"critical":{"image":{"docker-manifest-digest":"` + img.Digest + `"}}}`)
	putBlob(t, base, repo, empty)
	putBlob(t, base, repo, payload)
	body := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"artifactType":"application/vnd.dev.cosign.artifact.sig.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":%q,"size":2},`+
		`"layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","digest":%q,"size":%d}],`+
		`"subject":{"mediaType":%q,"digest":%q,"size":%d}}`,
		ociManifest, sha256Digest(empty), sha256Digest(payload), len(payload), img.MediaType, img.Digest, img.Size)
	d := sha256Digest(body)
	httpDo(t, noRedirect, http.MethodPut, base+"/v2/"+repo+"/manifests/"+d, body,
		map[string]string{"Content-Type": ociManifest}, http.StatusCreated)
	return d
}

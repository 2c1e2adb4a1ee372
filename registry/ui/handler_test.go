package ui_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/registry/ui"
	"github.com/opencontainers/go-digest"
)

const hostile = `<script>alert(1)</script>`

var (
	dApp    = digest.FromString("app image")
	dIndex  = digest.FromString("app index")
	dArm    = digest.FromString("app arm64")
	dSig    = digest.FromString("signature")
	dSBOM   = digest.FromString("sbom")
	dSigSig = digest.FromString("signature of the sbom")
	dLayer1 = digest.FromString("layer 1")
	dLayer2 = digest.FromString("layer 2")
	t0      = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
)

// fakeSource serves fixed data and records deletes.
type fakeSource struct {
	mu             sync.Mutex
	deletedTags    []string
	deletedDigests []digest.Digest
}

func (f *fakeSource) Repositories(ctx context.Context) ([]ui.Repository, error) {
	return []ui.Repository{
		{Name: "alpine", Tags: 1, Bytes: 3_400_000, LastPush: t0},
		{Name: "docker.io/library/nginx", Tags: 2, Bytes: 70_000_000, LastPush: t0.Add(-time.Hour), Upstream: "docker-hub"},
		{Name: "team/app", Tags: 3, Bytes: 12_345_678, LastPush: t0.Add(time.Hour)},
		{Name: "team/web", Tags: 1, Bytes: 999, LastPush: t0.Add(-48 * time.Hour)},
	}, nil
}

func (f *fakeSource) Repository(ctx context.Context, name string) (ui.RepositoryPage, error) {
	switch name {
	case "team/app":
		f.mu.Lock()
		defer f.mu.Unlock()
		return ui.RepositoryPage{
			Repository: ui.Repository{Name: "team/app", Tags: 3, Bytes: 12_345_678, LastPush: t0.Add(time.Hour)},
			TagList: []ui.Tag{
				{Name: "latest", Digest: dApp, MediaType: "application/vnd.oci.image.manifest.v1+json",
					Platforms: []string{"linux/amd64"}, Bytes: 5_000_000, Created: t0.Add(-24 * time.Hour), Pushed: t0.Add(time.Hour),
					Referrers: map[string]int{"application/vnd.dev.cosign.artifact.sig.v1+json": 1, "application/spdx+json": 2}},
				{Name: "multi", Digest: dIndex, MediaType: "application/vnd.oci.image.index.v1+json",
					Platforms: []string{"linux/amd64", "linux/arm64/v8"}, Bytes: 9_000_000, Created: t0.Add(-48 * time.Hour), Pushed: t0.Add(-time.Hour)},
				{Name: "v1.0", Digest: dApp, MediaType: "application/vnd.oci.image.manifest.v1+json",
					Platforms: []string{"linux/amd64"}, Bytes: 5_000_000, Created: t0.Add(-24 * time.Hour), Pushed: t0},
			},
		}, nil
	case "boom":
		return ui.RepositoryPage{}, errors.New("storage: secret-internal-detail at /var/lib/berth")
	}
	return ui.RepositoryPage{}, ui.ErrNotFound
}

func (f *fakeSource) Image(ctx context.Context, name string, d digest.Digest) (ui.Image, error) {
	if name != "team/app" {
		return ui.Image{}, ui.ErrNotFound
	}
	switch d {
	case dApp:
		return appImage(), nil
	case dIndex:
		return ui.Image{Repository: "team/app", Digest: dIndex, MediaType: "application/vnd.oci.image.index.v1+json",
			Tags: []string{"multi"}, Bytes: 9_000_000, Created: t0,
			Children: []ui.Child{
				{Descriptor: ui.Descriptor{MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: dApp, Size: 1234}, Platform: "linux/amd64"},
				{Descriptor: ui.Descriptor{MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: dArm, Size: 1235}, Platform: "linux/arm64/v8"},
			}}, nil
	}
	return ui.Image{}, ui.ErrNotFound
}

func appImage() ui.Image {
	l1 := ui.Descriptor{MediaType: "application/vnd.oci.image.layer.v1.tar+gzip", Digest: dLayer1, Size: 3_000_000}
	l2 := ui.Descriptor{MediaType: "application/vnd.oci.image.layer.v1.tar+gzip", Digest: dLayer2, Size: 2_000_000}
	return ui.Image{
		Repository: "team/app", Digest: dApp, MediaType: "application/vnd.oci.image.manifest.v1+json",
		Tags: []string{"latest", "v1.0"}, Bytes: 5_000_000, Platform: "linux/amd64", Created: t0.Add(-24 * time.Hour),
		Config: &ui.ImageConfig{
			Entrypoint:   []string{"/usr/bin/app"},
			Cmd:          []string{"--listen", ":8080"},
			Env:          []string{"PATH=/usr/bin", "EVIL=" + hostile},
			User:         "app:app",
			WorkingDir:   "/srv/app",
			ExposedPorts: []string{"8080/tcp"},
			Volumes:      []string{"/data"},
			Labels:       map[string]string{"org.opencontainers.image.source": "https://example.com/app", "evil": hostile},
		},
		History: []ui.HistoryEntry{
			{Created: t0.Add(-48 * time.Hour), CreatedBy: "ADD rootfs.tar.gz / # buildkit", Layer: &l1},
			{Created: t0.Add(-24 * time.Hour), CreatedBy: "ENV APP_MODE=prod", EmptyLayer: true},
			{Created: t0.Add(-24 * time.Hour), CreatedBy: "RUN make install && rm -rf /tmp/*", Layer: &l2},
		},
		Layers: []ui.Descriptor{l1, l2},
		Referrers: []ui.Referrer{
			{Descriptor: ui.Descriptor{MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: dSig, Size: 500},
				ArtifactType: "application/vnd.dev.cosign.artifact.sig.v1+json"},
			{Descriptor: ui.Descriptor{MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: dSBOM, Size: 900},
				ArtifactType: "application/spdx+json",
				Referrers: []ui.Referrer{{Descriptor: ui.Descriptor{MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: dSigSig, Size: 400},
					ArtifactType: "application/vnd.dev.cosign.artifact.sig.v1+json"}}},
		},
	}
}

func (f *fakeSource) DeleteTag(ctx context.Context, name, tag string) error {
	if name != "team/app" {
		return ui.ErrNotFound
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deletedTags = append(f.deletedTags, tag)
	return nil
}

func (f *fakeSource) DeleteManifest(ctx context.Context, name string, d digest.Digest) ([]string, error) {
	if name != "team/app" || (d != dApp && d != dIndex) {
		return nil, ui.ErrNotFound
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deletedDigests = append(f.deletedDigests, d)
	if d == dApp {
		return []string{"latest", "v1.0"}, nil
	}
	return []string{"multi"}, nil
}

// newUI returns the handler over a fresh fakeSource, and the log it writes.
func newUI(t *testing.T, deleteEnabled bool) (*ui.UI, *fakeSource, *bytes.Buffer) {
	t.Helper()
	src := &fakeSource{}
	var logs bytes.Buffer
	h, err := ui.New(ui.Options{
		Source: src, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		PullHost: "registry.example:5000", DeleteEnabled: deleteEnabled,
	})
	if err != nil {
		t.Fatal(err)
	}
	return h, src, &logs
}

// do sends one request to h and returns the response and its body.
func do(t *testing.T, h http.Handler, method, target string, body io.Reader, header http.Header) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(method, target, body)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	res := rec.Result()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func checkSecurityHeaders(t *testing.T, what string, res *http.Response) {
	t.Helper()
	want := map[string]string{
		"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
			"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
		"X-Content-Type-Options": "nosniff",
		"Referrer-Policy":        "same-origin",
	}
	for k, v := range want {
		if got := res.Header.Get(k); got != v {
			t.Errorf("%s: %s = %q, want %q", what, k, got, v)
		}
	}
}

func TestPages(t *testing.T) {
	h, _, _ := newUI(t, true)
	tests := []struct {
		path    string
		status  int
		want    []string
		notWant []string
	}{
		{"/ui/", 200, []string{
			"<title>Repositories · Berth</title>", `href="/ui/r/team/app"`, "team/web", "(top level)", "docker.io/",
			"cache: docker-hub", "12.3 MB", "3.40 MB", "999 B", `data-sort="12345678"`,
			`title="2025-03-01 13:00:00 UTC"`, `aria-sort="ascending"`, `href="/ui/?order=desc&amp;sort=name"`,
			`name="q"`, "4 repositories",
		}, nil},
		{"/ui/?q=team", 200, []string{"team/app", "team/web", "2 of 4 repositories"}, []string{"alpine", "nginx"}},
		{"/ui/r/team/app", 200, []string{
			"<h1 class=\"name\">team/app", "docker pull registry.example:5000/team/app:latest",
			"docker pull registry.example:5000/team/app@" + dApp.String(),
			`href="/ui/r/team/app/@` + dIndex.String() + `"`, "linux/arm64/v8", "OCI index",
			">signature</span>", ">SBOM ×2</span>", "delete tag", "delete manifest and its tags: latest, v1.0",
			`action="/ui/r/team/app/-/delete-tag"`, `action="/ui/r/team/app/@` + dApp.String() + `/delete"`,
			`aria-sort="descending"`, `class="copy" hidden`,
		}, nil},
		{"/ui/r/team/app/@" + dApp.String(), 200, []string{
			"Entrypoint", `[&#34;/usr/bin/app&#34;]`, "Cmd", "WorkingDir", "/srv/app", "User", "app:app",
			"8080/tcp", "/data", "org.opencontainers.image.source", "https://example.com/app",
			"ADD rootfs.tar.gz / # buildkit", "RUN make install &amp;&amp; rm -rf /tmp/*", "3.00 MB", "2.00 MB",
			"ENV APP_MODE=prod", dLayer1.String(), dLayer2.String(),
			`href="/ui/r/team/app/@` + dSig.String() + `"`, `href="/ui/r/team/app/@` + dSigSig.String() + `"`,
			"application/spdx&#43;json", `<ul class="tree">`,
			"docker pull registry.example:5000/team/app@" + dApp.String(),
			"docker pull registry.example:5000/team/app:v1.0",
			"delete manifest and its tags: latest, v1.0",
		}, nil},
		{"/ui/r/team/app/@" + dIndex.String(), 200, []string{
			"Manifests of this index", `href="/ui/r/team/app/@` + dArm.String() + `"`, "linux/arm64/v8", "OCI index",
		}, []string{"<h2>Config</h2>", "<h2>History</h2>"}},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			res, body := do(t, h, "GET", tc.path, nil, nil)
			if res.StatusCode != tc.status {
				t.Fatalf("status %d, want %d; body:\n%s", res.StatusCode, tc.status, body)
			}
			if ct := res.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			for _, s := range tc.want {
				if !strings.Contains(body, s) {
					t.Errorf("page lacks %q", s)
				}
			}
			for _, s := range tc.notWant {
				if strings.Contains(body, s) {
					t.Errorf("page has %q", s)
				}
			}
			if strings.Contains(body, "<script>") || strings.Contains(body, " style=") || strings.Contains(body, "<style") {
				t.Errorf("page has an inline script or style")
			}
		})
	}
}

// TestNamespaceGroups checks that each namespace is its own tbody, in
// namespace order, sorted within by the chosen column.
func TestNamespaceGroups(t *testing.T) {
	h, _, _ := newUI(t, false)
	_, body := do(t, h, "GET", "/ui/?sort=size&order=asc", nil, nil)
	groups := regexp.MustCompile(`data-group="([^"]*)"`).FindAllStringSubmatch(body, -1)
	var got []string
	for _, g := range groups {
		got = append(got, g[1])
	}
	if want := []string{"", "docker.io", "team"}; !slices.Equal(got, want) {
		t.Errorf("groups %q, want %q", got, want)
	}
	if i, j := strings.Index(body, `data-name="team/web"`), strings.Index(body, `data-name="team/app"`); i < 0 || j < 0 || i > j {
		t.Errorf("team/web (999 B) should come before team/app by size ascending")
	}
}

func TestTagSorting(t *testing.T) {
	h, _, _ := newUI(t, false)
	order := func(q string) []string {
		_, body := do(t, h, "GET", "/ui/r/team/app"+q, nil, nil)
		var names []string
		for _, m := range regexp.MustCompile(`<td data-sort="([^"]+)" class="tag">`).FindAllStringSubmatch(body, -1) {
			names = append(names, m[1])
		}
		return names
	}
	for q, want := range map[string][]string{
		"":                           {"latest", "v1.0", "multi"}, // pushed, newest first
		"?sort=name&order=asc":       {"latest", "multi", "v1.0"},
		"?sort=size&order=desc":      {"multi", "v1.0", "latest"},
		"?sort=created&order=asc":    {"multi", "latest", "v1.0"},
		"?sort=pushed&order=asc":     {"multi", "v1.0", "latest"},
		"?sort=bogus&order=sideways": {"latest", "v1.0", "multi"},
	} {
		if got := order(q); !slices.Equal(got, want) {
			t.Errorf("%q: %q, want %q", q, got, want)
		}
	}
}

func TestEscaping(t *testing.T) {
	h, _, _ := newUI(t, false)
	_, body := do(t, h, "GET", "/ui/r/team/app/@"+dApp.String(), nil, nil)
	if strings.Contains(body, hostile) {
		t.Fatalf("the hostile value is not escaped")
	}
	for _, s := range []string{"&lt;script&gt;alert(1)&lt;/script&gt;", "EVIL=&lt;script&gt;alert(1)&lt;/script&gt;"} {
		if !strings.Contains(body, s) {
			t.Errorf("page lacks the escaped %q", s)
		}
	}
	// A query echoed into the page is escaped too.
	_, body = do(t, h, "GET", "/ui/?q="+url.QueryEscape(`"><script>x</script>`), nil, nil)
	if strings.Contains(body, "<script>x") {
		t.Errorf("the query is not escaped")
	}
	_, body = do(t, h, "GET", "/ui/r/team/app?deleted="+url.QueryEscape(hostile), nil, nil)
	if strings.Contains(body, hostile) || !strings.Contains(body, "Deleted &lt;script&gt;") {
		t.Errorf("the notice is not escaped")
	}
}

func TestJSON(t *testing.T) {
	h, src, _ := newUI(t, false)
	ctx := context.Background()
	check := func(path string, got, want any) {
		t.Helper()
		res, body := do(t, h, "GET", path, nil, nil)
		if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: status %d, Content-Type %q: %s", path, res.StatusCode, res.Header.Get("Content-Type"), body)
		}
		checkSecurityHeaders(t, path, res)
		if err := json.Unmarshal([]byte(body), got); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if !reflect.DeepEqual(reflect.ValueOf(got).Elem().Interface(), want) {
			t.Errorf("%s: round trip differs:\ngot  %+v\nwant %+v", path, reflect.ValueOf(got).Elem().Interface(), want)
		}
	}
	repos, _ := src.Repositories(ctx)
	check("/ui/api/repositories", new([]ui.Repository), repos)
	page, _ := src.Repository(ctx, "team/app")
	check("/ui/api/repositories/team/app", new(ui.RepositoryPage), page)
	img, _ := src.Image(ctx, "team/app", dApp)
	check("/ui/api/repositories/team/app/manifests/"+dApp.String(), new(ui.Image), img)
	idx, _ := src.Image(ctx, "team/app", dIndex)
	check("/ui/api/repositories/team/app/manifests/"+dIndex.String(), new(ui.Image), idx)

	_, body := do(t, h, "GET", "/ui/api/repositories/team/app/manifests/"+dApp.String(), nil, nil)
	if !strings.Contains(body, `"createdBy":"RUN make install`) || !strings.Contains(body, `"artifactType":"application/spdx+json"`) {
		t.Errorf("image JSON lacks history or referrers: %s", body)
	}
}

func TestErrors(t *testing.T) {
	h, _, logs := newUI(t, true)
	tests := []struct {
		method, path string
		status       int
		want         string
	}{
		{"GET", "/ui/r/nope", 404, "Not found"},
		{"GET", "/ui/r/Team/App", 404, "uppercase"},
		{"GET", "/ui/r/team//app", 404, ""},
		{"GET", "/ui/r/team/app/", 404, ""},
		{"GET", "/ui/r/team/app/@sha256:1234", 400, "digest"},
		{"GET", "/ui/r/team/app/@md5:" + strings.Repeat("a", 32), 400, ""},
		{"GET", "/ui/r/team/app/@" + dArm.String(), 404, "Not found"},
		{"GET", "/ui/r/team/app/@" + dApp.String() + "/other", 404, ""},
		{"GET", "/ui/nothing-here", 404, "No such page"},
		{"GET", "/ui/api/repositories/nope", 404, `"error"`},
		{"GET", "/ui/api/repositories/team/app/manifests/sha256:xyz", 400, `"error"`},
		{"GET", "/ui/api/repositories/team/app/manifests/" + dArm.String(), 404, `"error"`},
		{"GET", "/ui/api/repositories/UP", 404, `"error"`},
		{"GET", "/ui/r/boom", 500, "the error is in its log"},
		{"GET", "/ui/api/repositories/boom", 500, "the error is in its log"},
		{"PUT", "/ui/", 405, ""},
		{"POST", "/ui/r/team/app", 405, ""},
		{"DELETE", "/ui/api/repositories", 405, ""},
		{"GET", "/ui/r/team/app/-/delete-tag", 405, ""},
		{"GET", "/ui/r/team/app/@" + dApp.String() + "/delete", 405, ""},
	}
	for _, tc := range tests {
		res, body := do(t, h, tc.method, tc.path, nil, nil)
		if res.StatusCode != tc.status {
			t.Errorf("%s %s: status %d, want %d; body:\n%s", tc.method, tc.path, res.StatusCode, tc.status, body)
			continue
		}
		checkSecurityHeaders(t, tc.method+" "+tc.path, res)
		if !strings.Contains(body, tc.want) {
			t.Errorf("%s %s: body lacks %q:\n%s", tc.method, tc.path, tc.want, body)
		}
		if strings.Contains(body, "secret-internal-detail") {
			t.Errorf("%s %s: the body leaks the internal error", tc.method, tc.path)
		}
		if tc.status == 405 && res.Header.Get("Allow") == "" {
			t.Errorf("%s %s: 405 without Allow", tc.method, tc.path)
		}
	}
	if !strings.Contains(logs.String(), "secret-internal-detail") {
		t.Errorf("the 500's cause is not logged: %s", logs.String())
	}
}

func TestDelete(t *testing.T) {
	form := func() io.Reader { return strings.NewReader("tag=v1.0") }
	formHeader := func(kv ...string) http.Header {
		h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	tagURL := "http://example.com/ui/r/team/app/-/delete-tag"
	manifestURL := "http://example.com/ui/r/team/app/@" + dApp.String() + "/delete"

	t.Run("cross-site refused", func(t *testing.T) {
		h, src, _ := newUI(t, true)
		for name, hdr := range map[string]http.Header{
			"no Origin or Referer": formHeader(),
			"other Origin":         formHeader("Origin", "https://evil.example"),
			"null Origin":          formHeader("Origin", "null"),
			"other Referer":        formHeader("Referer", "https://evil.example/ui/r/team/app"),
			"cross-site fetch":     formHeader("Origin", "http://example.com", "Sec-Fetch-Site", "cross-site"),
			"look-alike host":      formHeader("Origin", "http://example.com.evil.example"),
		} {
			res, body := do(t, h, "POST", tagURL, form(), hdr)
			if res.StatusCode != http.StatusForbidden {
				t.Errorf("%s: tag delete status %d, want 403", name, res.StatusCode)
			}
			checkSecurityHeaders(t, name, res)
			if !strings.Contains(body, "Refused") {
				t.Errorf("%s: body lacks the reason", name)
			}
			res, _ = do(t, h, "POST", manifestURL, nil, hdr)
			if res.StatusCode != http.StatusForbidden {
				t.Errorf("%s: manifest delete status %d, want 403", name, res.StatusCode)
			}
		}
		if len(src.deletedTags)+len(src.deletedDigests) != 0 {
			t.Errorf("a refused request deleted something: %v %v", src.deletedTags, src.deletedDigests)
		}
	})

	t.Run("same-origin tag", func(t *testing.T) {
		h, src, _ := newUI(t, true)
		res, _ := do(t, h, "POST", tagURL, form(), formHeader("Origin", "http://example.com", "Sec-Fetch-Site", "same-origin"))
		if res.StatusCode != http.StatusSeeOther {
			t.Fatalf("status %d, want 303", res.StatusCode)
		}
		checkSecurityHeaders(t, "tag delete", res)
		if loc := res.Header.Get("Location"); !strings.HasPrefix(loc, "/ui/r/team/app?deleted=") {
			t.Errorf("Location %q", loc)
		}
		if !slices.Equal(src.deletedTags, []string{"v1.0"}) {
			t.Errorf("deleted tags %q", src.deletedTags)
		}
	})

	t.Run("same-origin manifest by Referer", func(t *testing.T) {
		h, src, _ := newUI(t, true)
		res, _ := do(t, h, "POST", manifestURL, nil, formHeader("Referer", "http://example.com/ui/r/team/app"))
		if res.StatusCode != http.StatusSeeOther {
			t.Fatalf("status %d, want 303", res.StatusCode)
		}
		loc, _ := url.Parse(res.Header.Get("Location"))
		if loc.Path != "/ui/r/team/app" || !strings.Contains(loc.Query().Get("deleted"), "latest, v1.0") {
			t.Errorf("Location %q", loc)
		}
		if !slices.Equal(src.deletedDigests, []digest.Digest{dApp}) {
			t.Errorf("deleted manifests %q", src.deletedDigests)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		h, src, _ := newUI(t, true)
		same := formHeader("Origin", "http://example.com")
		for _, tc := range []struct {
			target string
			body   string
			status int
		}{
			{tagURL, "tag=", 400},
			{tagURL, "tag=" + url.QueryEscape("-bad"), 400},
			{tagURL, "tag=" + url.QueryEscape(hostile), 400},
			{"http://example.com/ui/r/nope/-/delete-tag", "tag=x", 404},
			{"http://example.com/ui/r/No/-/delete-tag", "tag=x", 404},
			{"http://example.com/ui/r/team/app/@sha256:12/delete", "", 400},
			{"http://example.com/ui/r/team/app/@" + dArm.String() + "/delete", "", 404},
		} {
			res, body := do(t, h, "POST", tc.target, strings.NewReader(tc.body), same)
			if res.StatusCode != tc.status {
				t.Errorf("%s %q: status %d, want %d", tc.target, tc.body, res.StatusCode, tc.status)
			}
			if strings.Contains(body, hostile) {
				t.Errorf("%s %q: the error page echoes the tag unescaped", tc.target, tc.body)
			}
		}
		if len(src.deletedTags) != 0 {
			t.Errorf("deleted %q", src.deletedTags)
		}
	})

	t.Run("disabled", func(t *testing.T) {
		h, src, _ := newUI(t, false)
		for _, p := range []string{"/ui/r/team/app", "/ui/r/team/app/@" + dApp.String()} {
			_, body := do(t, h, "GET", p, nil, nil)
			if strings.Contains(body, "<form method=\"post\"") || strings.Contains(body, "delete tag") || strings.Contains(body, "delete manifest") {
				t.Errorf("%s shows a delete form with deleting off", p)
			}
		}
		same := formHeader("Origin", "http://example.com")
		for _, target := range []string{tagURL, manifestURL} {
			res, _ := do(t, h, "POST", target, form(), same)
			if res.StatusCode != http.StatusForbidden {
				t.Errorf("%s: status %d, want 403", target, res.StatusCode)
			}
		}
		if len(src.deletedTags)+len(src.deletedDigests) != 0 {
			t.Errorf("deleted with deleting off: %v %v", src.deletedTags, src.deletedDigests)
		}
	})
}

func TestStatic(t *testing.T) {
	h, _, _ := newUI(t, false)
	_, body := do(t, h, "GET", "/ui/", nil, nil)
	links := regexp.MustCompile(`(?:href|src)="(/ui/static/[^"]+)"`).FindAllStringSubmatch(body, -1)
	if len(links) < 3 {
		t.Fatalf("the page links %d static files", len(links))
	}
	types := map[string]string{".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}
	for _, l := range links {
		res, b := do(t, h, "GET", l[1], nil, nil)
		if res.StatusCode != 200 || len(b) == 0 {
			t.Errorf("%s: status %d, %d bytes", l[1], res.StatusCode, len(b))
		}
		checkSecurityHeaders(t, l[1], res)
		if cc := res.Header.Get("Cache-Control"); cc != "public, max-age=31536000, immutable" {
			t.Errorf("%s: Cache-Control %q", l[1], cc)
		}
		if ct, want := res.Header.Get("Content-Type"), types[l[1][strings.LastIndex(l[1], "."):]]; ct != want {
			t.Errorf("%s: Content-Type %q, want %q", l[1], ct, want)
		}
	}
	res, _ := do(t, h, "GET", "/ui/static/0000/app.css", nil, nil)
	if res.StatusCode != 200 || res.Header.Get("Cache-Control") != "no-cache" {
		t.Errorf("another version: status %d, Cache-Control %q", res.StatusCode, res.Header.Get("Cache-Control"))
	}
	for _, p := range []string{"/ui/static/x/nope.css", "/ui/static/x/../handler.go", "/ui/static/app.css", "/ui/static/x/"} {
		if res, _ := do(t, h, "GET", p, nil, nil); res.StatusCode != 404 {
			t.Errorf("%s: status %d, want 404", p, res.StatusCode)
		}
	}
}

// TestHeadersEverywhere sends one of every kind of request and checks the
// security headers on each answer, errors and redirects included.
func TestHeadersEverywhere(t *testing.T) {
	h, _, _ := newUI(t, true)
	for _, p := range []string{
		"/ui", "/ui/", "/ui/r/team/app", "/ui/r/team/app/@" + dApp.String(), "/ui/api/repositories",
		"/ui/r/nope", "/ui/x", "/ui/r/boom", "/ui/r/team/app/@sha256:1",
	} {
		for _, m := range []string{"GET", "HEAD", "PATCH"} {
			res, _ := do(t, h, m, p, nil, nil)
			checkSecurityHeaders(t, m+" "+p, res)
		}
	}
	res, _ := do(t, h, "POST", "/ui/r/team/app/-/delete-tag", strings.NewReader("tag=x"),
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Origin": {"http://example.com"}})
	checkSecurityHeaders(t, "delete", res)
	if res, _ := do(t, h, "GET", "/ui", nil, nil); res.StatusCode != http.StatusMovedPermanently || res.Header.Get("Location") != "/ui/" {
		t.Errorf("/ui: status %d Location %q", res.StatusCode, res.Header.Get("Location"))
	}
}

func TestNewWithoutSource(t *testing.T) {
	if _, err := ui.New(ui.Options{}); err == nil {
		t.Fatal("New without a Source succeeded")
	}
}

// bigSource is a repository of 500 tags and a catalog of 1,000
// repositories, the sizes issue 17's targets name.
type bigSource struct {
	fakeSource
	repos []ui.Repository
	page  ui.RepositoryPage
}

func newBigSource() *bigSource {
	b := &bigSource{}
	for i := range 1000 {
		b.repos = append(b.repos, ui.Repository{Name: fmt.Sprintf("team%d/app%d", i%40, i), Tags: 10, Bytes: int64(i) * 1_000_003, LastPush: t0.Add(time.Duration(i) * time.Minute)})
	}
	b.page.Repository = ui.Repository{Name: "big/repo", Tags: 500}
	for i := range 500 {
		b.page.TagList = append(b.page.TagList, ui.Tag{
			Name: fmt.Sprintf("v1.%d", i), Digest: digest.FromString(fmt.Sprint(i)), MediaType: "application/vnd.oci.image.index.v1+json",
			Platforms: []string{"linux/amd64", "linux/arm64/v8"}, Bytes: int64(i) * 999_999,
			Created: t0.Add(time.Duration(i) * time.Hour), Pushed: t0.Add(time.Duration(i%37) * time.Hour),
			Referrers: map[string]int{"application/vnd.dev.cosign.artifact.sig.v1+json": 1},
		})
	}
	return b
}

func (b *bigSource) Repositories(ctx context.Context) ([]ui.Repository, error) { return b.repos, nil }
func (b *bigSource) Repository(ctx context.Context, name string) (ui.RepositoryPage, error) {
	return b.page, nil
}

// BenchmarkPages measures the HTTP side's share of a page (the Source's
// read excluded): the 1,000-repository list and a 500-tag repository.
func BenchmarkPages(b *testing.B) {
	h, err := ui.New(ui.Options{Source: newBigSource(), DeleteEnabled: true})
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range []string{"/ui/", "/ui/r/big/repo", "/ui/api/repositories/big/repo"} {
		b.Run(p, func(b *testing.B) {
			for b.Loop() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest("GET", p, nil))
				if rec.Code != 200 {
					b.Fatalf("status %d", rec.Code)
				}
				b.SetBytes(int64(rec.Body.Len()))
			}
		})
	}
}

package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The pull-through cache's tests: an upstream Berth in token mode holding
// the test images under src/, and a mirror Berth whose proxy.upstreams
// names it ("origin", served under the prefix origin/) with credentials.

const (
	proxyUser     = "mirror"
	proxyPassword = "mirror's upstream password"
	proxyName     = "origin" // the upstream's name in the mirror's config
	proxyPrefix   = "origin" // the repository prefix it is served under
)

// manifestAccept is the Accept header of the tests' manifest requests.
const manifestAccept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, " +
	"application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json"

// proxyUpstream is the upstream Berth of a pull-through test.
type proxyUpstream struct {
	srv     *Server
	env     []string             // the clients' environment
	layouts string               // the test images' OCI layouts
	images  map[string]testImage // by name
}

// startProxyUpstream starts a Berth in token mode with its built-in issuer
// and pushes the named test images to it as src/NAME:latest.
func startProxyUpstream(t *testing.T, names ...string) *proxyUpstream {
	t.Helper()
	env := toolEnv(t)
	needTools(t, env, "skopeo")
	dir, imgs := testImages(t)
	up := &proxyUpstream{srv: startTokenServer(t, proxyUser, proxyPassword), env: env, layouts: dir, images: map[string]testImage{}}
	for _, img := range imgs {
		up.images[img.Name] = img
	}
	for _, name := range names {
		up.push(t, name, "src/"+name+":latest")
	}
	return up
}

// push copies the test image name to ref (REPO:TAG) on the upstream, with
// credentials.
func (up *proxyUpstream) push(t *testing.T, name, ref string) {
	t.Helper()
	if err := run(t.Context(), up.env, io.Discard, "skopeo", "--insecure-policy", "copy", "--all", "--preserve-digests",
		"--dest-tls-verify=false", "--dest-creds", proxyUser+":"+proxyPassword,
		"oci:"+filepath.Join(up.layouts, name)+":latest", "docker://"+up.srv.Host+"/"+ref); err != nil {
		t.Fatalf("push %s to the upstream: %v", name, err)
	}
}

// token returns a token of the upstream's issuer for scope.
func (up *proxyUpstream) token(t *testing.T, scope string) string {
	t.Helper()
	q := url.Values{"service": {"berth"}, "scope": {scope}}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, up.srv.URL+"/auth/token?"+q.Encode(), nil)
	req.SetBasicAuth(proxyUser, proxyPassword)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != http.StatusOK || tok.Token == "" {
		t.Fatalf("token for %s: %s, %v", scope, resp.Status, err)
	}
	return tok.Token
}

// blob returns the bytes of blob d from the test image layouts.
func (up *proxyUpstream) blob(t *testing.T, name, d string) []byte {
	t.Helper()
	b, err := os.ReadFile(blobPath(filepath.Join(up.layouts, name), d))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// imageBlobs returns the config and layer digests of the image manifest d
// of the test image name.
func (up *proxyUpstream) imageBlobs(t *testing.T, name, d string) []string {
	t.Helper()
	var m struct {
		Config descriptor
		Layers []descriptor
	}
	if err := json.Unmarshal(up.blob(t, name, d), &m); err != nil {
		t.Fatal(err)
	}
	out := []string{m.Config.Digest}
	for _, l := range m.Layers {
		out = append(out, l.Digest)
	}
	return out
}

// amd64 returns the digest of the linux/amd64 manifest of the index d of
// the test image name.
func (up *proxyUpstream) amd64(t *testing.T, name, d string) string {
	t.Helper()
	var idx struct {
		Manifests []struct {
			Digest   string
			Platform struct{ OS, Architecture string }
		}
	}
	if err := json.Unmarshal(up.blob(t, name, d), &idx); err != nil {
		t.Fatal(err)
	}
	for _, m := range idx.Manifests {
		if m.Platform.OS == "linux" && m.Platform.Architecture == "amd64" {
			return m.Digest
		}
	}
	t.Fatalf("%s: no linux/amd64 manifest in index %s", name, d)
	return ""
}

// startMirror starts a Berth (auth none) whose proxy.upstreams has one
// upstream, proxyName at upstreamURL (the upstream itself, or a test proxy
// in front of it), with the upstream's credentials in a password file. It
// returns the server and its storage root.
func startMirror(t *testing.T, upstreamURL string, freshness time.Duration) (*Server, string) {
	t.Helper()
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "upstream-password")
	mustDo(t, os.WriteFile(pwFile, []byte(proxyPassword+"\n"), 0o600))
	root := t.TempDir()
	extra := fmt.Sprintf("proxy:\n  upstreams:\n    - name: %s\n      url: %q\n      prefix: %s\n"+
		"      username: %q\n      passwordFile: %q\n      tagFreshness: %s\n      readTimeout: 20s\n",
		proxyName, upstreamURL, proxyPrefix, proxyUser, pwFile, freshness)
	return startServerWith(t, Options{Kind: Berth, Driver: Filesystem, Root: root, Extra: extra}), root
}

// proxyClient is the tests' own HTTP client: no redirects followed, a
// bound on every request.
var proxyClient = &http.Client{
	Timeout:       time.Minute,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// fetched is a response of a registry, its body read.
type fetched struct {
	status int
	header http.Header
	body   []byte
	err    error // sending the request or reading the body
}

// fetch sends a GET (or another method) with the headers given as pairs.
func fetch(t *testing.T, method, u string, header ...string) fetched {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := proxyClient.Do(req)
	if err != nil {
		return fetched{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return fetched{status: resp.StatusCode, header: resp.Header, body: body, err: err}
}

// ociError returns the code and message of the first error of an OCI
// error envelope ("", "" if there is none).
func (f fetched) ociError() (code, message string) {
	var env struct {
		Errors []struct{ Code, Message string }
	}
	if json.Unmarshal(f.body, &env) != nil || len(env.Errors) == 0 {
		return "", ""
	}
	return env.Errors[0].Code, env.Errors[0].Message
}

// pullImage pulls manifest ref of repo from the registry at base with
// plain HTTP, as a client would, and checks every digest: the manifest's
// (a tag's against want), then for an index its linux/amd64 child, then
// the config and layers. It returns the manifest's response.
func pullImage(t *testing.T, base, repo, ref, want string) (fetched, error) {
	t.Helper()
	m := fetch(t, http.MethodGet, base+"/v2/"+repo+"/manifests/"+ref, "Accept", manifestAccept)
	if err := m.check("manifest "+ref, want); err != nil {
		return m, err
	}
	var doc struct {
		Manifests []struct {
			Digest   string
			Platform struct{ OS, Architecture string }
		}
		Config descriptor
		Layers []descriptor
	}
	if err := json.Unmarshal(m.body, &doc); err != nil {
		return m, fmt.Errorf("manifest %s: %v", ref, err)
	}
	for _, c := range doc.Manifests {
		if c.Platform.OS == "linux" && c.Platform.Architecture == "amd64" {
			if _, err := pullImage(t, base, repo, c.Digest, c.Digest); err != nil {
				return m, err
			}
		}
	}
	if doc.Config.Digest == "" {
		return m, nil
	}
	for _, b := range append([]descriptor{doc.Config}, doc.Layers...) {
		if err := fetch(t, http.MethodGet, base+"/v2/"+repo+"/blobs/"+b.Digest).check("blob", b.Digest); err != nil {
			return m, err
		}
	}
	return m, nil
}

// check reports an error unless f is a 200 whose body hashes to want.
func (f fetched) check(what, want string) error {
	switch {
	case f.err != nil:
		return fmt.Errorf("%s: %v", what, f.err)
	case f.status != http.StatusOK:
		return fmt.Errorf("%s: status %d: %.300s", what, f.status, f.body)
	case want != "" && sha256Digest(f.body) != want:
		return fmt.Errorf("%s: got %s, want %s", what, sha256Digest(f.body), want)
	}
	return nil
}

// logRequests returns the fields of each access log line (msg=request) of
// s, Berth's text format: key=value pairs, values quoted when needed.
func logRequests(t *testing.T, s *Server) []map[string]string {
	t.Helper()
	b, err := s.ReadLog(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]string
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, " msg=request ") {
			continue
		}
		if f := logfmtFields(line); f["msg"] == "request" {
			out = append(out, f)
		}
	}
	return out
}

// logfmtFields parses a line of slog's text handler.
func logfmtFields(line string) map[string]string {
	f := map[string]string{}
	for line != "" {
		line = strings.TrimLeft(line, " ")
		eq := strings.IndexByte(line, '=')
		if eq < 0 {
			break
		}
		key, rest := line[:eq], line[eq+1:]
		var value string
		if strings.HasPrefix(rest, `"`) {
			end := 1
			for end < len(rest) && rest[end] != '"' {
				if rest[end] == '\\' {
					end++
				}
				end++
			}
			if end >= len(rest) {
				break
			}
			value, _ = strconv.Unquote(rest[:end+1])
			rest = rest[end+1:]
		} else {
			sp := strings.IndexByte(rest, ' ')
			if sp < 0 {
				sp = len(rest)
			}
			value, rest = rest[:sp], rest[sp:]
		}
		f[key] = value
		line = rest
	}
	return f
}

// upstreamBlobGETs counts the blob GETs the upstream answered with 200,
// by repository.
func upstreamBlobGETs(t *testing.T, up *Server) map[string]int {
	t.Helper()
	n := map[string]int{}
	for _, r := range logRequests(t, up) {
		if r["method"] == http.MethodGet && r["route"] == "/v2/{name}/blobs/{digest}" && r["status"] == "200" {
			n[r["repository"]]++
		}
	}
	return n
}

// TestProxyClients: containerd (ctr --hosts-dir, a hosts.toml naming the
// mirror for the upstream's host, so that it asks the mirror with
// ?ns=UPSTREAM) and podman (a registries.conf mirror under the prefix)
// pull an index and an image through the mirror by tag and by digest and
// run them; the upstream sent each blob once.
func TestProxyClients(t *testing.T) {
	needIntegration(t)
	prerequisite(t, os.Geteuid() == 0, "ctr run and podman run need root")
	t.Parallel()
	up := startProxyUpstream(t, "busybox", "multiarch")
	needTools(t, up.env, "containerd", "ctr", "runc", "podman")
	mirror, _ := startMirror(t, up.srv.URL, time.Minute)

	type pulled struct {
		name, digest, want string // want: what its run prints
	}
	images := []pulled{
		{"busybox", up.images["busybox"].Digest, "hello from busybox"},
		{"multiarch", up.images["multiarch"].Digest, "linux/amd64"},
	}
	ref := func(img pulled, byDigest bool) string {
		if byDigest {
			return up.srv.Host + "/src/" + img.name + "@" + img.digest
		}
		return up.srv.Host + "/src/" + img.name + ":latest"
	}

	t.Run("pulls", func(t *testing.T) {
		t.Run("ctr", func(t *testing.T) {
			t.Parallel()
			sock := startContainerd(t, up.env)
			hosts := t.TempDir()
			mustDo(t, os.Mkdir(filepath.Join(hosts, up.srv.Host), 0o755))
			mustDo(t, os.WriteFile(filepath.Join(hosts, up.srv.Host, "hosts.toml"), []byte(fmt.Sprintf(
				"[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", mirror.URL)), 0o644))
			ctr := func(args ...string) string {
				t.Helper()
				return mustOutput(t, up.env, "ctr", append([]string{"-a", sock}, args...)...)
			}
			for _, img := range images {
				for _, byDigest := range []bool{false, true} {
					r := ref(img, byDigest)
					ctr("images", "pull", "--hosts-dir", hosts, r)
					if out := ctr("run", "--rm", r, "proxy-"+img.name); !strings.Contains(out, img.want) {
						t.Errorf("ctr run %s printed %q, want %q", r, out, img.want)
					}
					// The next pull finds nothing in containerd's store.
					ctr("images", "rm", "--sync", r)
				}
			}
		})
		t.Run("podman", func(t *testing.T) {
			t.Parallel()
			conf := filepath.Join(t.TempDir(), "registries.conf")
			mustDo(t, os.WriteFile(conf, []byte(fmt.Sprintf("[[registry]]\nlocation = %q\n"+
				"[[registry.mirror]]\nlocation = %q\ninsecure = true\n",
				up.srv.Host, mirror.Host+"/"+proxyPrefix)), 0o644))
			env := append(up.env[:len(up.env):len(up.env)], "CONTAINERS_REGISTRIES_CONF="+conf)
			podman, run := podmanArgs(t)
			for _, img := range images {
				for _, byDigest := range []bool{false, true} {
					r := ref(img, byDigest)
					mustOutput(t, env, "podman", append(podman, "pull", "-q", r)...)
					if out := mustOutput(t, env, "podman", append(run, r)...); !strings.Contains(out, img.want) {
						t.Errorf("podman run %s printed %q, want %q", r, out, img.want)
					}
					mustOutput(t, env, "podman", append(podman, "rmi", r)...)
				}
			}
		})
	})
	if t.Failed() {
		return
	}

	// Both clients reached the mirror (neither can pull from the upstream
	// itself: it wants credentials, and they would speak https to it).
	byAgent := map[string]map[string]bool{} // client -> repositories served
	for _, r := range logRequests(t, mirror) {
		if r["status"] != "200" || r["upstream"] != proxyName {
			continue
		}
		client := "other"
		switch ua := r["user_agent"]; {
		case strings.HasPrefix(ua, "containerd/"):
			client = "containerd"
		case strings.HasPrefix(ua, "containers/"):
			client = "podman"
		}
		if byAgent[client] == nil {
			byAgent[client] = map[string]bool{}
		}
		byAgent[client][r["repository"]+" "+r["route"]] = true
	}
	for _, client := range []string{"containerd", "podman"} {
		for _, img := range images {
			for _, route := range []string{"/v2/{name}/manifests/{reference}", "/v2/{name}/blobs/{digest}"} {
				if k := proxyPrefix + "/src/" + img.name + " " + route; !byAgent[client][k] {
					t.Errorf("the mirror's access log has no GET of %s from %s answered 200", k, client)
				}
			}
		}
	}

	// The upstream sent each blob once: as many blob GETs as distinct
	// blobs pulled (the busybox layer is in both images), however many
	// clients pulled them and how often.
	distinct := map[string]bool{}
	own := map[string]int{}
	for _, img := range images {
		d := img.digest
		if up.images[img.name].MediaType == "application/vnd.oci.image.index.v1+json" {
			d = up.amd64(t, img.name, d)
		}
		for _, b := range up.imageBlobs(t, img.name, d) {
			distinct[b] = true
			own["src/"+img.name]++
		}
	}
	gets := upstreamBlobGETs(t, up.srv)
	total := 0
	for repo, n := range gets {
		total += n
		if n > own[repo] {
			t.Errorf("the upstream answered %d blob GETs for %s, which has %d blobs", n, repo, own[repo])
		}
	}
	if total != len(distinct) {
		t.Errorf("the upstream answered %d blob GETs (%v) for %d distinct blobs pulled", total, gets, len(distinct))
	}
	t.Logf("upstream blob GETs: %v for %d distinct blobs", gets, len(distinct))
}

// TestProxyUpstreamDown: with the upstream stopped, a cached tag (stale,
// with a Warning header) and a cached digest still pull through the
// mirror; what was never cached fails at once with 502 UNAVAILABLE naming
// the upstream, never 404.
func TestProxyUpstreamDown(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	up := startProxyUpstream(t, "busybox", "multiarch")
	const freshness = time.Second
	mirror, _ := startMirror(t, up.srv.URL, freshness)
	busybox := up.images["busybox"]
	repo := proxyPrefix + "/src/busybox"

	for _, ref := range []string{"latest", busybox.Digest} {
		if _, err := pullImage(t, mirror.URL, repo, ref, busybox.Digest); err != nil {
			t.Fatalf("pull through the mirror with the upstream up: %v", err)
		}
	}
	cachedAt := time.Now()
	stopServer(t, up.srv)
	time.Sleep(time.Until(cachedAt.Add(freshness + 100*time.Millisecond))) // the tag is stale now

	t.Run("cached", func(t *testing.T) {
		m, err := pullImage(t, mirror.URL, repo, "latest", busybox.Digest)
		if err != nil {
			t.Fatalf("pull of the cached tag with the upstream down: %v", err)
		}
		if w := m.header.Get("Warning"); !strings.Contains(w, "stale") || !strings.Contains(w, proxyName) {
			t.Errorf("stale tag: Warning header %q, want one saying stale and naming %s", w, proxyName)
		}
		m, err = pullImage(t, mirror.URL, repo, busybox.Digest, busybox.Digest)
		if err != nil {
			t.Fatalf("pull of the cached digest with the upstream down: %v", err)
		}
		if w := m.header.Get("Warning"); w != "" {
			t.Errorf("cached digest: Warning header %q, want none (a digest is never stale)", w)
		}
		// A real client too.
		if err := run(t.Context(), up.env, io.Discard, "skopeo", "--insecure-policy", "copy", "--src-tls-verify=false",
			"docker://"+mirror.Host+"/"+repo+":latest", "oci:"+filepath.Join(t.TempDir(), "oci")+":latest"); err != nil {
			t.Errorf("skopeo copy of the cached tag: %v", err)
		}
		if !strings.Contains(grepLog(t, mirror, "serving a cached tag the upstream could not confirm", 1), "tag=latest") {
			t.Error("no log line about serving the stale tag")
		}
	})

	t.Run("uncached", func(t *testing.T) {
		multiarch := up.images["multiarch"]
		child := up.amd64(t, "multiarch", multiarch.Digest)
		for _, u := range []string{
			mirror.URL + "/v2/" + proxyPrefix + "/src/multiarch/manifests/latest",
			mirror.URL + "/v2/" + proxyPrefix + "/src/multiarch/manifests/" + multiarch.Digest,
			mirror.URL + "/v2/" + proxyPrefix + "/src/multiarch/blobs/" + up.imageBlobs(t, "multiarch", child)[0],
			// containerd's way of naming it.
			mirror.URL + "/v2/src/multiarch/manifests/latest?ns=" + up.srv.Host,
		} {
			start := time.Now()
			f := fetch(t, http.MethodGet, u, "Accept", manifestAccept)
			code, msg := f.ociError()
			if f.err != nil || f.status != http.StatusBadGateway || code != "UNAVAILABLE" || !strings.Contains(msg, proxyName) {
				t.Errorf("GET %s with the upstream down: %d %s %q (%v); want 502 UNAVAILABLE naming upstream %s",
					u, f.status, code, msg, f.err, proxyName)
			}
			t.Logf("GET %s: %d %s %q in %v", u, f.status, code, msg, time.Since(start).Round(time.Millisecond))
		}
	})
}

// TestProxyTagMoved: a tag moved upstream is served at its old digest
// while the mirror's copy is fresh (tagFreshness), at the new one after.
func TestProxyTagMoved(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	up := startProxyUpstream(t)
	up.push(t, "busybox", "src/app:v1")
	up.push(t, "multiarch", "src/app:next")
	const freshness = 3 * time.Second
	mirror, _ := startMirror(t, up.srv.URL, freshness)
	oldDigest, newDigest := up.images["busybox"].Digest, up.images["multiarch"].Digest
	repo := proxyPrefix + "/src/app"
	v1 := mirror.URL + "/v2/" + repo + "/manifests/v1"

	// The mirror checks the tag (fetches it) between start and checked.
	start := time.Now()
	if err := fetch(t, http.MethodGet, v1, "Accept", manifestAccept).check("first GET of v1", oldDigest); err != nil {
		t.Fatal(err)
	}
	checked := time.Now()

	// Move v1 upstream to what next names.
	token := up.token(t, "repository:src/app:pull,push")
	next := fetch(t, http.MethodGet, up.srv.URL+"/v2/src/app/manifests/next", "Accept", manifestAccept, "Authorization", "Bearer "+token)
	if err := next.check("upstream manifest next", newDigest); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPut, up.srv.URL+"/v2/src/app/manifests/v1", bytes.NewReader(next.body))
	req.Header.Set("Content-Type", next.header.Get("Content-Type"))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := proxyClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("moving the tag upstream: %v %v", resp, err)
	}
	resp.Body.Close()

	elapsed := time.Since(start)
	if elapsed >= freshness {
		t.Fatalf("fetching and moving the tag took %v, not less than the freshness period %v: cannot see the fresh copy", elapsed, freshness)
	}
	if _, err := pullImage(t, mirror.URL, repo, "v1", oldDigest); err != nil {
		t.Errorf("v1 %v after the mirror checked it, within the freshness period: %v", elapsed.Round(time.Millisecond), err)
	}

	time.Sleep(time.Until(checked.Add(freshness + 100*time.Millisecond)))
	if _, err := pullImage(t, mirror.URL, repo, "v1", newDigest); err != nil {
		t.Errorf("v1 after the freshness period: %v", err)
	}
	// The old digest stays pullable by digest.
	if _, err := pullImage(t, mirror.URL, repo, oldDigest, oldDigest); err != nil {
		t.Errorf("the old digest: %v", err)
	}
}

// flipper is a reverse proxy that flips one byte of the upstream's blob
// bodies while on.
type flipper struct {
	on      atomic.Bool
	flipped atomic.Int64
}

// flipReader flips the byte at offset at of the stream.
type flipReader struct {
	io.ReadCloser
	at, off int64
	f       *flipper
}

func (r *flipReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if r.at >= r.off && r.at < r.off+int64(n) {
		p[r.at-r.off] ^= 0x01
		r.f.flipped.Add(1)
	}
	r.off += int64(n)
	return n, err
}

// TestProxyCorruption: bytes corrupted between the upstream and the mirror
// (a test proxy flips one byte of each blob): the pull through the mirror
// fails and nothing is cached; once the bytes are right, the pull works.
func TestProxyCorruption(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	up := startProxyUpstream(t, "busybox")
	target, err := url.Parse(up.srv.URL)
	mustDo(t, err)
	f := &flipper{}
	f.on.Store(true)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(resp *http.Response) error {
		if f.on.Load() && resp.Request.Method == http.MethodGet && resp.StatusCode == http.StatusOK &&
			strings.Contains(resp.Request.URL.Path, "/blobs/") {
			// The middle byte, or the first of a one-byte blob.
			resp.Body = &flipReader{ReadCloser: resp.Body, at: resp.ContentLength / 2, f: f}
		}
		return nil
	}
	px := httptest.NewServer(rp)
	t.Cleanup(px.Close)
	mirror, root := startMirror(t, px.URL, time.Minute)
	busybox := up.images["busybox"]
	repo := proxyPrefix + "/src/busybox"
	blobs := up.imageBlobs(t, "busybox", busybox.Digest)
	dataPath := func(d string) string {
		hex := strings.TrimPrefix(d, "sha256:")
		return filepath.Join(root, "docker", "registry", "v2", "blobs", "sha256", hex[:2], hex, "data")
	}

	for attempt := 1; attempt <= 2; attempt++ {
		if _, err := pullImage(t, mirror.URL, repo, "latest", busybox.Digest); err == nil {
			t.Fatalf("attempt %d: a pull of corrupted blobs through the mirror succeeded", attempt)
		} else {
			t.Logf("attempt %d: %v", attempt, err)
		}
		for _, b := range blobs {
			if _, err := os.Stat(dataPath(b)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("attempt %d: blob %s is stored in the mirror (%v)", attempt, b, err)
			}
		}
	}
	// A real client fails too.
	if err := run(t.Context(), up.env, io.Discard, "skopeo", "--insecure-policy", "copy", "--src-tls-verify=false",
		"docker://"+mirror.Host+"/"+repo+":latest", "oci:"+filepath.Join(t.TempDir(), "oci")+":latest"); err == nil {
		t.Error("skopeo copied the corrupted image through the mirror")
	}
	if f.flipped.Load() == 0 {
		t.Fatal("the test proxy flipped no byte")
	}
	if !strings.Contains(grepLog(t, mirror, "does not match its digest", 1), "upstream="+proxyName) {
		t.Error("no log line about the blob that did not match its digest")
	}

	f.on.Store(false)
	if _, err := pullImage(t, mirror.URL, repo, "latest", busybox.Digest); err != nil {
		t.Fatalf("the pull once the bytes are right: %v", err)
	}
	for _, b := range blobs {
		// The client has the last bytes once they are verified; the
		// cache then makes them durable and moves them into place.
		got, err := os.ReadFile(dataPath(b))
		for wait := 0; err != nil && wait < 100; wait++ {
			time.Sleep(50 * time.Millisecond)
			got, err = os.ReadFile(dataPath(b))
		}
		if err != nil {
			t.Errorf("blob %s is not stored 5 s after a good pull: %v", b, err)
		} else if sum := sha256.Sum256(got); "sha256:"+hex.EncodeToString(sum[:]) != b {
			t.Errorf("blob %s is stored with other bytes", b)
		}
	}
}

// TestProxyPushDenied: a push into a cached repository, by its prefixed
// name or containerd's ?ns= name, is refused with 403 DENIED; a push to a
// local repository of the mirror works beside it.
func TestProxyPushDenied(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	up := startProxyUpstream(t, "busybox")
	mirror, _ := startMirror(t, up.srv.URL, time.Minute)
	busybox := up.images["busybox"]
	if _, err := pullImage(t, mirror.URL, proxyPrefix+"/src/busybox", "latest", busybox.Digest); err != nil {
		t.Fatalf("pull through the mirror: %v", err)
	}
	manifestBody := up.blob(t, "busybox", busybox.Digest)

	for _, c := range []struct{ method, path string }{
		{http.MethodPost, "/v2/" + proxyPrefix + "/src/busybox/blobs/uploads/"},
		{http.MethodPost, "/v2/src/busybox/blobs/uploads/?ns=" + up.srv.Host},
		{http.MethodPut, "/v2/" + proxyPrefix + "/src/busybox/manifests/pushed"},
		{http.MethodPut, "/v2/src/busybox/manifests/pushed?ns=" + up.srv.Host},
		{http.MethodPost, "/v2/" + proxyPrefix + "/src/new/blobs/uploads/"},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), c.method, mirror.URL+c.path, bytes.NewReader(manifestBody))
		req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		resp, err := proxyClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		code, msg := fetched{body: body}.ociError()
		if resp.StatusCode != http.StatusForbidden || code != "DENIED" {
			t.Errorf("%s %s: %s %s %q, want 403 DENIED", c.method, c.path, resp.Status, code, msg)
		}
	}
	// A real client, and nothing of it stored under the tag.
	if err := run(t.Context(), up.env, io.Discard, "skopeo", "--insecure-policy", "copy", "--dest-tls-verify=false",
		"oci:"+filepath.Join(up.layouts, "busybox")+":latest", "docker://"+mirror.Host+"/"+proxyPrefix+"/src/busybox:pushed"); err == nil {
		t.Error("skopeo pushed into the cached repository")
	} else if !strings.Contains(err.Error(), "denied") {
		t.Errorf("skopeo's push failed without saying denied: %v", err)
	}
	if f := fetch(t, http.MethodGet, mirror.URL+"/v2/"+proxyPrefix+"/src/busybox/manifests/pushed", "Accept", manifestAccept); f.status == http.StatusOK {
		t.Error("the refused tag exists in the mirror")
	}
	// Local repositories keep working.
	if err := run(t.Context(), up.env, io.Discard, "skopeo", "--insecure-policy", "copy", "--dest-tls-verify=false",
		"oci:"+filepath.Join(up.layouts, "busybox")+":latest", "docker://"+mirror.Host+"/local/busybox:latest"); err != nil {
		t.Errorf("push to a local repository of the mirror: %v", err)
	}
	if _, err := pullImage(t, mirror.URL, "local/busybox", "latest", busybox.Digest); err != nil {
		t.Errorf("pull of the local repository: %v", err)
	}
}

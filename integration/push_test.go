package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestPush pulls a test image with berth, tags it for another repository of the
// same registry and pushes it there, against berth and docker-registry: every blob
// is mounted (the server's access log shows mounts and no upload into the new
// repository), and crane and skopeo pull back the same manifest, blob for blob.
func TestPush(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	env := toolEnv(t)
	needTools(t, env, "skopeo", "crane")
	dir, all := testImages(t)
	i := slices.IndexFunc(all, func(img testImage) bool { return img.Name == "multilayer" })
	imgs := all[i : i+1] // several layers, one of 64 MiB
	for _, kind := range []string{Berth, DockerRegistry} {
		t.Run(kind, func(t *testing.T) {
			srv := startServer(t, kind, Filesystem, t.TempDir())
			pushImages(t, env, srv.Host, "src", dir, imgs)
			b := berthCLI{t: t, bin: berthBinary(t), state: filepath.Join(t.TempDir(), "state")}
			src, dst := srv.Host+"/src/multilayer:latest", srv.Host+"/dst/multilayer:latest"
			b.ok("pull", "-q", src)
			b.ok("tag", src, dst)
			digestFile := filepath.Join(t.TempDir(), "digest")
			out := b.ok("push", "--digestfile", digestFile, dst)
			if want := "latest: digest: " + imgs[0].Digest + " size: "; !strings.HasPrefix(out, want) {
				t.Errorf("push printed %q, want %q...", out, want)
			}
			if got, _ := os.ReadFile(digestFile); string(got) != imgs[0].Digest {
				t.Errorf("--digestfile holds %q, want %s", got, imgs[0].Digest)
			}
			reqs := accessLog(t, srv)
			var mounts, uploads int
			for _, r := range reqs {
				if !strings.HasPrefix(r.path, "/v2/dst/multilayer/blobs/uploads/") {
					continue
				}
				switch {
				case r.method == http.MethodPost && strings.Contains(r.query, "mount=") && r.status == http.StatusCreated:
					mounts++
				case r.method == http.MethodPatch, r.method == http.MethodPut:
					uploads++
				}
			}
			blobs := blobCount(t, filepath.Join(dir, "multilayer"), imgs[0].Digest)
			if mounts != blobs || uploads != 0 {
				t.Errorf("%d mounts and %d upload requests into dst/multilayer; want %d mounts (config and layers) and no upload", mounts, uploads, blobs)
			}
			t.Logf("%s: %d blobs mounted, none uploaded", kind, mounts)

			// crane: digest, then every blob byte for byte; skopeo: the digest
			// it reads and a copy of the whole image.
			verifyImages(t, env, srv.Host, "dst", dir, imgs)
			var inspect struct{ Digest string }
			raw := mustOutput(t, env, "skopeo", "inspect", "--tls-verify=false", "docker://"+dst)
			if err := json.Unmarshal([]byte(raw), &inspect); err != nil || inspect.Digest != imgs[0].Digest {
				t.Errorf("skopeo inspect: digest %q (%v), want %s", inspect.Digest, err, imgs[0].Digest)
			}
			layout := filepath.Join(t.TempDir(), "oci")
			if err := run(t.Context(), env, io.Discard, "skopeo", "--insecure-policy", "copy", "--src-tls-verify=false",
				"--preserve-digests", "docker://"+dst, "oci:"+layout+":latest"); err != nil {
				t.Fatal(err)
			}
			var index struct{ Manifests []descriptor }
			if b, err := os.ReadFile(filepath.Join(layout, "index.json")); err != nil || json.Unmarshal(b, &index) != nil ||
				len(index.Manifests) != 1 || index.Manifests[0].Digest != imgs[0].Digest {
				t.Errorf("skopeo copy of the pushed image: index.json %+v (%v), want %s", index, err, imgs[0].Digest)
			}

			// A second push finds everything there.
			out = b.ok("push", dst)
			if !strings.HasPrefix(out, "latest: digest: "+imgs[0].Digest) {
				t.Errorf("second push printed %q", out)
			}
		})
	}
}

// TestPushTokenAuth pushes through berth's token flow with the credentials that
// `berth login` stored, and fails without them with the registry's message.
func TestPushTokenAuth(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	env := toolEnv(t)
	needTools(t, env, "skopeo")
	dir, all := testImages(t)
	i := slices.IndexFunc(all, func(img testImage) bool { return img.Name == "busybox" })
	img := all[i]
	const user, password = "pusher", "correct horse battery staple"
	srv := startTokenServer(t, user, password)
	if err := run(t.Context(), env, io.Discard, "skopeo", "--insecure-policy", "copy", "--dest-tls-verify=false",
		"--dest-creds", user+":"+password, "oci:"+filepath.Join(dir, "busybox")+":latest",
		"docker://"+srv.Host+"/src/busybox:latest"); err != nil {
		t.Fatal(err)
	}

	bin := berthBinary(t)
	loggedIn, anonymous := t.TempDir(), t.TempDir()
	login := exec.CommandContext(t.Context(), bin, "login", "-u", user, "--password-stdin", srv.Host)
	login.Env = append(os.Environ(), "DOCKER_CONFIG="+loggedIn)
	login.Stdin = strings.NewReader(password)
	if out, err := login.CombinedOutput(); err != nil {
		t.Fatalf("berth login: %v\n%s", err, out)
	}
	state := filepath.Join(t.TempDir(), "state")
	b := berthCLI{t: t, bin: bin, state: state, env: append(os.Environ(), "DOCKER_CONFIG="+loggedIn)}
	src, dst := srv.Host+"/src/busybox:latest", srv.Host+"/dst/busybox:v1"
	b.ok("pull", "-q", src)
	b.ok("tag", src, dst)
	if out := b.ok("push", dst); !strings.HasPrefix(out, "v1: digest: "+img.Digest+" size: ") {
		t.Errorf("push with credentials printed %q", out)
	}
	var inspect struct{ Digest string }
	raw := mustOutput(t, env, "skopeo", "inspect", "--tls-verify=false", "--creds", user+":"+password, "docker://"+dst)
	if err := json.Unmarshal([]byte(raw), &inspect); err != nil || inspect.Digest != img.Digest {
		t.Errorf("skopeo inspect of the pushed image: %q (%v), want %s", inspect.Digest, err, img.Digest)
	}

	// Without credentials: the registry's own refusal, exit 1, no tag.
	nobody := berthCLI{t: t, bin: bin, state: state, env: append(os.Environ(), "DOCKER_CONFIG="+anonymous)}
	b.ok("tag", src, srv.Host+"/dst/busybox:v2")
	out, errOut, code := nobody.run("push", srv.Host+"/dst/busybox:v2")
	message := registryRefusal(t, srv, "dst/busybox")
	if code != 1 || !strings.Contains(errOut, message) {
		t.Errorf("push without credentials: exit %d, stdout %q, stderr %q; want 1 and the registry's %q", code, out, errOut, message)
	}
	if err := run(t.Context(), env, io.Discard, "skopeo", "inspect", "--tls-verify=false", "--creds", user+":"+password,
		"docker://"+srv.Host+"/dst/busybox:v2"); err == nil {
		t.Error("the tag pushed without credentials exists")
	}
}

// registryRefusal is the message of the OCI error envelope srv answers an
// anonymous upload into repo with, after the anonymous token flow any client
// follows (a token for the scope the challenge names, without credentials).
func registryRefusal(t *testing.T, srv *Server, repo string) string {
	t.Helper()
	post := func(token string) *http.Response {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/v2/"+repo+"/blobs/uploads/", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := post("")
	resp.Body.Close()
	params := map[string]string{}
	for _, m := range regexp.MustCompile(`(\w+)="([^"]*)"`).FindAllStringSubmatch(resp.Header.Get("WWW-Authenticate"), -1) {
		params[m[1]] = m[2]
	}
	u, err := url.Parse(params["realm"])
	if err != nil || u.Host == "" {
		t.Fatalf("anonymous POST: %s with challenge %q", resp.Status, resp.Header.Get("WWW-Authenticate"))
	}
	u.RawQuery = url.Values{"service": {params["service"]}, "scope": {params["scope"]}}.Encode()
	tr, err := http.Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	var token struct{ Token string }
	json.NewDecoder(tr.Body).Decode(&token)
	tr.Body.Close()
	resp = post(token.Token)
	defer resp.Body.Close()
	var env struct{ Errors []struct{ Message string } }
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil || len(env.Errors) == 0 || env.Errors[0].Message == "" {
		t.Fatalf("anonymous POST: %s without an OCI error message (%v)", resp.Status, err)
	}
	return env.Errors[0].Message
}

// logged is one request of a server's access log.
type logged struct {
	method, path, query string
	status              int
}

var (
	// berth (text format) logs the route template and the repository, not
	// the query: the path is rebuilt from them, and a POST that created a
	// blob from an empty body is a mount (berth push never sends ?digest=).
	berthLine = regexp.MustCompile(`msg=request method=(\S+) route=(\S+) repository=(\S*) .*status=(\d+) bytes_in=(\d+)`)
	// docker-registry: its access log, Apache combined format.
	apacheLine = regexp.MustCompile(`"([A-Z]+) (/v2/[^ ?"]*)(?:\?([^ "]*))? HTTP/[0-9.]+" (\d{3}) `)
)

// accessLog reads the requests of srv's access log.
func accessLog(t *testing.T, srv *Server) []logged {
	t.Helper()
	b, err := srv.ReadLog(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []logged
	for _, line := range readLines(string(b)) {
		var r logged
		if m := berthLine.FindStringSubmatch(line); srv.Kind == Berth && m != nil {
			r.method, r.path = m[1], strings.Replace(m[2], "{name}", m[3], 1)
			fmt.Sscan(m[4], &r.status)
			if r.method == http.MethodPost && r.status == http.StatusCreated && m[5] == "0" {
				r.query = "mount="
			}
		} else if m := apacheLine.FindStringSubmatch(line); srv.Kind != Berth && m != nil {
			r.method, r.path, r.query = m[1], m[2], m[3]
			fmt.Sscan(m[4], &r.status)
		} else {
			continue
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		t.Fatalf("no request in %s's access log %s", srv.Kind, srv.LogPath)
	}
	return out
}

// blobCount is the number of blobs (config and layers) of the image manifest d
// in an OCI layout.
func blobCount(t *testing.T, layout, d string) int {
	t.Helper()
	b, err := os.ReadFile(blobPath(layout, d))
	if err != nil {
		t.Fatal(err)
	}
	var m struct{ Layers []descriptor }
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return 1 + len(m.Layers)
}

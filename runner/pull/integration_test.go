package pull_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/crypto/bcrypt"

	"github.com/berth-registry/berth/integration"
	"github.com/berth-registry/berth/runner/pull"
)

// TestPullFromBerth runs `berth serve` in token mode (BERTH_BINARY, or a fresh build of
// ./cmd/berth), pushes a two-platform image over raw HTTP, then logs in with Login and
// pulls with the stored credentials. It runs only with BERTH_INTEGRATION=1.
func TestPullFromBerth(t *testing.T) {
	if os.Getenv("BERTH_INTEGRATION") != "1" {
		t.Skip("integration test: starts berth serve; run with BERTH_INTEGRATION=1")
	}
	ctx := context.Background()
	bin := os.Getenv("BERTH_BINARY")
	if bin == "" {
		var err error
		if bin, err = integration.BuildBerth(ctx, filepath.Join("..", ".."), t.TempDir()); err != nil {
			t.Fatal(err)
		}
	} else if abs, err := filepath.Abs(bin); err == nil {
		bin = abs
	}

	const user, password = "puller", "correct horse battery staple"
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd, policy := filepath.Join(dir, "htpasswd"), filepath.Join(dir, "policy.yaml")
	writeFile(t, htpasswd, user+":"+string(hash)+"\n")
	writeFile(t, policy, fmt.Sprintf("rules:\n  - repositories: [\"**\"]\n    users: [%s]\n    actions: [\"*\"]\n", user))
	srv, err := integration.Start(ctx, integration.Options{
		Kind: integration.Berth, Binary: bin, Root: t.TempDir(), Dir: t.TempDir(),
		Auth: fmt.Sprintf("  mode: token\n  htpasswd: %q\n  issuer:\n    key: %q\n    policy: %q\n",
			htpasswd, filepath.Join(dir, "auth-key.pem"), policy),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("berth log:\n%s", srv.LogTail(40))
		}
		srv.Stop()
	})

	// Push: an amd64 and an arm64 image under one index, tagged v1.
	p := &pusher{t: t, base: srv.URL, repo: "it/app", user: user, password: password}
	var entries []ocispec.Descriptor
	want := map[string]testImage{}
	for i, plat := range []string{"linux/amd64", "linux/arm64/v8"} {
		img := buildImage(t, imageSpec{platform: plat, layers: []testLayer{
			makeLayer(t, int64(100+i), 200_000, true, ""), makeLayer(t, int64(200+i), 1000, false, ""),
		}})
		p.blob(img.config)
		for _, l := range img.layers {
			p.blob(l.blob)
		}
		p.manifest(img.desc.Digest.String(), img.desc.MediaType, img.manifest)
		entries = append(entries, img.desc)
		want[plat] = img
	}
	index, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: entries})
	p.manifest("v1", ocispec.MediaTypeImageIndex, index)

	host := strings.TrimPrefix(srv.URL, "http://")
	cfgPath := filepath.Join(t.TempDir(), "config.json")
	if err := pull.NewClient(pull.ClientOptions{}).Login(ctx, host, user, "wrong", cfgPath); err == nil {
		t.Error("login with a wrong password succeeded")
	}
	if err := pull.NewClient(pull.ClientOptions{}).Login(ctx, host, user, password, cfgPath); err != nil {
		t.Fatal(err)
	}
	cfg, err := pull.LoadDockerConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := cfg.Credentials(host)
	if err != nil || stored.Username != user {
		t.Fatalf("stored credentials %+v, %v", stored.Username, err)
	}
	// Berth's issuer answers offline_token=true with a refresh token: the identity token.
	if stored.IdentityToken == "" || stored.Password != "" {
		t.Errorf("login stored a password rather than Berth's refresh token")
	}
	ref, err := pull.ParseReference("it/app:v1", host)
	if err != nil {
		t.Fatal(err)
	}
	for plat, img := range want {
		c := newConsumer()
		got, err := pull.NewClient(pull.ClientOptions{Credentials: cfg.Credentials}).Pull(ctx, ref,
			pull.PullOptions{Platform: platformPtr(t, plat), Layer: c.layer})
		if err != nil {
			t.Fatalf("%s: %v", plat, err)
		}
		if got.Digest != img.desc.Digest {
			t.Errorf("%s: pulled %s, want %s", plat, got.Digest, img.desc.Digest)
		}
		for _, l := range img.layers {
			if !bytes.Equal(c.got[l.desc.Digest], l.blob) {
				t.Errorf("%s: layer %s differs", plat, l.desc.Digest)
			}
		}
	}
	if _, err := pull.NewClient(pull.ClientOptions{}).Resolve(ctx, ref, nil); err == nil {
		t.Error("an anonymous pull succeeded")
	}
}

// buildImage is addImage without a registry.
func buildImage(t *testing.T, s imageSpec) testImage {
	scratch := &testRegistry{t: t, manifests: map[string]servedManifest{}, blobs: map[digest.Digest][]byte{}}
	return scratch.addImage("x", s)
}

// pusher pushes blobs and manifests to a token-auth registry over raw HTTP.
type pusher struct {
	t                   *testing.T
	base, repo          string
	user, password, tok string
}

func (p *pusher) do(req *http.Request) *http.Response {
	p.t.Helper()
	for attempt := 0; ; attempt++ {
		if p.tok != "" {
			req.Header.Set("Authorization", "Bearer "+p.tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			p.t.Fatal(err)
		}
		if resp.StatusCode != http.StatusUnauthorized || attempt > 0 {
			return resp
		}
		params := map[string]string{}
		challengeParam := regexp.MustCompile(`(realm|service)="([^"]*)"`)
		for _, m := range challengeParam.FindAllStringSubmatch(resp.Header.Get("WWW-Authenticate"), -1) {
			params[m[1]] = m[2]
		}
		resp.Body.Close()
		treq, _ := http.NewRequest(http.MethodGet, params["realm"]+"?service="+params["service"]+"&scope=repository:"+p.repo+":pull,push", nil)
		treq.SetBasicAuth(p.user, p.password)
		tresp, err := http.DefaultClient.Do(treq)
		if err != nil {
			p.t.Fatal(err)
		}
		var body struct{ Token string }
		json.NewDecoder(tresp.Body).Decode(&body)
		tresp.Body.Close()
		if body.Token == "" {
			p.t.Fatalf("no push token: %s", tresp.Status)
		}
		p.tok = body.Token
		if req.GetBody != nil {
			req.Body, _ = req.GetBody()
		}
	}
}

func (p *pusher) blob(content []byte) {
	p.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, p.base+"/v2/"+p.repo+"/blobs/uploads/", nil)
	resp := p.do(req)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		p.t.Fatalf("start upload: %s", resp.Status)
	}
	loc, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
	if err != nil {
		p.t.Fatal(err)
	}
	q := loc.Query()
	q.Set("digest", digest.FromBytes(content).String())
	loc.RawQuery = q.Encode()
	req, _ = http.NewRequest(http.MethodPut, loc.String(), bytes.NewReader(content))
	req.Header.Set("Content-Type", "application/octet-stream")
	resp = p.do(req)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		p.t.Fatalf("finish upload: %s", resp.Status)
	}
}

func (p *pusher) manifest(ref, mediaType string, body []byte) {
	p.t.Helper()
	req, _ := http.NewRequest(http.MethodPut, p.base+"/v2/"+p.repo+"/manifests/"+ref, bytes.NewReader(body))
	req.Header.Set("Content-Type", mediaType)
	resp := p.do(req)
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		p.t.Fatalf("put manifest %s: %s %s", ref, resp.Status, msg)
	}
}

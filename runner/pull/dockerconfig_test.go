package pull_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-registry/berth/runner/pull"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestDockerConfigCredentials(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	writeFile(t, path, `{
		"auths": {
			"registry.test:5000": {"auth": "`+b64("alice:pa:ss")+`"},
			"https://old.test/v1/": {"auth": "`+b64("bob:pw")+`"},
			"tok.test": {"auth": "`+b64("carol:")+`", "identitytoken": "refresh-123"},
			"plain.test": {"username": "dave", "password": "pw2"},
			"broken.test": {"auth": "%%%"}
		},
		"psFormat": "table {{.ID}}"
	}`)
	cfg, err := pull.LoadDockerConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		registry string
		want     pull.Credentials
	}{
		{"registry.test:5000", pull.Credentials{Username: "alice", Password: "pa:ss"}},
		{"old.test", pull.Credentials{Username: "bob", Password: "pw"}},
		{"tok.test", pull.Credentials{Username: "carol", IdentityToken: "refresh-123"}},
		{"plain.test", pull.Credentials{Username: "dave", Password: "pw2"}},
		{"registry.test", pull.Credentials{}}, // another port is another registry
		{"unknown.test", pull.Credentials{}},
	} {
		got, err := cfg.Credentials(tc.registry)
		if err != nil || got != tc.want {
			t.Errorf("Credentials(%q) = %+v, %v; want %+v", tc.registry, got, err, tc.want)
		}
	}
	if _, err := cfg.Credentials("broken.test"); !errors.Is(err, pull.ErrDockerConfig) {
		t.Errorf("bad base64: err = %v, want ErrDockerConfig", err)
	}

	t.Run("DOCKER_CONFIG", func(t *testing.T) {
		envDir := t.TempDir()
		writeFile(t, filepath.Join(envDir, "config.json"), `{"auths":{"env.test":{"auth":"`+b64("erin:pw")+`"}}}`)
		t.Setenv("DOCKER_CONFIG", envDir)
		if p, _ := pull.DockerConfigPath(); p != filepath.Join(envDir, "config.json") {
			t.Errorf("DockerConfigPath() = %q", p)
		}
		cfg, err := pull.LoadDockerConfig("")
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := cfg.Credentials("env.test"); got.Username != "erin" {
			t.Errorf("credentials from $DOCKER_CONFIG: %+v", got)
		}
		// An explicit path wins over DOCKER_CONFIG.
		cfg, err = pull.LoadDockerConfig(path)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := cfg.Credentials("env.test"); !got.IsZero() {
			t.Errorf("explicit path: got credentials of $DOCKER_CONFIG: %+v", got)
		}
	})
	t.Run("HOME", func(t *testing.T) {
		home := t.TempDir()
		t.Setenv("DOCKER_CONFIG", "")
		t.Setenv("HOME", home)
		if p, _ := pull.DockerConfigPath(); p != filepath.Join(home, ".docker", "config.json") {
			t.Errorf("DockerConfigPath() = %q", p)
		}
		cfg, err := pull.LoadDockerConfig("") // missing: empty, not an error
		if err != nil {
			t.Fatal(err)
		}
		if got, err := cfg.Credentials("any.test"); err != nil || !got.IsZero() {
			t.Errorf("missing file: %+v, %v", got, err)
		}
	})
	t.Run("credential helpers", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "config.json")
		writeFile(t, p, `{"credsStore":"desktop","credHelpers":{"helped.test":"ecr-login"},
			"auths":{"stored.test":{},"inline.test":{"auth":"`+b64("f:g")+`"}}}`)
		cfg, err := pull.LoadDockerConfig(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range []string{"helped.test", "stored.test"} {
			if _, err := cfg.Credentials(r); !errors.Is(err, pull.ErrCredentialHelper) {
				t.Errorf("%s: err = %v, want ErrCredentialHelper", r, err)
			}
		}
		if got, err := cfg.Credentials("inline.test"); err != nil || got.Username != "f" {
			t.Errorf("inline.test: %+v, %v", got, err)
		}
		if got, err := cfg.Credentials("other.test"); err != nil || !got.IsZero() {
			t.Errorf("registry unknown to the store: %+v, %v; want anonymous", got, err)
		}
	})
	t.Run("invalid JSON", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "config.json")
		writeFile(t, p, `{"auths": [`)
		if _, err := pull.LoadDockerConfig(p); !errors.Is(err, pull.ErrDockerConfig) {
			t.Errorf("err = %v, want ErrDockerConfig", err)
		}
	})
}

// readJSON decodes the file at path into a generic map.
func readJSON(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, b)
	}
	return m
}

func TestLoginLogout(t *testing.T) {
	reg := newTestRegistry(t)
	reg.requireToken("alice", "s3cret")
	img := reg.addImage("app", imageSpec{platform: "linux/amd64", layers: []testLayer{makeLayer(t, 1, 100, true, "")}})
	reg.tag("app", "v1", img.desc.Digest)

	path := filepath.Join(t.TempDir(), "docker", "config.json")
	const existing = `{
		"auths": {"other.test": {"auth": "` + "b3RoZXI6cHc=" + `", "email": "kept@example.test"}},
		"psFormat": "table {{.ID}}",
		"proxies": {"default": {"httpProxy": "http://proxy.test:3128"}}
	}`
	writeFile(t, path, existing)
	ctx := context.Background()

	t.Run("wrong password leaves the file alone", func(t *testing.T) {
		err := pull.NewClient(pull.ClientOptions{}).Login(ctx, reg.host(), "alice", "wrong", path)
		if !errors.Is(err, pull.ErrUnauthorized) {
			t.Fatalf("err = %v, want ErrUnauthorized", err)
		}
		if b, _ := os.ReadFile(path); string(b) != existing {
			t.Errorf("the config changed:\n%s", b)
		}
	})

	t.Run("password", func(t *testing.T) {
		if err := pull.NewClient(pull.ClientOptions{}).Login(ctx, "http://"+reg.host()+"/", "alice", "s3cret", path); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("mode %v, want 0600", fi.Mode().Perm())
		}
		m := readJSON(t, path)
		if m["psFormat"] != "table {{.ID}}" || m["proxies"] == nil {
			t.Errorf("other keys were not kept: %v", m)
		}
		auths := m["auths"].(map[string]any)
		other := auths["other.test"].(map[string]any)
		if other["auth"] != "b3RoZXI6cHc=" || other["email"] != "kept@example.test" {
			t.Errorf("the other registry's entry changed: %v", other)
		}
		mine := auths[reg.host()].(map[string]any)
		if mine["auth"] != b64("alice:s3cret") || mine["identitytoken"] != nil {
			t.Errorf("entry %v, want auth of alice:s3cret", mine)
		}
		// The stored credentials pull.
		cfg, err := pull.LoadDockerConfig(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pull.NewClient(pull.ClientOptions{Credentials: cfg.Credentials}).Resolve(ctx, mustRef(t, reg.host()+"/app:v1"), nil); err != nil {
			t.Errorf("pull with the stored credentials: %v", err)
		}
	})

	t.Run("identity token", func(t *testing.T) {
		reg.mu.Lock()
		reg.issueRefresh = "refresh-xyz"
		reg.tokenRequests = nil
		reg.mu.Unlock()
		if err := pull.NewClient(pull.ClientOptions{}).Login(ctx, reg.host(), "alice", "s3cret", path); err != nil {
			t.Fatal(err)
		}
		mine := readJSON(t, path)["auths"].(map[string]any)[reg.host()].(map[string]any)
		if mine["identitytoken"] != "refresh-xyz" || mine["auth"] != b64("alice:") {
			t.Errorf("entry %v, want the identity token and no password", mine)
		}
		cfg, err := pull.LoadDockerConfig(path)
		if err != nil {
			t.Fatal(err)
		}
		reg.mu.Lock()
		reg.tokenRequests = nil
		reg.mu.Unlock()
		if _, err := pull.NewClient(pull.ClientOptions{Credentials: cfg.Credentials}).Resolve(ctx, mustRef(t, reg.host()+"/app:v1"), nil); err != nil {
			t.Fatalf("pull with the identity token: %v", err)
		}
		reg.mu.Lock()
		defer reg.mu.Unlock()
		if len(reg.tokenRequests) != 1 {
			t.Fatalf("token requests %+v, want 1", reg.tokenRequests)
		}
		tr := reg.tokenRequests[0]
		if tr.method != http.MethodPost || tr.grantType != "refresh_token" || tr.refreshToken != "refresh-xyz" ||
			tr.scope != "repository:app:pull" || tr.service != testService {
			t.Errorf("token request %+v, want the OAuth2 POST refresh_token flow", tr)
		}
	})

	t.Run("logout", func(t *testing.T) {
		if err := pull.Logout(reg.host(), path); err != nil {
			t.Fatal(err)
		}
		m := readJSON(t, path)
		auths := m["auths"].(map[string]any)
		if _, ok := auths[reg.host()]; ok {
			t.Error("the entry is still there")
		}
		if _, ok := auths["other.test"]; !ok || m["psFormat"] == nil {
			t.Errorf("logout removed more than the entry: %v", m)
		}
		if err := pull.Logout(reg.host(), path); !errors.Is(err, pull.ErrNotLoggedIn) {
			t.Errorf("second logout: err = %v, want ErrNotLoggedIn", err)
		}
	})

	t.Run("credHelpers entry", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "config.json")
		writeFile(t, p, `{"credHelpers":{"`+reg.host()+`":"pass"}}`)
		err := pull.NewClient(pull.ClientOptions{}).Login(ctx, reg.host(), "alice", "s3cret", p)
		if !errors.Is(err, pull.ErrCredentialHelper) {
			t.Errorf("err = %v, want ErrCredentialHelper", err)
		}
	})

	t.Run("basic auth registry", func(t *testing.T) {
		reg.mu.Lock()
		reg.basic = true
		reg.mu.Unlock()
		defer func() { reg.mu.Lock(); reg.basic = false; reg.mu.Unlock() }()
		p := filepath.Join(t.TempDir(), "config.json")
		if err := pull.NewClient(pull.ClientOptions{}).Login(ctx, reg.host(), "alice", "wrong", p); !errors.Is(err, pull.ErrUnauthorized) {
			t.Errorf("wrong password: err = %v, want ErrUnauthorized", err)
		}
		if err := pull.NewClient(pull.ClientOptions{}).Login(ctx, reg.host(), "alice", "s3cret", p); err != nil {
			t.Fatal(err)
		}
		if got := readJSON(t, p)["auths"].(map[string]any)[reg.host()].(map[string]any)["auth"]; got != b64("alice:s3cret") {
			t.Errorf("auth %v", got)
		}
	})
}

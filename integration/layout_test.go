package integration

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestLayoutCompatibility shares one filesystem root between Debian's
// docker-registry 2.8.2 and the registry under test, in both directions, never
// with both servers running on it: what one wrote, the other must serve with
// the same digests, tags and catalog.
func TestLayoutCompatibility(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	env := toolEnv(t)
	needTools(t, env, "skopeo", "crane", "regctl", "docker-registry")
	dir, imgs := testImages(t)
	subject := underTest()

	t.Run("from-docker-registry", func(t *testing.T) {
		root := t.TempDir()
		peer := startServer(t, DockerRegistry, Filesystem, root)
		pushImages(t, env, peer.Host, "compat", dir, imgs)
		mustOutput(t, env, "crane", "tag", "--insecure", peer.Host+"/compat/busybox:latest", "v1")
		want := snapshot(t, env, peer.Host)
		stopServer(t, peer)

		srv := startServer(t, subject, Filesystem, root)
		verifyImages(t, env, srv.Host, "compat", dir, imgs)
		compareSnapshots(t, peer.Kind, want, srv.Kind, snapshot(t, env, srv.Host))
	})

	t.Run("to-docker-registry", func(t *testing.T) {
		root := t.TempDir()
		srv := startServer(t, subject, Filesystem, root)
		pushImages(t, env, srv.Host, "compat", dir, imgs)
		mustOutput(t, env, "crane", "tag", "--insecure", srv.Host+"/compat/busybox:latest", "v1")
		artifact := pushChunked(t, env, srv.Host, "compat/chunked:v1")
		want := snapshot(t, env, srv.Host)
		stopServer(t, srv)
		// Both registries' access logs name the method of every request.
		if log, err := os.ReadFile(srv.LogPath); err == nil && !strings.Contains(string(log), "PATCH") {
			t.Errorf("no PATCH request in %s's access log: the regctl upload was not chunked", srv.Kind)
		}

		peer := startServer(t, DockerRegistry, Filesystem, root)
		verifyImages(t, env, peer.Host, "compat", dir, imgs)
		verifyChunked(t, env, peer.Host, "compat/chunked:v1", artifact)
		compareSnapshots(t, srv.Kind, want, peer.Kind, snapshot(t, env, peer.Host))
	})
}

// pushChunked pushes a 1.5 MiB random file as an artifact with regctl, forced
// to upload in 64 KiB PATCH chunks; it returns the file's path.
func pushChunked(t *testing.T, env []string, host, ref string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "chunked.bin")
	data := make([]byte, 3<<19)
	rand.Read(data)
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	mustOutput(t, env, "regctl", "registry", "set", "--skip-check", "--tls", "disabled",
		"--blob-max", "65536", "--blob-chunk", "65536", host)
	mustOutput(t, env, "regctl", "artifact", "put", "--artifact-type", "application/vnd.berth.test.chunked",
		"--file-media-type", "application/octet-stream", "-f", file, host+"/"+ref)
	t.Logf("pushed %s/%s: %d bytes in 64 KiB chunks (regctl)", host, ref, len(data))
	return file
}

// verifyChunked pulls the artifact pushed by pushChunked and compares bytes.
func verifyChunked(t *testing.T, env []string, host, ref, file string) {
	t.Helper()
	mustOutput(t, env, "regctl", "registry", "set", "--skip-check", "--tls", "disabled", host)
	got := filepath.Join(t.TempDir(), "chunked.out")
	f, err := os.Create(got)
	if err != nil {
		t.Fatal(err)
	}
	err = run(t.Context(), env, f, "regctl", "artifact", "get", host+"/"+ref)
	f.Close()
	if err != nil {
		t.Errorf("chunked artifact: %v", err)
		return
	}
	if err := sameFile(file, got); err != nil {
		t.Errorf("chunked artifact %s: %v", ref, err)
	}
}

// registrySnapshot maps repository -> tag -> manifest digest, as listed by
// the catalog and tags APIs (crane catalog, crane ls, crane digest).
type registrySnapshot map[string]map[string]string

func snapshot(t *testing.T, env []string, host string) registrySnapshot {
	t.Helper()
	s := registrySnapshot{}
	for _, repo := range readLines(mustOutput(t, env, "crane", "catalog", "--insecure", host)) {
		s[repo] = map[string]string{}
		for _, tag := range readLines(mustOutput(t, env, "crane", "ls", "--insecure", host+"/"+repo)) {
			s[repo][tag] = mustOutput(t, env, "crane", "digest", "--insecure", host+"/"+repo+":"+tag)
		}
	}
	return s
}

func (s registrySnapshot) String() string {
	var lines []string
	for repo, tags := range s {
		for tag, d := range tags {
			lines = append(lines, fmt.Sprintf("  %s:%s %s", repo, tag, d))
		}
		if len(tags) == 0 {
			lines = append(lines, fmt.Sprintf("  %s (no tags)", repo))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

func compareSnapshots(t *testing.T, wantName string, want registrySnapshot, gotName string, got registrySnapshot) {
	t.Helper()
	if w, g := want.String(), got.String(); w != g {
		t.Errorf("catalog/tags differ.\n%s listed:\n%s\n%s lists on the same root:\n%s", wantName, w, gotName, g)
		return
	}
	t.Logf("catalog and tags agree (%d repositories):\n%s", len(got), got)
}

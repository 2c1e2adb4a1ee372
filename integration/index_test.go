package integration

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestPushIndex pulls the multi-platform test image with `berth pull
// --all-platforms`, tags it for another repository of the same Berth server
// and for Debian's docker-registry, and pushes it: the target's digest is the
// source index's, crane lists every platform and pulls each platform's image
// by digest, blob for blob as the source. save → load → push keeps the digest
// too. A plain pull pushes the host's platform only, and says so.
func TestPushIndex(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	prerequisite(t, os.Geteuid() == 0, "berth pull needs root (layer store owners)")
	env := toolEnv(t)
	needTools(t, env, "skopeo", "crane")
	dir, all := testImages(t)
	i := slices.IndexFunc(all, func(img testImage) bool { return img.Name == "multiarch" })
	imgs := all[i : i+1]
	img := imgs[0]
	children := indexChildren(t, filepath.Join(dir, img.Name), img.Digest)
	if len(children) < 2 {
		t.Fatalf("the multiarch test image has %d platforms", len(children))
	}

	src := startServer(t, Berth, Filesystem, t.TempDir())
	other := startServer(t, DockerRegistry, Filesystem, t.TempDir())
	pushImages(t, env, src.Host, "src", dir, imgs)
	srcRef := src.Host + "/src/multiarch:latest"
	b := berthCLI{t: t, bin: berthBinary(t), state: filepath.Join(t.TempDir(), "state")}
	if out := b.ok("pull", "--all-platforms", srcRef); !strings.Contains(out, "index "+img.Digest) || !strings.Contains(out, "every platform stored") {
		t.Errorf("pull --all-platforms printed %q", out)
	}
	var inspect []inspectedImage
	if err := json.Unmarshal([]byte(b.ok("image", "inspect", srcRef)), &inspect); err != nil || len(inspect) != 1 ||
		!slices.Contains(inspect[0].RepoDigests, src.Host+"/src/multiarch@"+img.Digest) {
		t.Errorf("image inspect: RepoDigests %+v (%v), want the index digest", inspect, err)
	}

	// pushed checks that HOST/PREFIX/multiarch:latest is the source index.
	pushed := func(t *testing.T, host, prefix string) {
		t.Helper()
		ref := host + "/" + prefix + "/multiarch:latest"
		raw := mustOutput(t, env, "crane", "manifest", "--insecure", ref)
		var idx struct{ Manifests []descriptor }
		if err := json.Unmarshal([]byte(raw), &idx); err != nil {
			t.Fatalf("crane manifest %s: %v", ref, err)
		}
		var got []string
		for _, d := range idx.Manifests {
			got = append(got, d.Digest)
		}
		if !slices.Equal(got, children) {
			t.Errorf("crane manifest %s lists %v, want every platform %v", ref, got, children)
		}
		for _, d := range children {
			if err := run(t.Context(), env, io.Discard, "crane", "pull", "--insecure", "--format", "oci",
				host+"/"+prefix+"/multiarch@"+d, filepath.Join(t.TempDir(), "oci")); err != nil {
				t.Errorf("crane pull of platform %s: %v", d, err)
			}
		}
		verifyImages(t, env, host, prefix, dir, imgs) // crane digest, then every blob byte for byte
	}

	for _, target := range []struct{ kind, host string }{{Berth, src.Host}, {DockerRegistry, other.Host}} {
		t.Run(target.kind, func(t *testing.T) {
			dst := target.host + "/dst/multiarch:latest"
			b.ok("tag", srcRef, dst)
			out, errOut, code := b.run("push", dst)
			if code != 0 || !strings.HasPrefix(out, "latest: digest: "+img.Digest+" size: ") || strings.Contains(errOut, "Only ") {
				t.Fatalf("push: exit %d, %q\n%s", code, out, errOut)
			}
			pushed(t, target.host, "dst")
		})
	}

	t.Run("save load push", func(t *testing.T) {
		tarFile := filepath.Join(t.TempDir(), "multi.tar")
		b.ok("save", "-o", tarFile, srcRef)
		l := berthCLI{t: t, bin: b.bin, state: filepath.Join(t.TempDir(), "state")}
		if out := l.ok("load", "-i", tarFile); out != "Loaded image: "+srcRef+"\n" {
			t.Errorf("load printed %q", out)
		}
		if out := l.ok("run", "--rm", srcRef); strings.TrimSpace(out) != "linux/amd64" {
			t.Errorf("run of the loaded image: %q, want linux/amd64", out)
		}
		dst := other.Host + "/loaded/multiarch:latest"
		l.ok("tag", srcRef, dst)
		if out := l.ok("push", dst); !strings.HasPrefix(out, "latest: digest: "+img.Digest) {
			t.Errorf("push of the loaded index printed %q", out)
		}
		pushed(t, other.Host, "loaded")
	})

	t.Run("one platform", func(t *testing.T) {
		pushImages(t, env, src.Host, "plain", dir, imgs)
		ref := src.Host + "/plain/multiarch:latest"
		p := berthCLI{t: t, bin: b.bin, state: filepath.Join(t.TempDir(), "state")}
		p.ok("pull", "-q", ref)
		host := refManifest(t, p, ref)
		if !slices.Contains(children, host) {
			t.Fatalf("the plain pull recorded manifest %s, not a child of the index", host)
		}
		// Pushed back to its own tag, which names the whole index, it
		// leaves the index there.
		out, errOut, code := p.run("push", ref)
		if code != 0 || !strings.HasPrefix(out, "latest: digest: "+img.Digest) || strings.Contains(errOut, "Only ") {
			t.Fatalf("push back to the source tag: exit %d, %q\n%s", code, out, errOut)
		}
		if got := strings.TrimSpace(mustOutput(t, env, "crane", "digest", "--insecure", ref)); got != img.Digest {
			t.Errorf("crane digest after pushing back: %s, want the index %s", got, img.Digest)
		}
		// Elsewhere, only the platform stored goes, with a note.
		one := src.Host + "/plain/one:latest"
		p.ok("tag", ref, one)
		out, errOut, code = p.run("push", one)
		if code != 0 || !strings.HasPrefix(out, "latest: digest: "+host) ||
			!strings.Contains(errOut, "Only linux/amd64 of multi-platform index "+img.Digest+" is pushed") ||
			!strings.Contains(errOut, "--all-platforms") {
			t.Fatalf("push: exit %d, %q\n%s", code, out, errOut)
		}
		if got := strings.TrimSpace(mustOutput(t, env, "crane", "digest", "--insecure", one)); got != host {
			t.Errorf("crane digest after the one-platform push: %s, want %s", got, host)
		}
	})
}

// indexChildren returns the digests of the entries of index d in an OCI
// layout, in order.
func indexChildren(t *testing.T, layout, d string) []string {
	t.Helper()
	raw, err := os.ReadFile(blobPath(layout, d))
	if err != nil {
		t.Fatal(err)
	}
	var idx struct{ Manifests []descriptor }
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range idx.Manifests {
		out = append(out, m.Digest)
	}
	return out
}

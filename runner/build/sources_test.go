package build

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/moby/patternmatcher"

	"github.com/berth-registry/berth/runner/build/dockerfile"
)

// hostileContext makes a build context whose symlinks point out of it in
// every way, next to a secret file outside it.
func hostileContext(t *testing.T) (ctxDir, secret string) {
	t.Helper()
	top := t.TempDir()
	secret = filepath.Join(top, "secret")
	ctxDir = filepath.Join(top, "ctx")
	must(t, os.WriteFile(secret, []byte("secret"), 0o644))
	must(t, os.MkdirAll(filepath.Join(ctxDir, "dir", "sub"), 0o755))
	must(t, os.WriteFile(filepath.Join(ctxDir, "f"), []byte("inside"), 0o644))
	must(t, os.WriteFile(filepath.Join(ctxDir, "dir", "sub", "g"), []byte("g"), 0o644))
	must(t, os.Symlink(secret, filepath.Join(ctxDir, "abs")))                  // absolute, out
	must(t, os.Symlink("../secret", filepath.Join(ctxDir, "up")))              // relative, out
	must(t, os.Symlink("../../..", filepath.Join(ctxDir, "dir", "climb")))     // a directory out
	must(t, os.Symlink("f", filepath.Join(ctxDir, "in")))                      // inside
	must(t, os.Symlink(filepath.Dir(secret), filepath.Join(ctxDir, "outdir"))) // the parent dir
	return ctxDir, secret
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestConfinement checks that no source path reaches outside the
// context: climbing names, absolute names and symlinks all resolve inside
// it, where the secret is not.
func TestConfinement(t *testing.T) {
	ctxDir, secret := hostileContext(t)
	r, err := openRoot(ctxDir, nil, true)
	must(t, err)
	defer r.close()
	for _, src := range []string{"abs", "up", "../secret", secret, "outdir/secret", "dir/climb/secret", "/../../secret"} {
		if _, err := r.match(src); !errors.Is(err, ErrNotFound) {
			t.Errorf("match(%q) = %v, want ErrNotFound", src, err)
		}
	}
	for src, want := range map[string]string{"in": "in", "../f": "f", "/f": "f", "dir/climb/f": "dir/climb/f", "d*/s*/g": "dir/sub/g"} {
		got, err := r.match(src)
		if err != nil || len(got) != 1 || got[0] != want {
			t.Errorf("match(%q) = %q, %v; want [%q]", src, got, err, want)
		}
	}
	// A symlink inside a copied directory is copied as a link, never
	// followed: the walk of the whole context reads no byte of secret.
	seen := map[string]string{}
	must(t, r.walk(".", func(e srcEntry) error {
		if e.open != nil {
			f, err := e.open()
			if err != nil {
				return err
			}
			b := make([]byte, 64)
			n, _ := f.Read(b)
			f.Close()
			seen[e.rel] = string(b[:n])
		} else if e.link != "" {
			seen[e.rel] = "-> " + e.link
		}
		return nil
	}))
	for rel, content := range seen {
		if content == "secret" {
			t.Errorf("the walk read the secret through %s", rel)
		}
	}
	if seen["abs"] != "-> "+secret || seen["f"] != "inside" {
		t.Errorf("walk saw %q", seen)
	}
}

// TestCopyConfined copies hostile sources into a rootfs whose own
// symlinks point out of it: everything lands inside the rootfs.
func TestCopyConfined(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("copying sets owners: needs root")
	}
	ctxDir, _ := hostileContext(t)
	r, err := openRoot(ctxDir, nil, true)
	must(t, err)
	defer r.close()
	host := t.TempDir() // stands for the host's /usr/lib
	rootfs := t.TempDir()
	must(t, os.Symlink(host, filepath.Join(rootfs, "lib")))
	cs := &dockerfile.CopySpec{FromStage: -1, Sources: []string{"dir", "in"}, Dest: "/lib/x/"}
	must(t, copyInto(context.Background(), rootfs, r, cs, t.TempDir()))
	if ents, _ := os.ReadDir(host); len(ents) != 0 {
		t.Errorf("the copy wrote through the rootfs's symlink to %s: %v", host, ents)
	}
	got, err := os.ReadFile(filepath.Join(rootfs, host, "x", "in"))
	if err != nil || string(got) != "inside" {
		t.Errorf("the copy of in: %q, %v (want it under the rootfs, the link resolved inside)", got, err)
	}
	if l, err := os.Readlink(filepath.Join(rootfs, host, "x", "climb")); err != nil || l != "../../.." {
		t.Errorf("dir/climb copied as %q, %v; want the link itself", l, err)
	}
	// abs points out of the context: resolved inside, it is missing.
	cs.Sources = []string{"abs"}
	if err := copyInto(context.Background(), rootfs, r, cs, t.TempDir()); !errors.Is(err, ErrNotFound) {
		t.Errorf("COPY abs: %v, want ErrNotFound", err)
	}
}

// TestHashSources checks the content key of COPY sources: content,
// modes and link targets count, times do not; .dockerignore'd files are
// out of it.
func TestHashSources(t *testing.T) {
	ctxDir, _ := hostileContext(t)
	hash := func(ignore ...string) string {
		var pm *patternmatcher.PatternMatcher
		if len(ignore) > 0 {
			var err error
			pm, err = patternmatcher.New(ignore)
			must(t, err)
		}
		r, err := openRoot(ctxDir, pm, true)
		must(t, err)
		defer r.close()
		h, err := hashSources(r, []string{"."})
		must(t, err)
		return h
	}
	h0 := hash()
	old := time.Now().Add(-time.Hour)
	must(t, os.Chtimes(filepath.Join(ctxDir, "f"), old, old))
	if hash() != h0 {
		t.Error("an mtime changed the key")
	}
	must(t, os.Chmod(filepath.Join(ctxDir, "f"), 0o600))
	h1 := hash()
	if h1 == h0 {
		t.Error("a mode change kept the key")
	}
	must(t, os.WriteFile(filepath.Join(ctxDir, "dir", "sub", "g"), []byte("G"), 0o644))
	h2 := hash()
	if h2 == h1 {
		t.Error("a content change kept the key")
	}
	if hash("dir") == h2 || hash("dir", "!dir/sub/g") == hash("dir") {
		t.Error(".dockerignore patterns do not change what is hashed")
	}
	must(t, os.Remove(filepath.Join(ctxDir, "in")))
	must(t, os.Symlink("dir", filepath.Join(ctxDir, "in")))
	if hash() == h2 {
		t.Error("a link target change kept the key")
	}
}

// TestWalkIgnored lists what the walk of a context gives under
// .dockerignore patterns: an excluded directory walked for an exception
// ("!") is given only when something in it is kept, just before that.
func TestWalkIgnored(t *testing.T) {
	ctxDir := t.TempDir()
	for _, d := range []string{"tmp/deep", "keep/inner", "logs"} {
		must(t, os.MkdirAll(filepath.Join(ctxDir, d), 0o755))
	}
	for _, f := range []string{"a.log", "important.log", "tmp/x", "tmp/deep/y", "keep/inner/z.bak", "keep/inner/k", "logs/l.log", "logs/important.log"} {
		must(t, os.WriteFile(filepath.Join(ctxDir, f), []byte(f), 0o644))
	}
	for _, tc := range []struct {
		patterns []string
		want     []string
	}{
		{nil, []string{"a.log", "important.log", "keep", "keep/inner", "keep/inner/k", "keep/inner/z.bak", "logs", "logs/important.log", "logs/l.log", "tmp", "tmp/deep", "tmp/deep/y", "tmp/x"}},
		// No exception: an excluded directory is not entered.
		{[]string{"tmp/", "**/*.bak"}, []string{"a.log", "important.log", "keep", "keep/inner", "keep/inner/k", "logs", "logs/important.log", "logs/l.log"}},
		// An exception elsewhere: tmp is walked, and left out as empty.
		{[]string{"*.log", "tmp/", "!important.log"}, []string{"important.log", "keep", "keep/inner", "keep/inner/k", "keep/inner/z.bak", "logs", "logs/important.log", "logs/l.log"}},
		// An exception inside: the excluded directories that hold it come with it.
		{[]string{"tmp", "logs", "!tmp/deep/y", "!logs/important.log"}, []string{"a.log", "important.log", "keep", "keep/inner", "keep/inner/k", "keep/inner/z.bak", "logs", "logs/important.log", "tmp", "tmp/deep", "tmp/deep/y"}},
	} {
		var pm *patternmatcher.PatternMatcher
		if tc.patterns != nil {
			var err error
			pm, err = patternmatcher.New(tc.patterns)
			must(t, err)
		}
		r, err := openRoot(ctxDir, pm, true)
		must(t, err)
		var got []string
		must(t, r.walk(".", func(e srcEntry) error {
			if e.rel != "" {
				got = append(got, e.rel)
			}
			return nil
		}))
		r.close()
		if !slices.Equal(got, tc.want) {
			t.Errorf("%q:\n got %q\nwant %q", tc.patterns, got, tc.want)
		}
	}
}

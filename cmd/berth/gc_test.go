package main

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/storage/filesystem"
	"github.com/berth-registry/berth/storage/store"
)

// gcRoot fills a filesystem root with two images sharing a layer, deletes
// one, and makes everything two hours old.
func gcRoot(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	root := t.TempDir()
	d, err := filesystem.New(root)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	st := store.New(d, store.Options{})
	push := func(b []byte) digest.Digest {
		dg := digest.FromBytes(b)
		if _, err := st.PutBlob(ctx, "app", bytes.NewReader(b), dg); err != nil {
			t.Fatal(err)
		}
		return dg
	}
	var first digest.Digest
	for _, name := range []string{"a", "b"} {
		cfg := []byte(`{"os":"` + name + `"}`)
		layer := []byte("layer " + name)
		cd, ld, sd := push(cfg), push(layer), push([]byte("shared"))
		body := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
			`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},`+
			`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d},`+
			`{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":6}]}`, cd, len(cfg), ld, len(layer), sd)
		res, err := st.PutManifest(ctx, "app", name, "", "application/vnd.oci.image.manifest.v1+json", []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if first == "" {
			first = res.Digest
		}
	}
	if err := st.DeleteManifest(ctx, "app", first); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-2 * time.Hour)
	err = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		return os.Chtimes(p, past, past)
	})
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func tree(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %d %s\n", p, info.Size(), info.ModTime())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestGC(t *testing.T) {
	root := gcRoot(t)
	before := tree(t, root)

	ta := newTestApp(nil)
	if code := ta.run([]string{"gc", "--root", root, "--dry-run"}); code != exitOK {
		t.Fatalf("gc --dry-run: exit %d, stderr %s", code, ta.stderr.String())
	}
	if got := ta.stdout.String(); !strings.Contains(got, "gc: would delete 3 blobs (") || !strings.Contains(got, "and 2 layer links, 4 blobs kept") {
		t.Errorf("gc --dry-run printed %q", got)
	}
	if after := tree(t, root); after != before {
		t.Errorf("gc --dry-run changed the root:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	ta = newTestApp(nil)
	if code := ta.run([]string{"gc", "--root", root, "--verbose"}); code != exitOK {
		t.Fatalf("gc: exit %d, stderr %s", code, ta.stderr.String())
	}
	if got := ta.stdout.String(); !strings.Contains(got, "gc: 3 blobs (") || !strings.Contains(got, "deleted, 4 kept, 2 layer links removed") {
		t.Errorf("gc printed %q", got)
	}
	if got := ta.stderr.String(); strings.Count(got, "gc: deleted blob") != 3 {
		t.Errorf("gc --verbose logged %q, want each deleted blob", got)
	}

	ta = newTestApp(nil)
	if code := ta.run([]string{"gc", "--root", root}); code != exitOK || !strings.Contains(ta.stdout.String(), "gc: 0 blobs (0 bytes) deleted, 4 kept, 0 layer links removed") {
		t.Errorf("second gc: exit %d, printed %q", code, ta.stdout.String())
	}

	ta = newTestApp(nil)
	if code := ta.run([]string{"gc", "--root", root, "--grace", "1m"}); code != exitUsage {
		t.Errorf("gc --grace 1m: exit %d, want %d (shorter than the touch threshold)", code, exitUsage)
	}
}

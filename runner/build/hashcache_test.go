package build

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestHashCache: a remembered file hash is used while the file is
// unchanged (a planted hash shows it), and not once the file changed, even
// with the same size and mtime (its ctime changed) or when another file of
// the same size and mtime took its name (its inode changed); the entries
// survive a save and a load; a file changed just before it was hashed is
// not remembered.
func TestHashCache(t *testing.T) {
	ctxDir, state := t.TempDir(), t.TempDir()
	f := filepath.Join(ctxDir, "f")
	must(t, os.WriteFile(f, []byte("aaaa"), 0o644))
	mtime := time.Unix(1_500_000_000, 0)
	must(t, os.Chtimes(f, mtime, mtime))
	future := func() time.Time { return time.Now().Add(time.Hour) }

	hash := func(c *fileHashes) string {
		t.Helper()
		r, err := openRoot(ctxDir, nil, true)
		must(t, err)
		defer r.close()
		r.abs, r.hashes = ctxDir, c
		h, err := hashSources(r, []string{"."})
		must(t, err)
		return h
	}
	plain := func() string { return hash(nil) }

	c := loadHashes(state)
	c.now = future // the test's files are fresh: remember them anyway
	h0 := hash(c)
	if h0 != plain() {
		t.Fatal("the key with a cache differs from the one without")
	}
	must(t, c.save())
	c = loadHashes(state)
	c.now = future
	e, ok := c.m[f]
	if !ok {
		t.Fatalf("the hash of %s was not remembered: %v", f, c.m)
	}
	// Plant a wrong hash: while the file is unchanged, it is used.
	e.Sum = "planted"
	c.m[f] = e
	if hash(c) == h0 {
		t.Fatal("the remembered hash was not used")
	}

	// Same size, same mtime, other content: the ctime tells.
	must(t, os.WriteFile(f, []byte("bbbb"), 0o644))
	must(t, os.Chtimes(f, mtime, mtime))
	c.m[f] = e
	if got, want := hash(c), plain(); got != want || got == h0 {
		t.Errorf("after a change of content with the same size and mtime: key %s, want %s", got, want)
	}

	// Another file put in its place: the inode tells (the ctime is made
	// equal in the planted entry to show it).
	var before = c.m[f]
	must(t, os.WriteFile(f+".new", []byte("cccc"), 0o644))
	must(t, os.Chtimes(f+".new", mtime, mtime))
	must(t, os.Rename(f+".new", f))
	st := lstatT(t, f)
	before.Ctime, before.Sum = st.Ctim.Nano(), "planted"
	c.m[f] = before
	if got, want := hash(c), plain(); got != want {
		t.Errorf("after the file was replaced: key %s, want %s", got, want)
	}

	// A file changed within racyMargin of its hash is not remembered.
	c = loadHashes(t.TempDir())
	hash(c)
	if _, ok := c.m[f]; ok {
		t.Errorf("a file changed just now was remembered")
	}
}

func lstatT(t *testing.T, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	must(t, unix.Lstat(p, &st))
	return st
}

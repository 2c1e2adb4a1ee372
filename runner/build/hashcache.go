package build

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Where and how long the build context's file hashes are kept.
const (
	hashesFile = "hashes.json"
	// maxHashes bounds the file: past it, entries this build did not use
	// are dropped.
	maxHashes = 200_000
	// racyMargin: a file changed less than this before it was hashed is
	// not remembered. A change made right after the hash could fall in
	// the same tick of the (coarse) clock the kernel stamps files with,
	// and leave size, mtime and ctime as they were.
	racyMargin = 100 * time.Millisecond
)

// fileHashes remembers the sha256 of build-context files between builds
// (<state>/build/hashes.json), so a rebuild does not read an unchanged
// context again. The cache key stays the content's hash: an entry only
// saves reading a file, and only while the file is provably the one that
// was hashed: same device, inode, size, mtime and ctime (which no user can
// set back). Safe for concurrent use.
type fileHashes struct {
	path string
	now  func() time.Time

	mu    sync.Mutex
	m     map[string]fileHash
	used  map[string]bool
	dirty bool
}

// fileHash is one remembered file: what its stat said when it was hashed,
// and the hash.
type fileHash struct {
	Dev   uint64 `json:"dev"`
	Ino   uint64 `json:"ino"`
	Size  int64  `json:"size"`
	Mtime int64  `json:"mtime"` // nanoseconds
	Ctime int64  `json:"ctime"`
	Sum   string `json:"sha256"`
}

// loadHashes reads the remembered hashes in dir; a missing or damaged file
// is an empty cache.
func loadHashes(dir string) *fileHashes {
	c := &fileHashes{path: filepath.Join(dir, hashesFile), now: time.Now, m: map[string]fileHash{}, used: map[string]bool{}}
	if b, err := os.ReadFile(c.path); err == nil {
		if json.Unmarshal(b, &c.m) != nil {
			c.m = map[string]fileHash{}
		}
	}
	return c
}

func statHash(st *unix.Stat_t, sum string) fileHash {
	return fileHash{Dev: st.Dev, Ino: st.Ino, Size: st.Size, Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano(), Sum: sum}
}

// get returns the remembered hash of the file at name (an absolute path)
// if st shows it unchanged since.
func (c *fileHashes) get(name string, st *unix.Stat_t) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[name]
	if !ok || e != statHash(st, e.Sum) {
		return "", false
	}
	c.used[name] = true
	return e.Sum, true
}

// put remembers sum as the hash of the file at name, which before and
// after it was read had the stat st, unless the file changed too recently
// to tell a later change by its stat (racyMargin).
func (c *fileHashes) put(name string, st *unix.Stat_t, sum string) {
	limit := c.now().Add(-racyMargin).UnixNano()
	if st.Ctim.Nano() >= limit || st.Mtim.Nano() >= limit {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[name], c.used[name], c.dirty = statHash(st, sum), true, true
}

// save writes the remembered hashes back (atomically) if they changed.
func (c *fileHashes) save() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.dirty {
		return nil
	}
	if len(c.m) > maxHashes {
		for k := range c.m {
			if !c.used[k] {
				delete(c.m, k)
			}
		}
	}
	b, err := json.Marshal(c.m)
	if err != nil {
		return fmt.Errorf("build: saving file hashes: %w", err)
	}
	tmp := c.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("build: saving file hashes: %w", err)
	}
	if err := os.Rename(tmp, c.path); err != nil {
		return fmt.Errorf("build: saving file hashes: %w", err)
	}
	c.dirty = false
	return nil
}

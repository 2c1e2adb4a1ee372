package layers

import (
	"context"
	"crypto/rand"
	_ "crypto/sha256" // digest.SHA256
	_ "crypto/sha512" // digest.SHA384, digest.SHA512
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Names in the store's layout (drawn in doc.go).
const (
	layersDir = "layers"
	tmpDir    = "tmp"
	fsDir     = "fs"
	metaFile  = "layer.json"
	lockExt   = ".lock"
)

// Store holds unpacked layers under one root directory. It is safe for
// concurrent use by many goroutines, and several processes may share one
// root (see the package doc).
type Store struct {
	root string
	res  resolver

	mu      sync.Mutex
	flights map[digest.Digest]*flight

	overlayOnce sync.Once
	overlayErr  error
}

// Layer describes one unpacked layer.
type Layer struct {
	// DiffID is the digest of the layer's uncompressed tar stream, the
	// key it is stored under.
	DiffID digest.Digest `json:"diffID"`
	// Size is the length of the uncompressed tar stream in bytes.
	Size int64 `json:"size"`
	// Entries counts the tar entries read.
	Entries int `json:"entries"`
	// Skipped counts the entries left out: device nodes, entries
	// of unknown type and aufs bookkeeping whiteouts.
	Skipped int `json:"skipped"`
	// Complete is true once the layer was fully unpacked and verified;
	// it is written last, before the layer is moved into place.
	Complete bool `json:"complete"`
	// Dir is the unpacked tree (an overlayfs lower directory). Callers
	// must not change anything in it.
	Dir string `json:"-"`
}

// Open opens the store rooted at root, creating it (mode 0700) if needed,
// and removes what crashed unpacks and removals left in its temporary area.
// The root is set to mode 0700 even if it existed: layers keep their
// setuid files, which no host user may reach.
func Open(root string) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("layers: store root %s: %w", root, err)
	}
	for _, d := range []string{abs, filepath.Join(abs, layersDir), filepath.Join(abs, tmpDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("layers: creating store: %w", err)
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, fmt.Errorf("layers: creating store: %w", err)
		}
	}
	s := &Store{root: abs, flights: make(map[digest.Digest]*flight)}
	if err := s.cleanTemp(); err != nil {
		return nil, err
	}
	return s, nil
}

// Root returns the store's root directory.
func (s *Store) Root() string { return s.root }

// Get returns the complete layer stored under diffID, or an error
// wrapping ErrNotFound.
func (s *Store) Get(diffID digest.Digest) (Layer, error) {
	if err := checkDiffID(diffID); err != nil {
		return Layer{}, err
	}
	dir := s.layerDir(diffID)
	b, err := os.ReadFile(filepath.Join(dir, metaFile))
	if errors.Is(err, fs.ErrNotExist) {
		return Layer{}, fmt.Errorf("%w: %s", ErrNotFound, diffID)
	}
	if err != nil {
		return Layer{}, fmt.Errorf("layers: reading layer %s: %w", diffID, err)
	}
	var l Layer
	if err := json.Unmarshal(b, &l); err != nil || l.DiffID != diffID || !l.Complete {
		return Layer{}, fmt.Errorf("%w: %s: damaged metadata (remove the layer)", ErrNotFound, diffID)
	}
	l.Dir = filepath.Join(dir, fsDir)
	return l, nil
}

// List returns the complete layers in the store, sorted by diff_id.
// Directories without valid metadata (which only outside hands make) are
// left out; Remove still deletes them.
func (s *Store) List() ([]Layer, error) {
	algs, err := os.ReadDir(filepath.Join(s.root, layersDir))
	if err != nil {
		return nil, fmt.Errorf("layers: listing: %w", err)
	}
	var out []Layer
	for _, alg := range algs {
		ents, err := os.ReadDir(filepath.Join(s.root, layersDir, alg.Name()))
		if err != nil {
			return nil, fmt.Errorf("layers: listing: %w", err)
		}
		for _, e := range ents {
			d := digest.NewDigestFromEncoded(digest.Algorithm(alg.Name()), e.Name())
			if d.Validate() != nil {
				continue
			}
			if l, err := s.Get(d); err == nil {
				out = append(out, l)
			}
		}
	}
	slices.SortFunc(out, func(a, b Layer) int { return strings.Compare(string(a.DiffID), string(b.DiffID)) })
	return out, nil
}

// Remove deletes the layer stored under diffID, or returns an error
// wrapping ErrNotFound. The layer leaves the store's namespace atomically
// (it is renamed into the temporary area first), so a concurrent Get sees
// it whole or not at all. Removing a layer that a mounted rootfs still
// uses is the caller's problem: the store keeps no reference counts.
func (s *Store) Remove(diffID digest.Digest) error {
	if err := checkDiffID(diffID); err != nil {
		return err
	}
	sl, err := s.reserve()
	if err != nil {
		return err
	}
	defer sl.release()
	if err := os.Rename(s.layerDir(diffID), sl.dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: %s", ErrNotFound, diffID)
		}
		return fmt.Errorf("layers: removing %s: %w", diffID, err)
	}
	if err := os.RemoveAll(sl.dir); err != nil {
		return fmt.Errorf("layers: removing %s: %w", diffID, err)
	}
	return nil
}

// Usage returns the disk space the stored layers take, in bytes of
// allocated blocks, counting each inode once.
func (s *Store) Usage(ctx context.Context) (int64, error) {
	type inode struct{ dev, ino uint64 }
	seen := make(map[inode]bool)
	var total int64
	err := filepath.WalkDir(filepath.Join(s.root, layersDir), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		k := inode{uint64(st.Dev), st.Ino}
		if !seen[k] {
			seen[k] = true
			total += st.Blocks * 512
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("layers: usage: %w", err)
	}
	return total, nil
}

// layerDir is where the layer stored under d lives; d is valid.
func (s *Store) layerDir(d digest.Digest) string {
	return filepath.Join(s.root, layersDir, d.Algorithm().String(), d.Encoded())
}

// checkDiffID refuses a malformed diff_id or one whose algorithm this
// binary cannot compute; Validate also guarantees the encoded part is
// plain hex, safe in a path.
func checkDiffID(d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("%w: diff_id %q: %v", ErrInvalid, d, err)
	}
	return nil
}

// slot is a reserved name in the temporary area: tmp/ID (an unpack in
// progress, or a layer being removed) guarded by tmp/ID.lock, which its
// owner holds an exclusive flock on. A lock nobody holds, or a directory
// without a lock, is a crash's leftover.
type slot struct {
	dir, lock string
	fd        int
}

// reserve creates and locks a new slot. The lock file is created before
// the directory and removed after it, so a directory without a lock is
// never live. If a concurrent cleanTemp removed the lock file between its
// creation and the flock, the slot is given up and another name tried.
func (s *Store) reserve() (*slot, error) {
	for range 8 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("layers: temporary name: %w", err)
		}
		id := hex.EncodeToString(b[:])
		sl := &slot{dir: filepath.Join(s.root, tmpDir, id), lock: filepath.Join(s.root, tmpDir, id+lockExt)}
		fd, err := unix.Open(sl.lock, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
		if err == unix.EEXIST {
			continue
		}
		if err != nil {
			return nil, pathError("creating", sl.lock, err)
		}
		sl.fd = fd
		if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
			unix.Close(fd)
			return nil, pathError("locking", sl.lock, err)
		}
		var held, onDisk unix.Stat_t
		if unix.Fstat(fd, &held) == nil && unix.Stat(sl.lock, &onDisk) == nil && held.Ino == onDisk.Ino {
			return sl, nil
		}
		unix.Close(fd)
	}
	return nil, fmt.Errorf("layers: could not reserve a temporary directory in %s", filepath.Join(s.root, tmpDir))
}

// release removes the slot's directory (whatever is left of it) and its
// lock.
func (sl *slot) release() {
	os.RemoveAll(sl.dir)
	os.Remove(sl.lock)
	unix.Close(sl.fd)
}

// cleanTemp removes the slots of crashed unpacks and removals: those whose
// lock nobody holds, and directories without a lock. Live slots of other
// processes sharing the root are left alone. os.RemoveAll never follows a
// symlink, so a half-unpacked hostile layer cannot steer it.
func (s *Store) cleanTemp() error {
	tmp := filepath.Join(s.root, tmpDir)
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return fmt.Errorf("layers: cleaning %s: %w", tmp, err)
	}
	for _, e := range ents {
		name := e.Name()
		if id, ok := strings.CutSuffix(name, lockExt); ok {
			lock := filepath.Join(tmp, name)
			fd, err := unix.Open(lock, unix.O_RDWR|unix.O_CLOEXEC, 0)
			if err != nil {
				continue // gone meanwhile
			}
			if unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) == nil {
				err = os.RemoveAll(filepath.Join(tmp, id))
				os.Remove(lock)
			}
			unix.Close(fd)
			if err != nil {
				return fmt.Errorf("layers: cleaning %s: %w", tmp, err)
			}
			continue
		}
		if _, err := os.Lstat(filepath.Join(tmp, name+lockExt)); err == nil {
			continue // handled through its lock
		}
		if err := os.RemoveAll(filepath.Join(tmp, name)); err != nil {
			return fmt.Errorf("layers: cleaning %s: %w", tmp, err)
		}
	}
	return nil
}

package filesystem

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
)

// dirSyncWorkers is how many directory fsyncs one round has in flight.
// On a journalling file system the fsyncs of a round mostly join one
// journal commit, so running them together costs about one; without a
// journal (ext4 nojournal) each is a flush of its own that the disk
// serves one at a time, and more threads blocked in fsync only cost
// context switches.
const dirSyncWorkers = 4

// dirSyncer makes directory entries durable by group commit: a caller
// hands in the directories whose entries it added (a rename landed there,
// a directory was made there) and waits for one round of fsyncs that
// covers them all. Callers that arrive while a round runs join the next
// one, so a directory that many writers touched at once (blobs/sha256, a
// repository's _layers) is synced once for all of them, and each writer
// waits for at most two rounds whatever number of directories it touched.
// A round begins only after every caller in it handed its directories in,
// that is after its renames and mkdirs, so its fsyncs cover them.
//
// A directory made is pending until a round has synced its parent: a
// durable write beneath a pending directory (whoever made it) syncs that
// parent too, so that its file is not durable in a directory that a crash
// could still lose. Writes that need not be durable (WithoutSync: an
// upload's state, a lease) sync nothing, not even the directories they
// make, which stay pending until a durable write beneath them, or their
// removal: an upload session's directories, made and removed with every
// push, never cost an fsync.
type dirSyncer struct {
	mu      sync.Mutex
	next    *syncRound              // collecting callers; nil when none wait
	running bool                    // a round is being synced
	pending map[string]uint64       // directories made whose parent is not synced since, by the making's number
	made    uint64                  // the number of the last making
	fsync   func(name string) error // syncDir; another in tests

	root     string // the driver's root: its file system is what flushAll syncs
	limit    int    // pending's size past which flushAll runs; 0 means pendingLimit
	flushing bool   // flushAll runs
}

// pendingLimit bounds the pending directories. Those made by writes
// WithoutSync beneath which nothing durable is ever written (a tag's
// history entries) would stay pending for ever: past the limit, one sync
// of the whole file system makes them all durable at once (flushAll).
const pendingLimit = 1024

// syncRound is one round of directory fsyncs.
type syncRound struct {
	dirs    map[string]error // directory name -> its fsync's error
	callers int              // how many sync calls wait for it
	done    chan struct{}    // closed when every fsync of the round returned
}

// make records that directory name was just created (before anyone may
// write beneath it): it is pending.
func (s *dirSyncer) make(name string) {
	s.mu.Lock()
	if s.pending == nil {
		s.pending = map[string]uint64{}
	}
	s.made++
	s.pending[name] = s.made
	if s.overLimit() && !s.flushing {
		s.flushing = true
		go s.flushAll()
	}
	s.mu.Unlock()
}

// overLimit reports whether more directories are pending than the limit;
// s.mu is held.
func (s *dirSyncer) overLimit() bool {
	limit := s.limit
	if limit == 0 {
		limit = pendingLimit
	}
	return len(s.pending) > limit
}

// flushAll syncs the root's whole file system (syncfs), which makes every
// directory made before it durable, and ends their pending state; again
// while those made meanwhile are over the limit. On an error they stay
// pending, and the next making past the limit tries again.
func (s *dirSyncer) flushAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		upTo := s.made
		s.mu.Unlock()
		err := syncFilesystem(s.root)
		s.mu.Lock()
		if err != nil {
			break
		}
		for p, n := range s.pending {
			if n <= upTo {
				delete(s.pending, p)
			}
		}
		if !s.overLimit() {
			break
		}
	}
	s.flushing = false
}

// removed ends the pending state of directory name, and with tree of every
// directory beneath it: they were removed.
func (s *dirSyncer) removed(name string, tree bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.pending, name)
	if !tree {
		return
	}
	for p := range s.pending {
		if strings.HasPrefix(p, name) && strings.HasPrefix(p[len(name):], string(filepath.Separator)) {
			delete(s.pending, p)
		}
	}
}

// sync makes durable the entries of directory dir and the entry of every
// directory that is pending among dir and its ancestors below the root
// (by syncing its parent). It returns the first error among those fsyncs.
// A directory that no longer exists is not an error: it was removed with
// what the caller wrote in it. All names are file names, not storage
// paths.
func (s *dirSyncer) sync(dir string) error {
	type making struct {
		dir string
		n   uint64
	}
	names := []string{dir}
	var durable []making // pending directories whose parent this syncs
	s.mu.Lock()
	for a := dir; len(a) > len(s.root); a = filepath.Dir(a) {
		if n, ok := s.pending[a]; ok {
			names = append(names, filepath.Dir(a))
			durable = append(durable, making{a, n})
		}
	}
	if s.next == nil {
		s.next = &syncRound{dirs: map[string]error{}, done: make(chan struct{})}
	}
	r := s.next
	r.callers++
	for _, n := range names {
		r.dirs[n] = nil
	}
	lead := !s.running
	if lead {
		s.running, s.next = true, nil
	}
	s.mu.Unlock()
	if lead {
		s.run(r)
	} else {
		<-r.done
	}
	// The round's map is written only before done is closed.
	var err error
	for _, n := range names {
		if err = r.dirs[n]; err != nil {
			return err
		}
	}
	// Those directories' entries are durable now, unless one was removed
	// and made again meanwhile (a new making).
	s.mu.Lock()
	for _, m := range durable {
		if s.pending[m.dir] == m.n {
			delete(s.pending, m.dir)
		}
	}
	s.mu.Unlock()
	return nil
}

// run syncs round r, then starts the round that gathered meanwhile, if
// any, on a goroutine of its own (its callers wait for it), or marks the
// syncer idle.
func (s *dirSyncer) run(r *syncRound) {
	names := make([]string, 0, len(r.dirs))
	for n := range r.dirs {
		names = append(names, n)
	}
	fsync := s.fsync
	if fsync == nil {
		fsync = syncDir
	}
	errs := make([]error, len(names))
	if len(names) == 1 {
		errs[0] = fsync(names[0])
	} else {
		each(len(names), dirSyncWorkers, func(i int) { errs[i] = fsync(names[i]) })
	}
	for i, n := range names {
		if errs[i] != nil && !errors.Is(errs[i], fs.ErrNotExist) {
			r.dirs[n] = errs[i]
		}
	}
	close(r.done)
	s.mu.Lock()
	next := s.next
	s.next = nil
	s.running = next != nil
	s.mu.Unlock()
	if next != nil {
		go s.run(next)
	}
}

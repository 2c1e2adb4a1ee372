package filesystem

import (
	"errors"
	"io/fs"
	"path/filepath"
	"sync"
)

// dirSyncWorkers is how many directory fsyncs one round has in flight.
// On a journalling file system the fsyncs of a round mostly join one
// journal commit, so running them together costs about one.
const dirSyncWorkers = 16

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
// A directory made but whose entry is not durable yet is pending until
// the round that syncs its parent is over: a writer that renames a file
// beneath it meanwhile (it found the directory there and made nothing)
// syncs that parent too, so that its file is not durable in a directory
// that a crash could still lose.
type dirSyncer struct {
	mu      sync.Mutex
	next    *syncRound              // collecting callers; nil when none wait
	running bool                    // a round is being synced
	pending map[string]int          // directories made whose parent is not synced yet, with how many makers
	fsync   func(name string) error // syncDir; another in tests
}

// syncRound is one round of directory fsyncs.
type syncRound struct {
	dirs    map[string]error // directory name -> its fsync's error
	callers int              // how many sync calls wait for it
	done    chan struct{}    // closed when every fsync of the round returned
}

// made records that the caller created directory name (before anyone
// may rename into it); the caller's sync for a file beneath it ends that.
func (s *dirSyncer) made(name string) {
	s.mu.Lock()
	if s.pending == nil {
		s.pending = map[string]int{}
	}
	s.pending[name]++
	s.mu.Unlock()
}

// forget ends the pending state of the directories in made, which the
// caller created and then synced (or failed to use).
func (s *dirSyncer) forget(made []string) {
	if len(made) == 0 {
		return
	}
	s.mu.Lock()
	for _, m := range made {
		if s.pending[m]--; s.pending[m] <= 0 {
			delete(s.pending, m)
		}
	}
	s.mu.Unlock()
}

// sync makes durable the entry of every directory that is pending among
// dir and its ancestors below root (by syncing its parent), and with
// syncDir dir's own entries too. It returns the first error among those
// fsyncs. A directory that no longer exists is not an error: it was
// removed with what the caller wrote in it. All names are file names, not
// storage paths.
func (s *dirSyncer) sync(root, dir string, syncDir bool) error {
	var names []string
	if syncDir {
		names = append(names, dir)
	}
	s.mu.Lock()
	for a := dir; len(a) > len(root); a = filepath.Dir(a) {
		if s.pending[a] > 0 {
			names = append(names, filepath.Dir(a))
		}
	}
	if len(names) == 0 {
		s.mu.Unlock()
		return nil
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
	for _, n := range names {
		if err := r.dirs[n]; err != nil {
			return err
		}
	}
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

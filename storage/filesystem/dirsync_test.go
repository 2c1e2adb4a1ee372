package filesystem

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-registry/berth/storage"
)

// TestDirSyncerGroupsCallers: callers that arrive while a round runs share
// the next one, and a directory many of them touched is synced once in it;
// a pending directory (made, its parent not synced yet) makes a writer
// beneath it sync that parent; an fsync's error reaches the callers whose
// directories it was, a directory gone is no error.
func TestDirSyncerGroupsCallers(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	gate := make(chan struct{})
	s := &dirSyncer{root: "/r", fsync: func(name string) error {
		mu.Lock()
		calls = append(calls, name)
		first := len(calls) == 1
		mu.Unlock()
		if first {
			<-gate
		}
		switch name {
		case "/r/bad":
			return syscall.EIO
		case "/r/gone":
			return syscall.ENOENT
		}
		return nil
	}}
	errs := make(chan error, 20)
	go func() { errs <- s.sync("/r/x") }()
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(calls) == 1 })
	const n = 10
	for range n {
		go func() { errs <- s.sync("/r/y") }()
	}
	go func() { errs <- s.sync("/r/bad") }()
	go func() { errs <- s.sync("/r/gone") }()
	waitFor(t, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.next != nil && s.next.callers == n+2 })
	close(gate)
	var failed int
	for range n + 3 {
		if err := <-errs; errors.Is(err, syscall.EIO) {
			failed++
		} else if err != nil {
			t.Errorf("sync: %v", err)
		}
	}
	if failed != 1 {
		t.Errorf("%d callers saw the failed fsync, want the 1 whose directory it was", failed)
	}
	mu.Lock()
	got := slices.Clone(calls)
	mu.Unlock()
	slices.Sort(got[1:])
	if want := []string{"/r/x", "/r/bad", "/r/gone", "/r/y"}; !slices.Equal(got, want) {
		t.Errorf("fsyncs %q, want %q (one round for the callers that waited, each directory once)", got, want)
	}

	mu.Lock()
	calls = nil
	mu.Unlock()
	s.make("/r/new")
	s.make("/r/gone")
	s.removed("/r/gone", false)
	s.make("/r/tree")
	s.make("/r/tree/sub")
	s.removed("/r/tree", true)
	targets := []string{"/r/new/sub", "/r/new/sub", "/r/gone/x", "/r/tree/sub/x"}
	for _, dir := range targets {
		if err := s.sync(dir); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	// Each sync syncs its own directory; what else it syncs:
	calls = slices.DeleteFunc(calls, func(c string) bool { return slices.Contains(targets, c) })
	if want := []string{"/r"}; !slices.Equal(calls, want) {
		t.Errorf("fsyncs %q, want %q: the pending directory's parent, once, and nothing for one made durable or removed", calls, want)
	}
	if len(s.pending) != 0 {
		t.Errorf("pending directories left: %v", s.pending)
	}
}

// TestUnsyncedWritesSyncNoDirectory: a write WithoutSync syncs no
// directory, not even those it makes; a durable write beneath them syncs
// their parents; removing them ends their pending state.
func TestUnsyncedWritesSyncNoDirectory(t *testing.T) {
	root := t.TempDir()
	d, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var synced []string
	d.dirs.fsync = func(name string) error {
		mu.Lock()
		synced = append(synced, strings.TrimPrefix(name, root))
		mu.Unlock()
		return syncDir(name)
	}
	took := func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := slices.Clone(synced)
		synced = nil
		slices.Sort(out)
		return out
	}
	ctx := t.Context()
	if err := storage.WriteAll(storage.WithoutSync(ctx), d, "/repo/_uploads/id/startedat", []byte("now")); err != nil {
		t.Fatal(err)
	}
	if got := took(); len(got) != 0 {
		t.Errorf("a write WithoutSync synced %q", got)
	}
	if err := storage.WriteAll(ctx, d, "/repo/_layers/link", []byte("digest")); err != nil {
		t.Fatal(err)
	}
	if got, want := took(), []string{"", "/repo", "/repo/_layers"}; !slices.Equal(got, want) {
		t.Errorf("a durable write synced %q, want %q (the root for repo, which the unsynced write made)", got, want)
	}
	if err := d.Delete(ctx, "/repo/_uploads"); err != nil {
		t.Fatal(err)
	}
	d.dirs.mu.Lock()
	defer d.dirs.mu.Unlock()
	if len(d.dirs.pending) != 0 {
		t.Errorf("pending after the delete: %v", d.dirs.pending)
	}
}

// TestPendingBounded: past the limit, one sync of the whole file system
// makes every pending directory durable and ends its pending state, so
// directories beneath which nothing durable is written do not pile up.
func TestPendingBounded(t *testing.T) {
	s := &dirSyncer{root: t.TempDir(), limit: 10}
	for i := range 25 {
		s.make(fmt.Sprintf("%s/d%d", s.root, i))
	}
	waitFor(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return !s.flushing && len(s.pending) <= 10
	})
}

// waitFor polls cond until it holds, failing the test after a minute.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition never held")
		}
	}
}

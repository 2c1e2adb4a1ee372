package filesystem

import (
	"errors"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
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
	s := &dirSyncer{fsync: func(name string) error {
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
	go func() { errs <- s.sync("/r", "/r/x", true) }()
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(calls) == 1 })
	const n = 10
	for range n {
		go func() { errs <- s.sync("/r", "/r/y", true) }()
	}
	go func() { errs <- s.sync("/r", "/r/bad", true) }()
	go func() { errs <- s.sync("/r", "/r/gone", true) }()
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
	s.made("/r/new")
	if err := s.sync("/r", "/r/new/sub", false); err != nil {
		t.Fatal(err)
	}
	s.forget([]string{"/r/new"})
	if err := s.sync("/r", "/r/new/sub", false); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"/r"}; !slices.Equal(calls, want) {
		t.Errorf("fsyncs %q, want %q: the pending directory's parent, once, and nothing once it is durable", calls, want)
	}
	if len(s.pending) != 0 {
		t.Errorf("pending directories left: %v", s.pending)
	}
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

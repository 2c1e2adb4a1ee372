package store

import (
	"context"
	"errors"
	"io"

	"github.com/berth-registry/berth/storage"
)

// The collector's reserve: an object of zeros under _berth/gc that holds
// space only garbage collection may use. On a full storage the collector
// cannot write what it must write before it deletes (the clock probe, its
// doom list: see the top of gc.go); it then deletes the reserve and
// writes again (withReserve), and makes the reserve anew once the run has
// freed space (Reserve).

// DefaultReserve is the default size of the collector's reserve: room
// for the clock probe and a few doom lists of a whole round (about 130
// bytes per item, 2,000 items a round) and the directories they need.
const DefaultReserve = 1 << 20

func reservePath() string { return gcRoot() + "/reserve" }

// Reserve makes the collector's reserve n bytes large, unless it is
// already: zeros written, so that a filesystem allocates them. It returns
// an error that IsFull matches when there is no room for it; then the
// collector runs without one until a later Reserve succeeds. n <= 0
// removes the reserve.
func (s *Store) Reserve(ctx context.Context, n int64) error {
	if n <= 0 {
		_, err := s.releaseReserve(ctx)
		return err
	}
	fi, err := s.driver.Stat(ctx, reservePath())
	if err == nil && fi.Size >= n {
		return nil
	}
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	w, err := s.driver.Writer(ctx, reservePath(), false)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(w, zeros{}, n); err != nil {
		w.Cancel(context.WithoutCancel(ctx))
		return err
	}
	if err := w.Commit(ctx); err != nil {
		w.Cancel(context.WithoutCancel(ctx))
		return err
	}
	return nil
}

// releaseReserve deletes the collector's reserve and reports whether
// there was one.
func (s *Store) releaseReserve(ctx context.Context) (bool, error) {
	err := s.driver.Delete(ctx, reservePath())
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// withReserve runs write, a write the collector must make; when it fails
// because the storage is full, it releases the reserve and runs it again.
func (s *Store) withReserve(ctx context.Context, write func() error) error {
	err := write()
	if !storage.IsFull(err) {
		return err
	}
	released, rerr := s.releaseReserve(ctx)
	if rerr != nil || !released {
		return err
	}
	s.log.Warn("storage full: garbage collection uses its reserve")
	return write()
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// FreeBytes is how many more bytes the storage can hold, where its driver
// can tell (storage.SpaceReporter); ok is false where it cannot (S3).
func (s *Store) FreeBytes(ctx context.Context) (n int64, ok bool, err error) {
	sr, ok := s.driver.(storage.SpaceReporter)
	if !ok {
		return 0, false, nil
	}
	n, err = sr.FreeBytes(ctx)
	return n, err == nil, err
}

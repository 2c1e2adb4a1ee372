package storage_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/storage"
	"github.com/berth-registry/berth/storage/inmemory"
	"github.com/berth-registry/berth/storage/storagetest"
)

// plainDriver hides the optional abilities of the driver it wraps, so that
// storage.DeleteFiles falls back to Stat and Delete.
type plainDriver struct{ storage.Driver }

// TestDeleteFilesFallback runs the driver suite, DeleteFiles tests
// included, over a driver that is no storage.BatchDeleter.
func TestDeleteFilesFallback(t *testing.T) {
	if _, ok := storage.Driver(plainDriver{}).(storage.BatchDeleter); ok {
		t.Fatal("plainDriver is a BatchDeleter: the fallback would go untested")
	}
	storagetest.Run(t, func(*testing.T) storage.Driver { return plainDriver{inmemory.New()} })
}

// gatedDriver counts the Deletes running at once; the first ones wait
// until want of them are running (or, if that never comes, 5 seconds), so
// that a fallback deleting fewer paths at a time shows up as a lower peak.
type gatedDriver struct {
	storage.Driver
	want int
	full chan struct{} // closed once want Deletes run at once, or one waited too long
	once sync.Once

	mu            sync.Mutex
	running, peak int
}

func (g *gatedDriver) Delete(ctx context.Context, p string) error {
	g.mu.Lock()
	g.running++
	g.peak = max(g.peak, g.running)
	if g.running == g.want {
		g.once.Do(func() { close(g.full) })
	}
	g.mu.Unlock()
	select {
	case <-g.full:
	case <-time.After(5 * time.Second): // a fallback that runs fewer at once: give up
		g.once.Do(func() { close(g.full) })
	}
	err := g.Driver.Delete(ctx, p)
	g.mu.Lock()
	g.running--
	g.mu.Unlock()
	return err
}

// TestDeleteFilesConcurrency checks that the fallback runs exactly
// concurrency Deletes at once, and deletes every path.
func TestDeleteFilesConcurrency(t *testing.T) {
	ctx := t.Context()
	const concurrency = 4
	g := &gatedDriver{Driver: inmemory.New(), want: concurrency, full: make(chan struct{})}
	var paths []string
	for i := range 20 {
		p := fmt.Sprintf("/c/%02d", i)
		if err := storage.WriteAll(ctx, g, p, []byte(p)); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	errs := storage.DeleteFiles(ctx, g, paths, concurrency)
	if err := errors.Join(errs...); err != nil || len(errs) != len(paths) {
		t.Fatalf("DeleteFiles = %d results, %v; want %d, all nil", len(errs), err, len(paths))
	}
	if g.peak != concurrency {
		t.Errorf("%d Deletes ran at once at most, want %d", g.peak, concurrency)
	}
	if _, err := g.Stat(ctx, "/c"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf(`Stat("/c") after DeleteFiles: %v, want ErrNotFound`, err)
	}
}

// batchDriver is a BatchDeleter that returns results it was given; its
// other methods panic (the nil Driver), so DeleteFiles must not fall back.
type batchDriver struct {
	storage.Driver
	results []error
	got     [][]string
}

func (b *batchDriver) DeleteFiles(_ context.Context, paths []string) []error {
	b.got = append(b.got, paths)
	return b.results
}

// TestDeleteFilesUsesBatchDeleter checks that DeleteFiles hands all the
// paths to a BatchDeleter in one call and returns its results, or an error
// for every path when the driver does not return one result per path.
func TestDeleteFilesUsesBatchDeleter(t *testing.T) {
	ctx := t.Context()
	paths := []string{"/a", "/b", "/c"}
	errB := errors.New("b failed")
	b := &batchDriver{results: []error{nil, errB, nil}}
	errs := storage.DeleteFiles(ctx, b, paths, 1)
	if !slices.Equal(errs, b.results) {
		t.Errorf("DeleteFiles = %v, want the driver's %v", errs, b.results)
	}
	if len(b.got) != 1 || !slices.Equal(b.got[0], paths) {
		t.Errorf("the driver's DeleteFiles got %q, want one call with %q", b.got, paths)
	}

	b = &batchDriver{results: []error{nil}}
	errs = storage.DeleteFiles(ctx, b, paths, 1)
	if len(errs) != len(paths) || slices.Contains(errs, nil) {
		t.Errorf("DeleteFiles over a driver returning 1 result for 3 paths = %v, want an error for each path", errs)
	}
}

package store_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/storage"
	"github.com/berth-registry/berth/storage/inmemory"
	"github.com/berth-registry/berth/storage/store"
)

// TestDoomLists: a blob a doom list names answers unknown to HEAD and
// mount until the list goes; a manifest PUT relying on it waits for the
// collector's decision and then sees what is there; a list older than
// store.DoomTTL dooms nothing.
func TestDoomLists(t *testing.T) {
	drivers(t, func(t *testing.T, d storage.Driver) {
		ctx := t.Context()
		s := store.New(d, store.Options{})
		config := pushBlob(t, s, "app", []byte(`{"architecture":"amd64","os":"linux"}`))
		layer := pushBlob(t, s, "app", randomBytes(t, 100))
		doomed := []store.Item{{Kind: store.ItemBlob, Digest: layer}}

		if err := s.Doom(ctx, "run1-000000", doomed); err != nil {
			t.Fatal(err)
		}
		if _, err := s.StatBlob(ctx, "app", layer); !errors.Is(err, store.ErrBlobUnknown) {
			t.Errorf("HEAD of a doomed blob: %v, want unknown", err)
		}
		if _, err := s.MountBlob(ctx, "other", "app", layer); !errors.Is(err, store.ErrBlobUnknown) {
			t.Errorf("mount of a doomed blob: %v, want unknown", err)
		}
		if _, err := s.StatBlob(ctx, "app", config); err != nil {
			t.Errorf("HEAD of a blob no list names: %v", err)
		}
		// Another round's list, removed first, leaves this one in force.
		if err := s.Doom(ctx, "run2-000000", doomed); err != nil {
			t.Fatal(err)
		}
		if err := s.Undoom(ctx, "run2-000000"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.StatBlob(ctx, "app", layer); !errors.Is(err, store.ErrBlobUnknown) {
			t.Errorf("HEAD after another list went: %v, want unknown", err)
		}

		// A PUT waits while the list stands; the collector spares the
		// blob (removes the list without deleting): 201.
		put := func() <-chan error {
			done := make(chan error, 1)
			go func() {
				_, err := s.PutManifest(ctx, "app", []string{"v1"}, "", "application/vnd.oci.image.manifest.v1+json", imageManifest(config, layer, 37, 100, ""))
				done <- err
			}()
			return done
		}
		done := put()
		select {
		case err := <-done:
			t.Fatalf("a manifest PUT relying on a doomed blob did not wait: %v", err)
		case <-time.After(300 * time.Millisecond):
		}
		if err := s.Undoom(ctx, "run1-000000"); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("PUT after the list went, blob kept: %v", err)
		}
		if _, err := s.StatBlob(ctx, "app", layer); err != nil {
			t.Errorf("HEAD after the list went: %v", err)
		}

		// The collector deletes the blob, then removes its list: the
		// waiting PUT answers MANIFEST_BLOB_UNKNOWN, never 201.
		if err := s.Doom(ctx, "run3-000000", doomed); err != nil {
			t.Fatal(err)
		}
		done = put()
		select {
		case err := <-done:
			t.Fatalf("a manifest PUT relying on a doomed blob did not wait: %v", err)
		case <-time.After(300 * time.Millisecond):
		}
		if err := errors.Join(s.DeleteItems(ctx, doomed)...); err != nil {
			t.Fatal(err)
		}
		if err := s.Undoom(ctx, "run3-000000"); err != nil {
			t.Fatal(err)
		}
		if err := <-done; !errors.Is(err, store.ErrManifestBlobUnknown) {
			t.Fatalf("PUT after its blob was collected: %v, want MANIFEST_BLOB_UNKNOWN", err)
		}
	})
}

func TestStaleDoomListIsVoid(t *testing.T) {
	// Every doom list reported as written DoomTTL and a second ago.
	stale := agedDriver{Driver: inmemory.New(), by: store.DoomTTL + time.Second,
		old: func(p string) bool { return strings.Contains(p, "/_berth/gc/doomed/") }}
	s := store.New(stale, store.Options{})
	ctx := t.Context()
	b := pushBlob(t, s, "app", randomBytes(t, 10))
	if err := s.Doom(ctx, "run1-000000", []store.Item{{Kind: store.ItemBlob, Digest: b}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StatBlob(ctx, "app", b); err != nil {
		t.Errorf("HEAD of a blob only a void list names: %v", err)
	}
	// CleanUpGC removes it.
	if _, err := s.CleanUpGC(ctx, time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if ps, err := s.Driver().List(ctx, "/docker/registry/v2/_berth/gc/doomed"); err == nil && len(ps) > 0 {
		t.Errorf("doom lists left after CleanUpGC: %v", ps)
	}
}

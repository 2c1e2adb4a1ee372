package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/storage/inmemory"
	"github.com/berth-registry/berth/storage/store"
)

// TestPurgeUploadsLoop runs the janitor with no delay: an upload older than
// age is removed and the count logged, and cancelling ctx stops the loop.
func TestPurgeUploadsLoop(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	st := store.New(inmemory.New(), store.Options{})
	u, err := st.StartUpload(ctx, "library/app")
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	done := make(chan struct{})
	go func() {
		defer close(done)
		// A negative age makes every upload old.
		purgeUploads(ctx, st, 0, time.Hour, -time.Minute, logger)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "purged abandoned uploads") {
		if time.Now().After(deadline) {
			t.Fatalf("no purge logged: %s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("purgeUploads did not stop when ctx was cancelled")
	}
	if !strings.Contains(logs.String(), "purged=1") || strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("log = %s, want one upload purged and no warning", logs.String())
	}
	if _, err := st.StatUpload(t.Context(), "library/app", u.ID); !errors.Is(err, store.ErrUploadUnknown) {
		t.Errorf("upload after purge: %v, want it gone", err)
	}
}

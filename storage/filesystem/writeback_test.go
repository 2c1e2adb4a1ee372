package filesystem

import (
	"os"
	"path/filepath"
	"testing"
)

// TestSyncerKeepsError: a background sync that fails is reported when the
// syncer stops, since a later fsync of the same file would not report the
// write error again.
func TestSyncerKeepsError(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	s := startSyncer(f)
	f.Close() // the sync fails: the file is closed
	if !s.request() {
		t.Fatal("the first request was dropped")
	}
	if err := s.stop(); err == nil {
		t.Error("stop returned nil after a failed sync")
	}
}

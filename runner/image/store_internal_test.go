package image

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMatchIDAmbiguous(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(s.Dir(), imagesDir, "sha256")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	a, b := "abc1"+strings.Repeat("0", 60), "abc2"+strings.Repeat("0", 60)
	for _, h := range []string{a, b} {
		if err := os.WriteFile(filepath.Join(dir, h+recordExt), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.matchID("abc"); !errors.Is(err, ErrAmbiguous) {
		t.Errorf("matchID(abc): %v, want ErrAmbiguous", err)
	}
	if id, err := s.matchID("sha256:abc2"); err != nil || id.Encoded() != b {
		t.Errorf("matchID(sha256:abc2) = %s, %v", id, err)
	}
	for _, q := range []string{"abd", "ABC1", "../x", "sha256:", "md5:abc"} {
		if _, err := s.matchID(q); !errors.Is(err, ErrNotFound) {
			t.Errorf("matchID(%q): %v, want ErrNotFound", q, err)
		}
	}
}

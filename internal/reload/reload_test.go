package reload_test

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/reload"
)

// file is a watched test file whose writes get distinct modification times:
// two writes within one tick of the file system's clock would otherwise look
// unchanged when their sizes are equal.
type file struct {
	t     *testing.T
	path  string
	mtime time.Time
}

func newFile(t *testing.T, content string) *file {
	f := &file{t: t, path: filepath.Join(t.TempDir(), "watched"), mtime: time.Now().Add(-time.Hour)}
	f.write(content)
	return f
}

func (f *file) write(content string) {
	f.t.Helper()
	if err := os.WriteFile(f.path, []byte(content), 0o600); err != nil {
		f.t.Fatal(err)
	}
	f.touch()
}

// replace writes content to a new file renamed over the watched one, as
// careful writers do, so that a reader never sees it half-written.
func (f *file) replace(content string) {
	f.t.Helper()
	tmp := f.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Rename(tmp, f.path); err != nil {
		f.t.Fatal(err)
	}
}

func (f *file) touch() {
	f.t.Helper()
	f.mtime = f.mtime.Add(time.Minute)
	if err := os.Chtimes(f.path, f.mtime, f.mtime); err != nil {
		f.t.Fatal(err)
	}
}

// loadWord reads path: its content, or an error if it says "bad" or is
// empty (as it is for a moment while os.WriteFile rewrites it).
func loadWord(path string) func() (string, error) {
	return func() (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(string(b), "bad") {
			return "", errors.New("the file says bad")
		}
		if len(b) == 0 {
			return "", errors.New("empty")
		}
		return string(b), nil
	}
}

type clock struct{ now time.Time }

func (c *clock) Now() time.Time             { return c.now }
func (c *clock) Advance(d time.Duration)    { c.now = c.now.Add(d) }
func logger(buf *bytes.Buffer) *slog.Logger { return slog.New(slog.NewTextHandler(buf, nil)) }

func TestReload(t *testing.T) {
	f := newFile(t, "one")
	var logs bytes.Buffer
	c := &clock{now: time.Unix(1_750_000_000, 0)}
	v, err := reload.New([]string{f.path}, loadWord(f.path), reload.Options[string]{
		What: "word file", Log: logger(&logs), Now: c.Now,
		Describe: func(s string) []any { return []any{"length", len(s)} },
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := v.Get(); got != "one" {
		t.Fatalf("Get = %q, want one", got)
	}

	f.write("two")
	c.Advance(reload.DefaultInterval - time.Nanosecond)
	if got := v.Get(); got != "one" {
		t.Errorf("looked at the file before the interval: Get = %q", got)
	}
	c.Advance(time.Nanosecond)
	if got := v.Get(); got != "two" {
		t.Fatalf("after the interval: Get = %q, want two", got)
	}
	if !strings.Contains(logs.String(), `level=INFO msg="reloaded word file" file=`+f.path+" length=3") {
		t.Errorf("no info line for the reload:\n%s", logs.String())
	}

	// A change that does not load keeps the old value and says why, once.
	logs.Reset()
	f.write("bad content")
	c.Advance(reload.DefaultInterval)
	if got := v.Get(); got != "two" {
		t.Errorf("after a bad change: Get = %q, want two kept", got)
	}
	c.Advance(reload.DefaultInterval)
	v.Get()
	if n := strings.Count(logs.String(), `level=ERROR msg="word file changed but does not load: keeping the current one"`); n != 1 ||
		!strings.Contains(logs.String(), `error="the file says bad"`) {
		t.Errorf("want one error line with the reason, got:\n%s", logs.String())
	}

	// Fixed: loaded.
	f.write("three")
	c.Advance(reload.DefaultInterval)
	if got := v.Get(); got != "three" {
		t.Errorf("after the fix: Get = %q, want three", got)
	}

	// Removed: kept, one warning; back: loaded.
	logs.Reset()
	if err := os.Remove(f.path); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		c.Advance(reload.DefaultInterval)
		if got := v.Get(); got != "three" {
			t.Errorf("file removed: Get = %q, want three kept", got)
		}
	}
	if n := strings.Count(logs.String(), `level=WARN msg="word file unreadable: keeping the current one"`); n != 1 {
		t.Errorf("%d warnings for a removed file, want 1:\n%s", n, logs.String())
	}
	f.write("four")
	c.Advance(reload.DefaultInterval)
	if got := v.Get(); got != "four" {
		t.Errorf("file back: Get = %q, want four", got)
	}

	// A clock that goes back looks again at once.
	f.write("five")
	c.Advance(-time.Hour)
	if got := v.Get(); got != "five" {
		t.Errorf("clock moved back: Get = %q, want five", got)
	}
}

// TestReloadReplacedFile: a file renamed over the watched one is seen even
// with the same size and modification time (another inode).
func TestReloadReplacedFile(t *testing.T) {
	f := newFile(t, "one")
	c := &clock{now: time.Unix(1_750_000_000, 0)}
	v, err := reload.New([]string{f.path}, loadWord(f.path), reload.Options[string]{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	tmp := f.path + ".tmp"
	if err := os.WriteFile(tmp, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(tmp, f.mtime, f.mtime); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, f.path); err != nil {
		t.Fatal(err)
	}
	c.Advance(reload.DefaultInterval)
	if got := v.Get(); got != "two" {
		t.Errorf("Get = %q after a same-size, same-mtime rename over the file; want two", got)
	}
}

// TestReloadSeveralFiles: a change to any of the files reloads.
func TestReloadSeveralFiles(t *testing.T) {
	a, b := newFile(t, "a1"), newFile(t, "b1")
	c := &clock{now: time.Unix(1_750_000_000, 0)}
	load := func() (string, error) {
		x, err := loadWord(a.path)()
		if err != nil {
			return "", err
		}
		y, err := loadWord(b.path)()
		return x + "+" + y, err
	}
	v, err := reload.New([]string{a.path, b.path}, load, reload.Options[string]{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	b.write("b2")
	c.Advance(reload.DefaultInterval)
	if got := v.Get(); got != "a1+b2" {
		t.Errorf("Get = %q, want a1+b2", got)
	}
}

func TestReloadFirstLoadFails(t *testing.T) {
	f := newFile(t, "bad")
	if _, err := reload.New([]string{f.path}, loadWord(f.path), reload.Options[string]{}); err == nil {
		t.Error("New accepted a file that does not load")
	}
	missing := filepath.Join(t.TempDir(), "missing")
	if _, err := reload.New([]string{missing}, func() (string, error) { return "x", nil }, reload.Options[string]{}); err == nil {
		t.Error("New accepted a file that does not exist")
	}
}

// TestReloadConcurrent: Get from many goroutines while the file changes
// (for the race detector); every value seen is one that was written.
func TestReloadConcurrent(t *testing.T) {
	f := newFile(t, "v0")
	var mu sync.Mutex
	c := &clock{now: time.Unix(1_750_000_000, 0)}
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return c.Now() }
	v, err := reload.New([]string{f.path}, loadWord(f.path), reload.Options[string]{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				if got := v.Get(); got != "v0" && got != "v1" && got != "v2" {
					t.Errorf("Get = %q", got)
				}
			}
		})
	}
	for _, s := range []string{"v1", "v2"} {
		f.replace(s)
		mu.Lock()
		c.Advance(reload.DefaultInterval)
		mu.Unlock()
	}
	wg.Wait()
	mu.Lock()
	c.Advance(reload.DefaultInterval)
	mu.Unlock()
	if got := v.Get(); got != "v2" {
		t.Errorf("finally Get = %q, want v2", got)
	}
}

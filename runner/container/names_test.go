package container_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/berth-registry/berth/runner/container"
)

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"web", true}, {"a1", true}, {"Web_1.prod-2", true}, {"0x", true}, {"a.", true}, {"a-", true},
		{"", false}, {"a", false}, {"_web", false}, {".web", false}, {"-web", false}, {"we b", false},
		{"web/1", false}, {"wéb", false}, {"web:1", false}, {"..", false}, {strings.Repeat("a", 254), false},
	} {
		if got := container.ValidName(tc.name); got != tc.ok {
			t.Errorf("ValidName(%q) = %v, want %v", tc.name, got, tc.ok)
		}
	}
}

func TestGenerateName(t *testing.T) {
	plain := regexp.MustCompile(`^[a-z]+_[a-z]+$`)
	retried := regexp.MustCompile(`^[a-z]+_[a-z]+[0-9]$`)
	seen := map[string]bool{}
	for i := 0; i < 200; i++ {
		n := container.GenerateName(0)
		if !plain.MatchString(n) || !container.ValidName(n) {
			t.Fatalf("GenerateName(0) = %q", n)
		}
		seen[n] = true
		if n := container.GenerateName(1); !retried.MatchString(n) || !container.ValidName(n) {
			t.Fatalf("GenerateName(1) = %q", n)
		}
	}
	if len(seen) < 50 {
		t.Errorf("200 generated names gave only %d different ones", len(seen))
	}
}

func TestNames(t *testing.T) {
	state := t.TempDir()
	s, err := container.OpenStore(state)
	if err != nil {
		t.Fatal(err)
	}
	web, err := s.New(container.State{ID: "0123456789ab", Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.New(container.State{ID: "0123fedcba98"})
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := other.State(); !container.ValidName(st.Name) || st.Name != other.Name() {
		t.Errorf("generated name %q (Name() %q)", st.Name, other.Name())
	}
	if st, _ := web.State(); st.Name != "web" {
		t.Errorf("State().Name = %q", st.Name)
	}

	_, err = s.New(container.State{ID: "aaaaaaaaaaaa", Name: "web"})
	var ne *container.NameError
	if !errors.Is(err, container.ErrExists) || !errors.As(err, &ne) || ne.Holder != web.ID ||
		!strings.Contains(err.Error(), `"/web" is already in use by container "0123456789ab"`) {
		t.Errorf("a second web: %v", err)
	}
	if _, err := os.Stat(filepath.Join(state, "containers", "aaaaaaaaaaaa")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused container was made: %v", err)
	}
	if _, err := s.New(container.State{ID: "bbbbbbbbbbbb", Name: "-bad"}); !errors.Is(err, container.ErrInvalidName) {
		t.Errorf("an invalid name: %v", err)
	}

	// Get: the full ID, the name (with or without docker's "/"), a
	// unique prefix; never an ambiguous prefix.
	for ref, want := range map[string]string{"0123456789ab": web.ID, "web": web.ID, "/web": web.ID, "01234": web.ID, "0123f": other.ID, other.Name(): other.ID} {
		c, err := s.Get(ref)
		if err != nil || c.ID != want {
			t.Errorf("Get(%q) = %v, %v; want %s", ref, c, err, want)
		}
	}
	for _, ref := range []string{"0123", "nope", "we", ""} {
		if c, err := s.Get(ref); !errors.Is(err, container.ErrNotFound) {
			t.Errorf("Get(%q) = %v, %v; want ErrNotFound", ref, c, err)
		}
	}

	// Rename frees the old name and refuses a taken one.
	if _, err := s.Rename("web", other.Name()); !errors.Is(err, container.ErrExists) {
		t.Errorf("rename onto a taken name: %v", err)
	}
	if _, err := s.Rename("web", "x"); !errors.Is(err, container.ErrInvalidName) {
		t.Errorf("rename to an invalid name: %v", err)
	}
	if _, err := s.Rename("nope", "frontend"); !errors.Is(err, container.ErrNotFound) {
		t.Errorf("rename of a missing container: %v", err)
	}
	if c, err := s.Rename("web", "frontend"); err != nil || c.ID != web.ID || web.Name() != "frontend" {
		t.Fatalf("rename: %v, %v (name %q)", c, err, web.Name())
	}
	if _, err := s.Get("web"); !errors.Is(err, container.ErrNotFound) {
		t.Errorf("the old name still finds: %v", err)
	}
	if c, err := s.Get("frontend"); err != nil || c.ID != web.ID {
		t.Errorf("Get(frontend) = %v, %v", c, err)
	}
	again, err := s.New(container.State{ID: "cccccccccccc", Name: "web"})
	if err != nil {
		t.Fatalf("the freed name: %v", err)
	}

	// Removing a container frees its name.
	if err := again.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("web"); !errors.Is(err, container.ErrNotFound) {
		t.Errorf("a removed container's name still finds: %v", err)
	}
	if _, err := os.Stat(filepath.Join(state, "names", "web")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the index keeps a removed container's name: %v", err)
	}
	// A stale index entry (its container died half made) is taken over.
	if err := os.WriteFile(filepath.Join(state, "names", "ghost"), []byte("dddddddddddd\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("ghost"); !errors.Is(err, container.ErrNotFound) {
		t.Errorf("a stale name finds: %v", err)
	}
	if _, err := s.New(container.State{ID: "eeeeeeeeeeee", Name: "ghost"}); err != nil {
		t.Errorf("a stale name was not taken over: %v", err)
	}
}

// TestNameConcurrency creates containers with one name from many
// goroutines, each through its own Store (its own lock file descriptor, as
// separate berth processes have): exactly one gets it.
func TestNameConcurrency(t *testing.T) {
	state := t.TempDir()
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			s, err := container.OpenStore(state)
			if err == nil {
				_, err = s.New(container.State{ID: fmt.Sprintf("%012x", 0xabc000+i), Name: "db"})
			}
			errs[i] = err
		})
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, container.ErrExists):
			t.Errorf("unexpected error: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d creates of the name db succeeded, want 1", won)
	}
	s, _ := container.OpenStore(state)
	list, err := s.List()
	if err != nil || len(list) != 1 {
		t.Errorf("containers after the race: %d, %v", len(list), err)
	}
	// Generated names never collide either.
	names := map[string]bool{}
	var mu sync.Mutex
	for i := range n {
		wg.Go(func() {
			s, err := container.OpenStore(state)
			if err == nil {
				var c *container.Container
				if c, err = s.New(container.State{ID: fmt.Sprintf("%012x", 0xdef000+i)}); err == nil {
					mu.Lock()
					names[c.Name()] = true
					mu.Unlock()
				}
			}
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if len(names) != n {
		t.Errorf("%d generated names for %d containers", len(names), n)
	}
}

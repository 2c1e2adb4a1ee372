package container

import (
	"strings"
	"sync"
	"testing"
)

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"PATH=/bin", "A=1"}, []string{"A=2", "B=3"})
	if strings.Join(got, " ") != "PATH=/bin A=2 B=3" {
		t.Errorf("mergeEnv: %q", got)
	}
}

func TestParseProcStat(t *testing.T) {
	// A command name with spaces and parentheses.
	line := "42 (a (b) c) S 7 42 42 34816 42 4194560 1 0 0 0 250 50 0 0 20 0 1 0 1234 0 0"
	s, err := parseProcStat([]byte(line))
	if err != nil || s.ppid != 7 || s.cpuTicks != 300 || s.startTicks != 1234 || ttyName(s.ttyNr) != "pts/0" {
		t.Errorf("parseProcStat: %+v, %v (tty %s)", s, err, ttyName(s.ttyNr))
	}
	if cpuTime(3*86400+3661) != "3-01:01:01" || cpuTime(59) != "00:00:59" {
		t.Errorf("cpuTime: %s %s", cpuTime(3*86400+3661), cpuTime(59))
	}
}

func TestCPUPercent(t *testing.T) {
	prev := Stats{CPUNanos: 1e9, SystemNanos: 100e9, OnlineCPUs: 4}
	cur := Stats{CPUNanos: 2e9, SystemNanos: 104e9, OnlineCPUs: 4}
	if p := CPUPercent(prev, cur); p != 100 {
		t.Errorf("one CPU busy of four: %v%%, want 100", p)
	}
	if p := CPUPercent(cur, cur); p != 0 {
		t.Errorf("no time passed: %v", p)
	}
}

// TestStateUpdatesSerialized: read-modify-writes of the state
// (updateState, as pause and unpause do) racing each other and plain
// SaveState writes lose no update and never leave state.json unreadable.
func TestStateUpdatesSerialized(t *testing.T) {
	s, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.New(State{Status: StatusCreated})
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if err := c.updateState(func(st *State) error { st.RestartCount++; return nil }); err != nil {
				t.Error(err)
			}
		})
		wg.Go(func() {
			// A writer of the whole state, holding the lock as every
			// write does: it must not be torn into the others.
			unlock, err := c.lockState()
			if err != nil {
				t.Error(err)
				return
			}
			defer unlock()
			st, err := c.State()
			if err != nil {
				t.Error(err)
				return
			}
			if err := c.saveState(st); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	st, err := c.State()
	if err != nil {
		t.Fatal(err)
	}
	if st.RestartCount != n {
		t.Errorf("%d of %d updates kept", st.RestartCount, n)
	}
}

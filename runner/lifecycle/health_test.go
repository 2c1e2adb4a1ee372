package lifecycle_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/runner/container"
	"github.com/berth-registry/berth/runner/lifecycle"
)

func TestResolveHealthcheck(t *testing.T) {
	image := []byte(`{"config":{"Healthcheck":{"Test":["CMD","wget","-q","localhost"],"Interval":5000000000,"Retries":4}}}`)
	none := []byte(`{"config":{"Healthcheck":{"Test":["NONE"]}}}`)
	plain := []byte(`{"config":{}}`)
	for _, tc := range []struct {
		name string
		raw  []byte
		o    lifecycle.HealthOptions
		want *container.HealthConfig
	}{
		{"image", image, lifecycle.HealthOptions{}, &container.HealthConfig{Test: []string{"CMD", "wget", "-q", "localhost"}, Interval: 5 * time.Second, Retries: 4}},
		{"flags over image", image, lifecycle.HealthOptions{Cmd: "true", Timeout: time.Second, Retries: 2},
			&container.HealthConfig{Test: []string{"CMD-SHELL", "true"}, Interval: 5 * time.Second, Timeout: time.Second, Retries: 2}},
		{"interval only", image, lifecycle.HealthOptions{Interval: time.Second},
			&container.HealthConfig{Test: []string{"CMD", "wget", "-q", "localhost"}, Interval: time.Second, Retries: 4}},
		{"disabled", image, lifecycle.HealthOptions{Disable: true}, nil},
		{"NONE", none, lifecycle.HealthOptions{}, nil},
		{"NONE with a command", none, lifecycle.HealthOptions{Cmd: "true"}, &container.HealthConfig{Test: []string{"CMD-SHELL", "true"}}},
		{"no healthcheck", plain, lifecycle.HealthOptions{}, nil},
		{"flags only", nil, lifecycle.HealthOptions{Cmd: "pgrep x", StartPeriod: time.Minute},
			&container.HealthConfig{Test: []string{"CMD-SHELL", "pgrep x"}, StartPeriod: time.Minute}},
		{"interval without a test", plain, lifecycle.HealthOptions{Interval: time.Second}, nil},
	} {
		got, err := lifecycle.ResolveHealthcheck(tc.raw, tc.o)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if (got == nil) != (tc.want == nil) || got != nil && (!slices.Equal(got.Test, tc.want.Test) ||
			got.Interval != tc.want.Interval || got.Timeout != tc.want.Timeout || got.StartPeriod != tc.want.StartPeriod || got.Retries != tc.want.Retries) {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
	for _, tc := range []struct {
		raw []byte
		o   lifecycle.HealthOptions
	}{
		{image, lifecycle.HealthOptions{Disable: true, Cmd: "true"}},
		{image, lifecycle.HealthOptions{Disable: true, Retries: 1}},
		{image, lifecycle.HealthOptions{Interval: -time.Second}},
		{image, lifecycle.HealthOptions{Retries: -1}},
		{image, lifecycle.HealthOptions{Interval: time.Microsecond}},
		{[]byte(`{"config":{"Healthcheck":{"Test":["SHELL","x"]}}}`), lifecycle.HealthOptions{}},
		{[]byte(`{"config":{"Healthcheck":{"Test":["CMD"]}}}`), lifecycle.HealthOptions{}},
	} {
		if _, err := lifecycle.ResolveHealthcheck(tc.raw, tc.o); !errors.Is(err, lifecycle.ErrInvalidOption) {
			t.Errorf("%s %+v: %v, want ErrInvalidOption", tc.raw, tc.o, err)
		}
	}
}

func TestRecordProbe(t *testing.T) {
	cfg := container.HealthConfig{Test: []string{"CMD", "x"}, Retries: 2, StartPeriod: 10 * time.Second}
	ok := container.HealthProbe{ExitCode: 0, Output: "fine"}
	bad := container.HealthProbe{ExitCode: 1, Output: "down"}
	type step struct {
		p          container.HealthProbe
		sinceStart time.Duration
		status     string
		streak     int
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"fails in the start period do not count", []step{
			{bad, time.Second, "starting", 0}, {bad, 2 * time.Second, "starting", 0},
			{bad, 11 * time.Second, "starting", 1}, {bad, 12 * time.Second, "unhealthy", 2},
			{ok, 13 * time.Second, "healthy", 0},
		}},
		{"once healthy, failures count at once", []step{
			{ok, time.Second, "healthy", 0}, {bad, 2 * time.Second, "healthy", 1}, {bad, 3 * time.Second, "unhealthy", 2},
			{bad, 4 * time.Second, "unhealthy", 3}, {ok, 5 * time.Second, "healthy", 0},
		}},
	} {
		h := &container.Health{}
		for i, s := range tc.steps {
			lifecycle.RecordProbe(h, cfg, s.p, s.sinceStart)
			if h.Status != s.status || h.FailingStreak != s.streak {
				t.Errorf("%s: step %d: %s streak %d, want %s streak %d", tc.name, i, h.Status, h.FailingStreak, s.status, s.streak)
			}
		}
		if len(h.Log) != 5 || h.Log[4].Output != tc.steps[4].p.Output {
			t.Errorf("%s: log %+v", tc.name, h.Log)
		}
	}
	// The log keeps the last five results, each output cut at 4 KiB;
	// retries default to docker's 3.
	h := &container.Health{}
	for i := range 7 {
		lifecycle.RecordProbe(h, container.HealthConfig{}, container.HealthProbe{ExitCode: i + 1, Output: strings.Repeat("x", 5000)}, time.Hour)
		if want := map[bool]string{true: "unhealthy", false: "starting"}[i >= 2]; h.Status != want {
			t.Errorf("after %d failures with the default retries: %s, want %s", i+1, h.Status, want)
		}
	}
	if len(h.Log) != 5 || h.Log[0].ExitCode != 3 || h.Log[4].ExitCode != 7 || len(h.Log[0].Output) != 4096 {
		t.Errorf("log: %d entries, first exit %d, output %d bytes", len(h.Log), h.Log[0].ExitCode, len(h.Log[0].Output))
	}
}

// scriptedExec answers health checks from a list of results.
type scriptedExec struct {
	mu      sync.Mutex
	results []error // nil: exit 0; errExit1: exit 1; else the error
	args    [][]string
	pids    []int
}

var errExit1 = errors.New("exit 1")

func (s *scriptedExec) Exec(ctx context.Context, pid int, args []string, timeout time.Duration) (int, []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.args, s.pids = append(s.args, args), append(s.pids, pid)
	r := s.results[0]
	s.results = s.results[1:]
	switch r {
	case nil:
		return 0, []byte("ok\n"), nil
	case errExit1:
		return 1, []byte("down\n"), nil
	}
	return -1, nil, r
}

func TestHealthMonitor(t *testing.T) {
	exec := &scriptedExec{results: []error{nil, errExit1, lifecycle.ErrProbeTimeout, errExit1, nil}}
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	now := start
	var intervals []time.Duration
	var saved []container.Health
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := lifecycle.HealthMonitor{
		Config: container.HealthConfig{Test: []string{"CMD-SHELL", "wget -q localhost"}, Interval: 7 * time.Second, Timeout: 2 * time.Second, Retries: 2},
		Exec:   exec, Pid: 4242, Started: start,
		Now: func() time.Time { return now },
		After: func(d time.Duration) <-chan time.Time {
			intervals = append(intervals, d)
			if len(intervals) > 5 {
				cancel() // five checks made
				return nil
			}
			now = now.Add(d)
			c := make(chan time.Time, 1)
			c <- now
			return c
		},
		Save: func(h *container.Health) { saved = append(saved, *h) },
	}
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	<-done
	var statuses []string
	for _, h := range saved {
		statuses = append(statuses, h.Status)
	}
	want := []string{"starting", "healthy", "healthy", "unhealthy", "unhealthy", "healthy"}
	if !slices.Equal(statuses, want) {
		t.Errorf("statuses %q, want %q", statuses, want)
	}
	last := saved[len(saved)-1]
	if len(last.Log) != 5 || last.Log[2].ExitCode != -1 || last.Log[2].Output != "Health check exceeded timeout (2s)" ||
		last.Log[1].Output != "down\n" || !last.Log[0].Start.Equal(start.Add(7*time.Second)) {
		t.Errorf("log %+v", last.Log)
	}
	if saved[3].FailingStreak != 2 || last.FailingStreak != 0 {
		t.Errorf("streaks: %d then %d", saved[3].FailingStreak, last.FailingStreak)
	}
	if !slices.Equal(exec.args[0], []string{"/bin/sh", "-c", "wget -q localhost"}) || exec.pids[0] != 4242 {
		t.Errorf("ran %q in %d", exec.args[0], exec.pids[0])
	}
	for _, d := range intervals {
		if d != 7*time.Second {
			t.Errorf("waited %v between checks, want the interval", d)
		}
	}
}

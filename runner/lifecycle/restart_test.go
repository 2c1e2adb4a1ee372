package lifecycle_test

import (
	"errors"
	"testing"
	"time"

	"github.com/berth-registry/berth/runner/container"
	"github.com/berth-registry/berth/runner/lifecycle"
)

func TestParseRestartPolicy(t *testing.T) {
	for in, want := range map[string]container.RestartPolicy{
		"": {Name: "no"}, "no": {Name: "no"}, "always": {Name: "always"}, "unless-stopped": {Name: "unless-stopped"},
		"on-failure": {Name: "on-failure"}, "on-failure:3": {Name: "on-failure", MaximumRetryCount: 3}, "on-failure:0": {Name: "on-failure"},
	} {
		if got, err := lifecycle.ParseRestartPolicy(in); err != nil || got != want {
			t.Errorf("ParseRestartPolicy(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"sometimes", "always:3", "no:1", "on-failure:x", "on-failure:-1", "On-Failure", "unless-stopped:2"} {
		if _, err := lifecycle.ParseRestartPolicy(bad); !errors.Is(err, lifecycle.ErrInvalidOption) {
			t.Errorf("ParseRestartPolicy(%q): %v, want ErrInvalidOption", bad, err)
		}
	}
}

func TestRestarter(t *testing.T) {
	type exit struct {
		code    int
		ran     time.Duration
		stopped bool
		restart bool
		delay   time.Duration
	}
	const ms = time.Millisecond
	for _, tc := range []struct {
		policy string
		exits  []exit
	}{
		{"no", []exit{{code: 1}, {code: 0}}},
		{"on-failure:3", []exit{
			{code: 3, restart: true, delay: 100 * ms}, {code: 3, restart: true, delay: 200 * ms},
			{code: 3, restart: true, delay: 400 * ms}, {code: 3}, {code: 3},
		}},
		{"on-failure", []exit{{code: 1, restart: true, delay: 100 * ms}, {code: 0}}},
		{"on-failure", []exit{{code: 1, stopped: true}}},
		{"always", []exit{
			{code: 0, restart: true, delay: 100 * ms}, {code: 1, restart: true, delay: 200 * ms},
			{code: 0, ran: 11 * time.Second, restart: true, delay: 100 * ms}, {code: 0, restart: true, delay: 200 * ms},
			{code: 0, stopped: true},
		}},
		{"unless-stopped", []exit{{code: 137, restart: true, delay: 100 * ms}, {code: 137, stopped: true}}},
	} {
		p, err := lifecycle.ParseRestartPolicy(tc.policy)
		if err != nil {
			t.Fatal(err)
		}
		r := lifecycle.Restarter{Policy: p}
		restarts := 0
		for i, e := range tc.exits {
			restart, delay := r.AfterExit(e.code, e.ran, e.stopped)
			if restart != e.restart || delay != e.delay {
				t.Errorf("%s, exit %d (%+v): restart %v after %v", tc.policy, i, e, restart, delay)
			}
			if restart {
				restarts++
			}
		}
		if r.Count != restarts {
			t.Errorf("%s: Count %d, want %d", tc.policy, r.Count, restarts)
		}
	}

	// The delay doubles up to a minute and stays there.
	r := lifecycle.Restarter{Policy: container.RestartPolicy{Name: "always"}}
	var last time.Duration
	for range 20 {
		_, last = r.AfterExit(1, time.Second, false)
	}
	if last != time.Minute {
		t.Errorf("the delay after 20 quick exits is %v, want 1m", last)
	}
	// A count carried over (a restarted supervisor) still limits on-failure.
	r = lifecycle.Restarter{Policy: container.RestartPolicy{Name: "on-failure", MaximumRetryCount: 2}, Count: 2}
	if restart, _ := r.AfterExit(1, 0, false); restart {
		t.Error("on-failure:2 restarted a container that had restarted twice")
	}
}

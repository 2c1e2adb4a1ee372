package lifecycle

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/berth-registry/berth/runner/container"
)

// ErrInvalidOption: a --restart or --health-* value berth does not take,
// or options that conflict.
var ErrInvalidOption = errors.New("invalid container option")

// Restart policy names (docker's).
const (
	RestartNo            = "no"
	RestartOnFailure     = "on-failure"
	RestartAlways        = "always"
	RestartUnlessStopped = "unless-stopped"
)

// ParseRestartPolicy parses docker's --restart: no, on-failure[:N],
// always or unless-stopped ("" is no). Only on-failure takes a count.
func ParseRestartPolicy(s string) (container.RestartPolicy, error) {
	name, count, hasCount := strings.Cut(s, ":")
	switch name {
	case "", RestartNo:
		if hasCount {
			break
		}
		return container.RestartPolicy{Name: RestartNo}, nil
	case RestartAlways, RestartUnlessStopped:
		if hasCount {
			return container.RestartPolicy{}, fmt.Errorf("%w: --restart %q: only on-failure takes a maximum retry count", ErrInvalidOption, s)
		}
		return container.RestartPolicy{Name: name}, nil
	case RestartOnFailure:
		p := container.RestartPolicy{Name: name}
		if hasCount {
			n, err := strconv.Atoi(count)
			if err != nil || n < 0 {
				return container.RestartPolicy{}, fmt.Errorf("%w: --restart %q: the maximum retry count is a number, 0 or more", ErrInvalidOption, s)
			}
			p.MaximumRetryCount = n
		}
		return p, nil
	}
	return container.RestartPolicy{}, fmt.Errorf("%w: --restart %q: want no, on-failure[:N], always or unless-stopped", ErrInvalidOption, s)
}

// Docker's restart backoff: the first restart waits restartDelay, each
// next one twice the one before, at most maxRestartDelay; a run of
// resetAfter or longer starts the count over.
const (
	restartDelay    = 100 * time.Millisecond
	maxRestartDelay = time.Minute
	resetAfter      = 10 * time.Second
)

// Restarter decides, after each exit of a container, whether its restart
// policy starts it again and after how long (docker's restart manager).
// It is pure: the caller gives it the times.
type Restarter struct {
	Policy container.RestartPolicy
	// Count is how many restarts happened (State.RestartCount).
	Count int
	delay time.Duration
}

// AfterExit returns whether the container, which exited with code after
// running for ran, starts again and the delay before; stopped says the
// user stopped it (berth stop), which no policy overrides. A restart
// counts in Count.
func (r *Restarter) AfterExit(code int, ran time.Duration, stopped bool) (restart bool, delay time.Duration) {
	switch r.Policy.Name {
	case RestartAlways, RestartUnlessStopped:
		restart = !stopped
	case RestartOnFailure:
		restart = !stopped && code != 0 && (r.Policy.MaximumRetryCount == 0 || r.Count < r.Policy.MaximumRetryCount)
	}
	if !restart {
		return false, 0
	}
	if ran >= resetAfter {
		r.delay = 0
	}
	switch {
	case r.delay == 0:
		r.delay = restartDelay
	case r.delay < maxRestartDelay:
		r.delay *= 2
	}
	r.delay = min(r.delay, maxRestartDelay)
	r.Count++
	return true, r.delay
}

// RestartAfterRun applies c's restart policy after a run in the
// foreground (berth run without -d, start -a) ended: it returns true, with
// the restart counted, when the policy starts c again, which the caller
// then does under a supervisor (Detach), as docker's daemon restarts a
// container whose attached client has exited with its first exit code.
func RestartAfterRun(c *container.Container) (bool, error) {
	st, err := c.State()
	if err != nil || st.Status != container.StatusExited {
		return false, nil // removed (--rm), or started again meanwhile
	}
	r := Restarter{Policy: st.RestartPolicy, Count: st.RestartCount}
	if restart, _ := r.AfterExit(st.ExitCode, st.Finished.Sub(st.Started), c.StoppedByUser()); !restart {
		return false, nil
	}
	st.RestartCount = r.Count
	return true, c.SaveState(st)
}

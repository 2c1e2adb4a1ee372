package lifecycle

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/berth-registry/berth/runner/container"
	"github.com/berth-registry/berth/runner/image"
)

// Detach starts c under a supervisor process that keeps it, its log and
// its exit status: /proc/self/exe with args (the caller's hidden command,
// which calls Supervise with file descriptor 3 as notify). It returns once
// the container's process runs, or with its start error.
func Detach(c *container.Container, args []string) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	log, err := os.OpenFile(c.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		w.Close()
		return err
	}
	defer log.Close()
	cmd := exec.Command("/proc/self/exe", args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return fmt.Errorf("starting the supervisor: %w", err)
	}
	msg, _ := io.ReadAll(r)
	go cmd.Wait() // reap it if this process lives on
	switch s := strings.TrimSpace(string(msg)); {
	case s == "ok":
		return nil
	case s == "":
		return fmt.Errorf("container %s: the supervisor exited before starting it (see %s)", c.ID, c.LogPath())
	default:
		return fmt.Errorf("container %s: %s", c.ID, strings.TrimPrefix(s, "error: "))
	}
}

// Supervise is the supervisor Detach starts: it holds c while it runs,
// writes its output to its log and records its exit. notify (nil for
// none) gets "ok" once the process runs, or "error: ..." when it did not
// start, and is closed.
//
// It keeps the container's restart policy: after an exit that the
// policy restarts (see Restarter), it records the container as
// restarting, waits the backoff (still holding it, so that ps shows it
// restarting and rm refuses it) and runs it again, counting RestartCount;
// a container the user stopped (MarkStopped, which Stop does) is not
// started again. While the container runs, its health check (if any) runs
// every interval through ContainerExec (as berth exec runs a command) and its Health is kept in the
// container's directory.
func Supervise(ctx context.Context, images *image.Store, c *container.Container, notify *os.File) error {
	var once sync.Once
	started := func(err error) {
		once.Do(func() {
			if notify == nil {
				return
			}
			if err != nil {
				fmt.Fprintf(notify, "error: %s\n", strings.ReplaceAll(err.Error(), "\n", "; "))
			} else {
				fmt.Fprintln(notify, "ok")
			}
			notify.Close()
		})
	}
	log, err := os.OpenFile(c.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		started(err)
		return err
	}
	defer log.Close()
	release, err := c.Hold()
	if err != nil {
		started(err)
		return err
	}
	defer release()
	st, err := c.State()
	if err != nil {
		started(err)
		return err
	}
	c.MarkStopped(false) // started again: the policy applies again
	r := Restarter{Policy: st.RestartPolicy, Count: st.RestartCount}
	for {
		runCtx, stopHealth := context.WithCancel(ctx)
		var checks sync.WaitGroup
		onStart := func(err error) {
			started(err)
			if err != nil || st.Healthcheck == nil {
				return
			}
			if cur, err := c.State(); err == nil && cur.Pid > 0 {
				m := HealthMonitor{Config: *st.Healthcheck, Exec: ContainerExec{C: c}, Pid: cur.Pid, Started: cur.Started,
					Save: func(h *container.Health) { c.SaveHealth(h) }}
				checks.Go(func() { m.Run(runCtx) })
			}
		}
		code, err := runHeld(ctx, images, c, container.Stdio{Out: log, Err: log}, onStart, nil)
		stopHealth()
		checks.Wait()
		if err != nil {
			return err
		}
		if st, err = c.State(); err != nil {
			return nil // removed (--rm)
		}
		restart, delay := r.AfterExit(code, st.Finished.Sub(st.Started), c.StoppedByUser())
		if !restart {
			return nil
		}
		st.Status, st.RestartCount = container.StatusRestarting, r.Count
		if err := c.SaveState(st); err != nil {
			return err
		}
		if !waitRestart(ctx, c, delay) {
			st.Status = container.StatusExited
			return c.SaveState(st)
		}
	}
}

// waitRestart waits delay before a restart; it returns false, at once,
// when ctx ends or the user stops the container meanwhile.
func waitRestart(ctx context.Context, c *container.Container, delay time.Duration) bool {
	deadline := time.NewTimer(delay)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return !c.StoppedByUser()
		case <-tick.C:
			if c.StoppedByUser() {
				return false
			}
		}
	}
}

// Started reports a start failure to notify the way Supervise does, for
// a supervisor that failed before it could call Supervise.
func Started(notify *os.File, err error) {
	if notify == nil {
		return
	}
	fmt.Fprintf(notify, "error: %s\n", strings.ReplaceAll(err.Error(), "\n", "; "))
	notify.Close()
}

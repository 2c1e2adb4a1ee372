package container

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// running returns c's state when it runs, else an error wrapping
// ErrNotRunning.
func (c *Container) running() (State, error) {
	st, err := c.State()
	if err != nil {
		return st, err
	}
	if st.Status != StatusRunning || st.Pid == 0 {
		return st, fmt.Errorf("%w: %s", ErrNotRunning, c.ID)
	}
	return st, nil
}

// Kill sends sig to the container's PID 1, as `docker kill`. A paused
// container is thawed after a SIGKILL, so that it dies (a frozen process
// does not act on a signal until it is thawed). A container that does not
// run fails with ErrNotRunning.
func (c *Container) Kill(sig syscall.Signal) error {
	st, err := c.running()
	if err != nil {
		return err
	}
	if err := unix.Kill(st.Pid, sig); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("%w: %s", ErrNotRunning, c.ID)
		}
		return fmt.Errorf("container %s: %w", c.ID, err)
	}
	if sig == syscall.SIGKILL && st.Paused {
		Thaw(st.Pid)
	}
	return nil
}

// Wait blocks until the container does not run and returns the exit code
// of its last run, as `docker wait` (a container that does not run
// returns at once).
func (c *Container) Wait() (int, error) {
	c.WaitReleased(-1)
	st, err := c.State()
	if err != nil {
		return 0, err
	}
	return st.ExitCode, nil
}

// Pause freezes every process of the running container (Freeze) until
// Unpause, and records it in its state (Paused). A paused container fails
// with ErrPaused.
func (c *Container) Pause() error {
	return c.updateState(func(st *State) error {
		if st.Status != StatusRunning || st.Pid == 0 {
			return fmt.Errorf("%w: %s", ErrNotRunning, c.ID)
		}
		if st.Paused {
			return fmt.Errorf("%w: %s", ErrPaused, c.ID)
		}
		if _, err := Freeze(st.Pid); err != nil {
			return fmt.Errorf("container %s: %w", c.ID, err)
		}
		st.Paused = true
		return nil
	})
}

// Unpause thaws a container Pause froze. A container that is not paused
// fails with ErrNotPaused.
func (c *Container) Unpause() error {
	return c.updateState(func(st *State) error {
		if st.Status != StatusRunning || st.Pid == 0 {
			return fmt.Errorf("%w: %s", ErrNotRunning, c.ID)
		}
		if !st.Paused {
			return fmt.Errorf("%w: %s", ErrNotPaused, c.ID)
		}
		if err := Thaw(st.Pid); err != nil {
			return fmt.Errorf("container %s: %w", c.ID, err)
		}
		st.Paused = false
		return nil
	})
}

// Thaw lets the processes of the container whose PID 1 is pid run again
// after a Freeze.
func Thaw(pid int) error {
	f, err := freezerOf(pid)
	if err != nil {
		return err
	}
	return writeFile(f.dir, f.file, f.thaw)
}

// pausedNow reports whether a container recorded as paused still is: its
// PID 1 is frozen.
func pausedNow(st State) bool {
	if st.Status != StatusRunning || st.Pid == 0 {
		return false
	}
	frozen, err := Frozen(st.Pid)
	return err == nil && frozen
}

// sinceBoot converts clock ticks since boot (as /proc/PID/stat counts)
// to a time, given the boot time.
func sinceBoot(boot time.Time, ticks uint64) time.Time {
	return boot.Add(time.Duration(ticks) * time.Second / clockTicks)
}

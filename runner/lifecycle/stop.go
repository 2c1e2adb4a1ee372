package lifecycle

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-registry/berth/runner/container"
	"github.com/berth-registry/berth/runner/spec"
)

// Stop stops c (nothing to do when it does not run): the image's
// StopSignal (SIGTERM by default), then SIGKILL when it still runs after
// timeout, and waits until its holder let it go. It marks c stopped by
// its user first, so that its restart policy does not start it again (a
// container waiting to restart ends at once).
func Stop(c *container.Container, timeout time.Duration) error {
	st, err := c.State()
	if err != nil {
		return err
	}
	if st.Status == container.StatusRunning || st.Status == container.StatusRestarting {
		if err := c.MarkStopped(true); err != nil {
			return fmt.Errorf("container %s: %w", c.ID, err)
		}
	}
	if st.Status == container.StatusRestarting {
		c.WaitReleased(-1)
		return nil
	}
	if st.Status != container.StatusRunning || st.Pid == 0 {
		return nil
	}
	sig := syscall.SIGTERM
	if s, err := c.Spec(); err == nil && s.Annotations[spec.StopSignalAnnotation] != "" {
		if x, err := ParseSignal(s.Annotations[spec.StopSignalAnnotation]); err == nil {
			sig = x
		}
	}
	if err := unix.Kill(st.Pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("container %s: %w", c.ID, err)
	}
	if st.Paused {
		container.Thaw(st.Pid) // a frozen process acts on no signal
	}
	if c.WaitReleased(timeout) {
		return nil
	}
	if err := unix.Kill(st.Pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("container %s: %w", c.ID, err)
	}
	c.WaitReleased(-1)
	return nil
}

// ParseSignal parses a signal as docker's --signal and STOPSIGNAL take
// it: "SIGTERM", "TERM" or "15".
func ParseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	name := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	for i := 1; i < 32; i++ {
		if strings.TrimPrefix(strings.ToUpper(unix.SignalName(syscall.Signal(i))), "SIG") == name {
			return syscall.Signal(i), nil
		}
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}

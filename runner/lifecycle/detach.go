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
	_, err = RunHeld(ctx, images, c, container.Stdio{Out: log, Err: log}, started, nil)
	return err
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

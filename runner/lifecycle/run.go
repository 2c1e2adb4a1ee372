package lifecycle

import (
	"context"
	"fmt"
	"os"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-registry/berth/runner/container"
	"github.com/berth-registry/berth/runner/image"
)

// RunHeld runs the container c to its end while holding it: mounts its
// rootfs (unless f says this process has it mounted), records the running
// state, runs, unmounts, and records the exit or, with AutoRemove, removes
// the container. started is called once the process runs (or with the
// error when it did not start). f, when not nil, is the container as this
// process just created it; else its spec and state are read. The code is
// the container's exit code, or 125 when it could not start.
func RunHeld(ctx context.Context, images *image.Store, c *container.Container, stdio container.Stdio, started func(error), f *Fresh) (int, error) {
	if started == nil {
		started = func(error) {}
	}
	release, err := c.Hold()
	if err != nil {
		started(err)
		return 125, err
	}
	defer release()
	return runHeld(ctx, images, c, stdio, started, f)
}

// runHeld is RunHeld for a caller that holds c.
func runHeld(ctx context.Context, images *image.Store, c *container.Container, stdio container.Stdio, started func(error), f *Fresh) (int, error) {
	var st container.State
	var err error
	var s *specs.Spec
	mounted := false
	if f != nil {
		st, s, mounted = f.state, f.spec, f.mounted
	} else {
		if st, err = c.State(); err == nil {
			s, err = c.Spec()
		}
		if err != nil {
			started(err)
			return 125, err
		}
	}
	code, err := runMounted(ctx, images, c, &st, s, stdio, started, mounted)
	if f != nil {
		if serr := <-f.specSaved; serr != nil && err == nil {
			err = fmt.Errorf("container %s: saving its config: %w", c.ID, serr)
		}
	}
	if st.AutoRemove {
		rerr := c.RemoveHeld()
		if rerr == nil {
			return code, err
		}
		if err == nil {
			err = rerr
		}
	}
	if serr := c.SaveState(st); serr != nil && err == nil {
		err = serr
	}
	return code, err
}

// runMounted mounts c's rootfs unless mounted (or flattened), runs the
// container, unmounts and fills in st: running, then exited (saving only
// the running state).
func runMounted(ctx context.Context, images *image.Store, c *container.Container, st *container.State, s *specs.Spec, stdio container.Stdio, started func(error), mounted bool) (int, error) {
	if !st.Flattened && mounted {
		defer c.Unmount()
	}
	if !st.Flattened && !mounted {
		img, err := images.Get(st.ImageID)
		if err != nil {
			started(err)
			return 125, fmt.Errorf("container %s: its image: %w", c.ID, err)
		}
		c.Unmount()
		var uids, gids []specs.LinuxIDMapping
		if s.Linux != nil {
			uids, gids = s.Linux.UIDMappings, s.Linux.GIDMappings
		}
		if _, err := MountRootfs(ctx, images, img, c, st.AutoRemove, uids, gids, nil); err != nil {
			started(err)
			return 125, err
		}
		defer c.Unmount()
	}
	if err := c.Admit(s); err != nil {
		started(err)
		return 125, err
	}
	filter, err := SeccompFilter(c, s)
	if err != nil {
		started(err)
		return 125, err
	}
	nr, err := prepareNetwork(c, *st, s)
	if err != nil {
		started(err)
		return 125, err
	}
	var proc *container.Process
	code, err := container.RunWithHooks(ctx, c.ID, nr.spec, stdio, container.Hooks{Created: nr.hooks.Created, Started: func(p *container.Process) {
		proc = p
		st.Status, st.Pid, st.Holder = container.StatusRunning, p.Pid(), os.Getpid()
		st.Started, st.Error = time.Now().UTC(), ""
		c.SaveState(*st)
		started(nil)
	}}, container.WithSeccomp(filter))
	if nerr := nr.done(); nerr != nil && err == nil {
		err = nerr
	}
	if proc == nil {
		started(err)
	}
	st.Status, st.Pid, st.Holder = container.StatusExited, 0, 0
	st.ExitCode, st.Finished = code, time.Now().UTC()
	if proc != nil {
		st.OOMKilled = proc.OOMKilled()
	}
	if err != nil {
		st.Error = err.Error()
	}
	return code, err
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/runner/container"
	"github.com/berth-registry/berth/runner/format"
	"github.com/berth-registry/berth/runner/image"
	"github.com/berth-registry/berth/runner/lifecycle"
	"github.com/berth-registry/berth/runner/view"
)

// superviseCmd is the hidden command of a detached container's supervisor.
const superviseCmd = "container-supervise"

func needArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return usageError(fmt.Errorf("%s needs at least %d argument(s)", cmd.Name(), n))
		}
		return nil
	}
}

// newCreateCmd is `berth create`: make a container without starting it.
func (a *app) newCreateCmd() *cobra.Command {
	o := &containerOptions{}
	cmd := &cobra.Command{
		Use:   "create [flags] IMAGE [COMMAND [ARG...]]",
		Short: "Create a container (start it with `berth start`)",
		Args:  needArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			c, _, _, err := a.createContainer(ctx, args[0], args[1:], o, false)
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, c.ID)
			return nil
		},
	}
	cmd.Flags().SetInterspersed(false)
	a.addContainerFlags(cmd, o)
	cmd.Flags().BoolVar(&o.rm, "rm", false, "remove the container when it exits")
	return cmd
}

// containerCmd builds a command over existing containers.
func (a *app) containerCmd(use, short string, minArgs int, run func(f *imageFlags, images containerStores, args []string) error) (*cobra.Command, *imageFlags) {
	f := &imageFlags{}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  needArgs(minArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			images, containers, err := a.openStores(f)
			if err != nil {
				return err
			}
			return run(f, containerStores{images, containers}, args)
		},
	}
	a.addImageFlags(cmd, f)
	return cmd, f
}

// newStartCmd is `berth start`: run created or exited containers again,
// detached (or attached with -a), with their writable layer.
func (a *app) newStartCmd() *cobra.Command {
	var attach, interactive bool
	cmd, _ := a.containerCmd("start [flags] CONTAINER...", "Start one or more stopped containers", 1,
		func(f *imageFlags, s containerStores, args []string) error {
			if attach && len(args) != 1 {
				return usageError(errors.New("start -a takes one container"))
			}
			var errs []error
			for _, ref := range args {
				c, err := s.containers.Get(ref)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				if attach {
					stdio := container.Stdio{Out: a.stdout, Err: a.stderr}
					if interactive {
						stdio.In = os.Stdin
					}
					return containerResult(lifecycle.RunHeld(context.Background(), s.images, c, stdio, nil, nil))
				}
				if c.Held() {
					fmt.Fprintln(a.stdout, c.ID) // already running
					continue
				}
				if err := a.startDetached(c, f); err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintln(a.stdout, c.ID)
			}
			return errors.Join(errs...)
		})
	cmd.Flags().BoolVarP(&attach, "attach", "a", false, "run in the foreground, with the container's output and exit code")
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "with -a, pass standard input to the container")
	return cmd
}

// containerStores are the stores a container command works on.
type containerStores struct {
	images     *image.Store
	containers *container.Store
}

// startDetached starts c under its supervisor (`berth
// container-supervise`, see lifecycle.Detach).
func (a *app) startDetached(c *container.Container, f *imageFlags) error {
	dir, err := a.stateDir(f)
	if err != nil {
		return err
	}
	args := []string{superviseCmd, "--state", dir}
	if reg := a.defaultRegistry(f); reg != "" {
		args = append(args, "--default-registry", reg)
	}
	return lifecycle.Detach(c, append(args, c.ID))
}

// newSuperviseCmd is the hidden supervisor of a detached container
// (lifecycle.Supervise). File descriptor 3 gets "ok" once the process
// runs.
func (a *app) newSuperviseCmd() *cobra.Command {
	cmd, _ := a.containerCmd(superviseCmd+" CONTAINER", "Supervise a detached container (internal)", 1,
		func(f *imageFlags, s containerStores, args []string) error {
			notify := os.NewFile(3, "notify")
			c, err := s.containers.Get(args[0])
			if err != nil {
				lifecycle.Started(notify, err)
				return err
			}
			return lifecycle.Supervise(context.Background(), s.images, c, notify)
		})
	cmd.Hidden = true
	return cmd
}

// newStopCmd is `berth stop`: the image's StopSignal (SIGTERM by
// default), then SIGKILL after the timeout.
func (a *app) newStopCmd() *cobra.Command {
	var timeout int
	cmd, _ := a.containerCmd("stop [flags] CONTAINER...", "Stop one or more running containers", 1,
		func(f *imageFlags, s containerStores, args []string) error {
			return a.eachContainer(s, args, func(c *container.Container) (string, error) {
				return c.ID, lifecycle.Stop(c, time.Duration(timeout)*time.Second)
			})
		})
	cmd.Flags().IntVarP(&timeout, "time", "t", 10, "seconds to wait for the stop signal to end the container before SIGKILL")
	return cmd
}

// newPsCmd is `berth ps`.
func (a *app) newPsCmd() *cobra.Command {
	var all, quiet, size, noTrunc, latest bool
	var last int
	var tmpl string
	var filters []string
	cmd, _ := a.containerCmd("ps [flags]", "List containers (running ones; -a for all)", 0,
		func(f *imageFlags, s containerStores, args []string) error {
			if len(args) > 0 {
				return usageError(errors.New("ps takes no arguments"))
			}
			filter, err := view.ParseContainerFilters(filters)
			if err != nil {
				return usageError(err)
			}
			if quiet {
				tmpl = "{{.ID}}"
			}
			t, err := format.Parse(tmpl, view.PsFormat(size))
			if err != nil {
				return usageError(err)
			}
			if latest {
				last = 1
			}
			in := view.Inspector{Images: s.images, Containers: s.containers}
			rows, err := in.Ps(context.Background(), view.PsOptions{
				All: all, Last: last, Filter: filter, Size: size, NoTrunc: noTrunc, Now: time.Now()})
			if err != nil {
				return err
			}
			if dir, err := a.stateDir(f); err == nil {
				lifecycle.ReclaimNetworks(dir) // what crashed containers left; best effort
			}
			p := t.NewPrinter(a.stdout, view.ContainerHeaders)
			for _, row := range rows {
				if err := p.Print(row); err != nil {
					return err
				}
			}
			return p.Flush()
		})
	cmd.Flags().BoolVarP(&all, "all", "a", false, "list all containers, not only running ones")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the container IDs")
	cmd.Flags().BoolVarP(&size, "size", "s", false, "show the size of each container's writable layer, and with its image (virtual)")
	cmd.Flags().BoolVar(&noTrunc, "no-trunc", false, "do not cut the command")
	cmd.Flags().IntVarP(&last, "last", "n", 0, "list the `N` containers created last, in any state")
	cmd.Flags().BoolVarP(&latest, "latest", "l", false, "list the container created last, in any state")
	cmd.Flags().StringArrayVarP(&filters, "filter", "f", nil, "list only containers that match `KEY=VALUE`: name, id, status, ancestor, label, exited, health (repeatable)")
	cmd.Flags().StringVar(&tmpl, "format", "", "print each container through a Go `TEMPLATE` (.ID .Names .Image .Command .RunningFor .CreatedAt .Status .State .Ports .Size)")
	return cmd
}

// newRmCmd is `berth rm`.
func (a *app) newRmCmd() *cobra.Command {
	var force bool
	cmd, _ := a.containerCmd("rm [flags] CONTAINER...", "Remove one or more containers and their writable layers", 1,
		func(f *imageFlags, s containerStores, args []string) error {
			return a.eachContainer(s, args, func(c *container.Container) (string, error) {
				if force {
					lifecycle.Stop(c, 0)
				}
				err := c.Remove()
				if errors.Is(err, container.ErrRunning) {
					err = fmt.Errorf("%w (stop it first, or rm -f)", err)
				}
				return c.ID, err
			})
		})
	cmd.Flags().BoolVarP(&force, "force", "f", false, "kill a running container first")
	return cmd
}

// newLogsCmd is `berth logs`: the output of a detached container.
func (a *app) newLogsCmd() *cobra.Command {
	var follow bool
	cmd, _ := a.containerCmd("logs [flags] CONTAINER", "Print the output of a detached container", 1,
		func(f *imageFlags, s containerStores, args []string) error {
			if len(args) != 1 {
				return usageError(errors.New("logs takes one container"))
			}
			c, err := s.containers.Get(args[0])
			if err != nil {
				return err
			}
			if !follow {
				err := copyFile(a.stdout, c.LogPath())
				if errors.Is(err, os.ErrNotExist) {
					return nil
				}
				return err
			}
			lf, err := os.Open(c.LogPath())
			if err != nil {
				return err
			}
			defer lf.Close()
			for {
				n, err := io.Copy(a.stdout, lf)
				if err != nil {
					return err
				}
				if n == 0 && !c.Held() {
					_, err := io.Copy(a.stdout, lf) // what came before the release
					return err
				}
				if n == 0 {
					time.Sleep(200 * time.Millisecond)
				}
			}
		})
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing until the container exits")
	return cmd
}

package main

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/runner/container"
	"github.com/berth-registry/berth/runner/lifecycle"
	"github.com/berth-registry/berth/runner/view"
)

// eachContainer runs do on each container args names, printing out(c)
// for each that succeeded, and joins the errors.
func (a *app) eachContainer(s containerStores, args []string, do func(c *container.Container) (string, error)) error {
	var errs []error
	for _, ref := range args {
		c, err := s.containers.Get(ref)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out, err := do(c)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintln(a.stdout, out)
	}
	return errors.Join(errs...)
}

// newKillCmd is `berth kill`.
func (a *app) newKillCmd() *cobra.Command {
	var sigName string
	cmd, _ := a.containerCmd("kill [flags] CONTAINER...", "Send a signal (SIGKILL by default) to one or more running containers", 1,
		func(f *imageFlags, s containerStores, args []string) error {
			sig, err := lifecycle.ParseSignal(sigName)
			if err != nil {
				return usageError(fmt.Errorf("--signal: %w", err))
			}
			return a.eachContainer(s, args, func(c *container.Container) (string, error) {
				return c.ID, c.Kill(sig)
			})
		})
	cmd.Flags().StringVarP(&sigName, "signal", "s", "KILL", "`SIGNAL` to send: a name (KILL, SIGTERM) or a number")
	return cmd
}

// newWaitCmd is `berth wait`.
func (a *app) newWaitCmd() *cobra.Command {
	cmd, _ := a.containerCmd("wait CONTAINER...", "Block until one or more containers stop, then print their exit codes", 1,
		func(f *imageFlags, s containerStores, args []string) error {
			return a.eachContainer(s, args, func(c *container.Container) (string, error) {
				code, err := c.Wait()
				return fmt.Sprint(code), err
			})
		})
	return cmd
}

// newPauseCmd is `berth pause`; newUnpauseCmd `berth unpause`.
func (a *app) newPauseCmd() *cobra.Command {
	cmd, _ := a.containerCmd("pause CONTAINER...", "Pause (freeze) all processes of one or more containers", 1,
		func(f *imageFlags, s containerStores, args []string) error {
			return a.eachContainer(s, args, func(c *container.Container) (string, error) { return c.ID, c.Pause() })
		})
	return cmd
}

func (a *app) newUnpauseCmd() *cobra.Command {
	cmd, _ := a.containerCmd("unpause CONTAINER...", "Unpause all processes of one or more containers", 1,
		func(f *imageFlags, s containerStores, args []string) error {
			return a.eachContainer(s, args, func(c *container.Container) (string, error) { return c.ID, c.Unpause() })
		})
	return cmd
}

// newTopCmd is `berth top`.
func (a *app) newTopCmd() *cobra.Command {
	cmd, _ := a.containerCmd("top CONTAINER", "Display the running processes of a container", 1,
		func(f *imageFlags, s containerStores, args []string) error {
			if len(args) != 1 {
				return usageError(errors.New("top takes one container (ps options are not supported)"))
			}
			c, err := s.containers.Get(args[0])
			if err != nil {
				return err
			}
			rows, err := c.Top()
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(a.stdout, 0, 8, 3, ' ', 0)
			fmt.Fprintln(w, strings.Join(container.TopTitles, "\t"))
			for _, r := range rows {
				fmt.Fprintln(w, strings.Join(r, "\t"))
			}
			return w.Flush()
		})
	return cmd
}

// newStatsCmd is `berth stats --no-stream`.
func (a *app) newStatsCmd() *cobra.Command {
	var noStream, all bool
	cmd, _ := a.containerCmd("stats --no-stream [CONTAINER...]", "Display a sample of the resource use of containers", 0,
		func(f *imageFlags, s containerStores, args []string) error {
			if !noStream {
				return usageError(errors.New("stats streams only with --no-stream for now: pass --no-stream"))
			}
			var list []*container.Container
			if len(args) == 0 {
				cs, err := s.containers.List()
				if err != nil {
					return err
				}
				for _, c := range cs {
					if st, err := c.State(); err == nil && (all || st.Status == container.StatusRunning) {
						list = append(list, c)
					}
				}
			}
			var errs []error
			for _, ref := range args {
				c, err := s.containers.Get(ref)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				list = append(list, c)
			}
			errs = append(errs, view.WriteStats(a.stdout, list, len(args) > 0)...)
			return errors.Join(errs...)
		})
	cmd.Flags().BoolVar(&noStream, "no-stream", false, "print one sample and exit")
	cmd.Flags().BoolVarP(&all, "all", "a", false, "show all containers, not only running ones")
	return cmd
}

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/runner/container"
	"github.com/berth-registry/berth/runner/spec"
)

// newExecCmd is `berth exec`: a new process in a running container.
func (a *app) newExecCmd() *cobra.Command {
	var o container.ExecOptions
	var interactive bool
	var env []string
	var user string
	cmd, _ := a.containerCmd("exec [flags] CONTAINER COMMAND [ARG...]", "Run a command in a running container", 2,
		func(f *imageFlags, s containerStores, args []string) error {
			c, err := s.containers.Get(args[0])
			if err != nil {
				return err
			}
			o.Args = args[1:]
			for _, kv := range env {
				if strings.Contains(kv, "=") {
					o.Env = append(o.Env, kv)
				} else if v, ok := a.lookupEnv(kv); ok {
					o.Env = append(o.Env, kv+"="+v)
				}
			}
			if user != "" {
				st, err := c.State()
				if err != nil {
					return err
				}
				if st.Status != container.StatusRunning || st.Pid == 0 {
					return fmt.Errorf("%w: %s", container.ErrNotRunning, c.ID)
				}
				// The container's own files, as it sees them.
				u, err := spec.ResolveUser(fmt.Sprintf("/proc/%d/root", st.Pid), user)
				if err != nil {
					if errors.Is(err, spec.ErrInvalid) {
						return usageError(err)
					}
					return err
				}
				o.User = &specs.User{UID: u.UID, GID: u.GID, AdditionalGids: u.AdditionalGids}
			}
			stdio := container.Stdio{Out: a.stdout, Err: a.stderr}
			if interactive {
				stdio.In = os.Stdin
			}
			if o.Detach {
				stdio = container.Stdio{}
			}
			return containerResult(c.Exec(context.Background(), o, stdio))
		})
	cmd.Long = `Run a command in a running container: in its namespaces and cgroup, with its
capabilities, limits, user, environment and working directory unless the
flags change them. berth exits with the command's exit code (126 when it
could not be executed, 127 when it was not found).`
	fl := cmd.Flags()
	fl.SetInterspersed(false)
	fl.BoolVarP(&interactive, "interactive", "i", false, "keep standard input open and pass it to the command")
	fl.BoolVarP(&o.Terminal, "tty", "t", false, "give the command a pseudo-terminal")
	fl.BoolVarP(&o.Detach, "detach", "d", false, "start the command and leave it running in the background")
	fl.StringArrayVarP(&env, "env", "e", nil, "set an environment variable: `K=V`, or K to take the host's value (repeatable)")
	fl.StringVarP(&user, "user", "u", "", "`USER[:GROUP]` to run as, names from the container's /etc/passwd and /etc/group, or numbers")
	fl.StringVarP(&o.Cwd, "workdir", "w", "", "working `DIR` of the command (absolute, in the container)")
	return cmd
}

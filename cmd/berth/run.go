package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/runner/container"
	"github.com/berth-registry/berth/runner/lifecycle"
)

// newRunCmd is `berth run`: pull the image if missing, make a container of
// it and run it in the foreground (or detached with -d).
func (a *app) newRunCmd() *cobra.Command {
	o := &containerOptions{}
	cmd := &cobra.Command{
		Use:   "run [flags] IMAGE [COMMAND [ARG...]]",
		Short: "Run a command in a new container",
		Long: "Run a command in a new container: pull IMAGE if it is not in the local store, give it a writable\n" +
			"layer and run its Entrypoint and Cmd (COMMAND replaces Cmd; --entrypoint replaces both) in new\n" +
			"namespaces. berth exits with the container's exit code (125 when berth failed, 126 when the\n" +
			"command could not be executed, 127 when it was not found).",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 {
				return usageError(errors.New("run needs an IMAGE"))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runContainerCmd(cmd.Context(), o, args[0], args[1:])
		},
	}
	// Flags after IMAGE are the command's.
	cmd.Flags().SetInterspersed(false)
	a.addContainerFlags(cmd, o)
	cmd.Flags().BoolVarP(&o.detach, "detach", "d", false, "run in the background and print the container ID (berth logs shows its output)")
	cmd.Flags().BoolVar(&o.rm, "rm", false, "remove the container when it exits")
	return cmd
}

// addContainerFlags registers the flags `run` and `create` share.
func (a *app) addContainerFlags(cmd *cobra.Command, o *containerOptions) {
	f := cmd.Flags()
	a.addImageFlags(cmd, &o.imageFlags)
	f.StringVar(&o.name, "name", "", "the container's `NAME` ([a-zA-Z0-9][a-zA-Z0-9_.-]+, unique; default a generated adjective_noun)")
	f.StringVar(&o.restart, "restart", "no", "restart `POLICY`: no, on-failure[:N], always or unless-stopped (a foreground run exits with the first exit; a supervisor then restarts the container, as docker's daemon does)")
	f.StringVar(&o.health.Cmd, "health-cmd", "", "`CMD` run by /bin/sh in the container to check its health (replaces the image's HEALTHCHECK)")
	f.DurationVar(&o.health.Interval, "health-interval", 0, "time between health checks (default the image's, else 30s)")
	f.DurationVar(&o.health.Timeout, "health-timeout", 0, "longest a health check may run (default the image's, else 30s)")
	f.DurationVar(&o.health.StartPeriod, "health-start-period", 0, "time after the start in which failed checks do not count (default the image's, else 0s)")
	f.IntVar(&o.health.Retries, "health-retries", 0, "failed checks in a row that make the container unhealthy (default the image's, else 3)")
	f.BoolVar(&o.health.Disable, "no-healthcheck", false, "run no health check, whatever the image's HEALTHCHECK says")
	f.BoolVarP(&o.interactive, "interactive", "i", false, "keep standard input open and pass it to the container")
	f.BoolVarP(&o.tty, "tty", "t", false, "give the container a pseudo-terminal")
	f.StringArrayVarP(&o.env, "env", "e", nil, "set an environment variable: `K=V`, or K to take the host's value (repeatable)")
	f.StringVarP(&o.workdir, "workdir", "w", "", "working `DIR` of the process (replaces the image's WorkingDir)")
	f.StringVarP(&o.user, "user", "u", "", "`USER[:GROUP]` to run as, names from the image's /etc/passwd and /etc/group, or numbers")
	f.StringVar(&o.entrypoint, "entrypoint", "", "`CMD` to run instead of the image's Entrypoint and Cmd (arguments after IMAGE follow it)")
	f.StringArrayVarP(&o.volumes, "volume", "v", nil, "bind mount `HOST:CONTAINER[:ro]` (absolute paths; repeatable)")
	f.StringVar(&o.network, "network", "bridge", "`NETWORK`: bridge (the default bridge network, berth0), none (own network namespace, loopback only), host, container:NAME (share a running container's) or a network from `berth network create`")
	f.StringArrayVarP(&o.publish, "publish", "p", nil, "publish a container's port on the host: `[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp]` (ranges N-M allowed; repeatable)")
	f.BoolVarP(&o.publishAll, "publish-all", "P", false, "publish every port the image exposes on a free host port")
	f.StringVar(&o.hostname, "hostname", "", "the container's host `NAME` (default: the first 12 digits of its ID)")
	f.StringVar(&o.memory, "memory", "", "memory limit, `SIZE` such as 64m or 1g (no swap beyond it)")
	f.Float64Var(&o.cpus, "cpus", 0, "CPU limit in `CPUS` (0.5 is half of one)")
	f.Int64Var(&o.pidsLimit, "pids-limit", 0, "most processes the container may have at once (`N`)")
	f.BoolVar(&o.userns, "userns", false, "run in a new user namespace (container root is host uid 100000)")
	f.BoolVar(&o.readOnly, "read-only", false, "mount the container's root filesystem read-only")
	f.StringVar(&o.platform, "platform", "", "pull the image for `OS/ARCH[/VARIANT]` from a multi-platform index")
	f.StringArrayVar(&o.securityOpt, "security-opt", nil, "`OPTION`: seccomp=unconfined, seccomp=PROFILE.json (docker's format), no-new-privileges[=true|false] (repeatable)")
	f.StringArrayVar(&o.capAdd, "cap-add", nil, "add a capability (`CAP`, with or without CAP_, or ALL; repeatable)")
	f.StringArrayVar(&o.capDrop, "cap-drop", nil, "drop a capability (`CAP`, with or without CAP_, or ALL; repeatable)")
	f.BoolVar(&o.privileged, "privileged", false, "give the container full access to the host: every capability and device, no seccomp filter")
	f.BoolVar(&o.insecure, "insecure", false, "allow plain HTTP, or HTTPS without certificate verification, for a registry that is not loopback")
}

func (a *app) runContainerCmd(ctx context.Context, o *containerOptions, ref string, args []string) error {
	if ctx == nil {
		ctx = context.Background()
	}
	// A detached container runs in a supervisor process, which mounts
	// the rootfs itself; here it stays mounted from the creation on.
	c, images, f, err := a.createContainer(ctx, ref, args, o, !o.detach)
	if err != nil {
		return err
	}
	if o.detach {
		if err := a.startDetached(c, &o.imageFlags); err != nil {
			return err
		}
		fmt.Fprintln(a.stdout, c.ID)
		return nil
	}
	stdio := container.Stdio{Out: a.stdout, Err: a.stderr}
	if o.interactive {
		stdio.In = os.Stdin
	}
	code, err := lifecycle.RunHeld(ctx, images, c, stdio, nil, f)
	if err == nil {
		// --restart: a supervisor takes the container over, as docker's
		// daemon does once its attached client has exited.
		if restart, rerr := lifecycle.RestartAfterRun(c); rerr == nil && restart {
			if derr := a.startDetached(c, &o.imageFlags); derr != nil {
				fmt.Fprintf(a.stderr, "berth: warning: restarting container %s: %v\n", c.ID, derr)
			}
		}
	}
	return containerResult(code, err)
}

// containerResult turns a container's run into berth's result: its exit
// code, silently, or the runtime's error with the code a shell would give.
func containerResult(code int, err error) error {
	if err != nil {
		if code == 0 {
			code = exitFailure
		}
		return &exitError{code: code, err: err}
	}
	return containerExit(code)
}

package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes of berth.
const (
	exitOK      = 0
	exitFailure = 1 // the command failed while running
	exitUsage   = 2 // bad flags, arguments or configuration: nothing was started
)

func main() {
	a := &app{
		stdout:    os.Stdout,
		stderr:    os.Stderr,
		lookupEnv: os.LookupEnv,
		environ:   os.Environ(),
		notify: func(c chan<- os.Signal) func() {
			signal.Notify(c, syscall.SIGTERM, os.Interrupt)
			return func() { signal.Stop(c) }
		},
	}
	os.Exit(a.run(os.Args[1:]))
}

// app is what the commands take from the process, so that tests can run
// them in-process with their own streams, environment and signals.
type app struct {
	stdout, stderr io.Writer
	lookupEnv      func(string) (string, bool) // os.LookupEnv
	environ        []string                    // os.Environ()
	// notify relays SIGTERM and SIGINT to c until the returned func is called.
	notify func(c chan<- os.Signal) (stop func())
}

// run executes the command line args (without the program name) and
// returns the exit code. Errors are printed as one line on stderr.
func (a *app) run(args []string) int {
	root := a.newRootCmd()
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	msg := strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
	if msg != "" { // a container's own exit code is passed on silently
		fmt.Fprintf(a.stderr, "berth: %s\n", msg)
	}
	if ee := (*exitError)(nil); errors.As(err, &ee) {
		return ee.code
	}
	return exitFailure
}

// newRootCmd builds the command tree. Each subcommand lives in its own file
// as a.newXxxCmd; adding one is adding that file and a line here.
func (a *app) newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "berth",
		Short: "Berth is a private OCI container registry",
		Long: "Berth is a private OCI container registry.\n\n" +
			"Run `berth serve` to start it; `berth config env` lists the BERTH_* environment variables that configure it.",
		Version:       buildVersion(),
		SilenceUsage:  true,
		SilenceErrors: true,
		// Without Args and Run, cobra would print help for an unknown
		// command and exit 0.
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError(fmt.Errorf("unknown command %q for %q (see %s --help)", args[0], cmd.CommandPath(), cmd.CommandPath()))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetVersionTemplate("berth {{.Version}}\n")
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	root.AddCommand(
		a.newServeCmd(),
		a.newVersionCmd(),
		a.newConfigCmd(),
		a.newAuthCmd(),
		a.newGCCmd(),
		a.newDUCmd(),
		a.newRunCmd(),
		a.newCreateCmd(),
		a.newStartCmd(),
		a.newStopCmd(),
		a.newPsCmd(),
		a.newRmCmd(),
		a.newRenameCmd(),
		a.newLogsCmd(),
		a.newPortCmd(),
		a.newNetworkCmd(),
		a.newSuperviseCmd(),
		a.newExecCmd(),
		a.newKillCmd(),
		a.newWaitCmd(),
		a.newTopCmd(),
		a.newPauseCmd(),
		a.newUnpauseCmd(),
		a.newStatsCmd(),
		a.newCpCmd(),
		a.newPullCmd(),
		a.newPushCmd(),
		a.newTagCmd(),
		a.newImagesCmd(),
		a.newRmiCmd(),
		a.newImageCmd(),
		a.newInspectCmd(),
		a.newHistoryCmd(),
		a.newBundleCmd(),
		a.newLoginCmd(),
		a.newLogoutCmd(),
		a.newSaveCmd(),
		a.newLoadCmd(),
		a.newCommitCmd(),
		a.newExportCmd(),
		a.newImportCmd(),
		a.newBuildCmd(),
	)
	return root
}

// exitError carries the exit code of a failed command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageError marks err as a problem with the command line or the
// configuration: berth exits 2 without having started anything.
func usageError(err error) error { return &exitError{code: exitUsage, err: err} }

// noArgs is cobra.NoArgs as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if err := cobra.NoArgs(cmd, args); err != nil {
		return usageError(err)
	}
	return nil
}

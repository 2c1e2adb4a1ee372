package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/berth-registry/berth/runner/pull"
)

// registryArg returns the registry of login and logout: the argument, else
// the default registry.
func (a *app) registryArg(args []string, f *imageFlags) (string, error) {
	reg := ""
	if len(args) == 1 {
		reg = args[0]
	} else {
		reg = a.defaultRegistry(f)
	}
	if reg == "" {
		return "", usageError(errors.New("no REGISTRY given and no default registry (--default-registry or $" + envDefaultRegistry + ")"))
	}
	host, err := pull.NormalizeRegistry(reg)
	if err != nil {
		return "", usageError(err)
	}
	return host, nil
}

func maxOneArg(cmd *cobra.Command, args []string) error {
	if err := cobra.MaximumNArgs(1)(cmd, args); err != nil {
		return usageError(err)
	}
	return nil
}

func (a *app) newLoginCmd() *cobra.Command {
	var f imageFlags
	var username string
	var passwordStdin, insecure bool
	cmd := &cobra.Command{
		Use:   "login [-u USER] [--password-stdin] [--insecure] [REGISTRY]",
		Short: "Log in to a registry: check the credentials and store them for pulls",
		Long: `Check USER's password against REGISTRY (host[:port]; default: the default
registry) and store the credentials in the docker config.json
($DOCKER_CONFIG/config.json, else ~/.docker/config.json, mode 0600), where
"berth pull", docker and podman find them. Every other entry of the file
is kept.

The password is read from stdin with --password-stdin (one line), else
asked for on the terminal; so is USER when -u is not given.

Exit codes: 0 on success, 2 for bad arguments, 1 otherwise (refused
credentials included).`,
		Args: maxOneArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			host, err := a.registryArg(args, &f)
			if err != nil {
				return err
			}
			in := cmd.InOrStdin()
			stdinTTY := isTerminal(in)
			if username == "" {
				if !stdinTTY || passwordStdin {
					return usageError(errors.New("no user name: give -u USER"))
				}
				fmt.Fprint(a.stderr, "Username: ")
				line, err := bufio.NewReader(in).ReadString('\n')
				if err != nil && line == "" {
					return fmt.Errorf("reading the user name: %w", err)
				}
				username = strings.TrimSpace(line)
			}
			var password string
			switch {
			case passwordStdin:
				b, err := io.ReadAll(io.LimitReader(in, 1<<20))
				if err != nil {
					return fmt.Errorf("reading the password from stdin: %w", err)
				}
				password = strings.TrimRight(string(b), "\r\n")
			case stdinTTY:
				fmt.Fprint(a.stderr, "Password: ")
				b, err := term.ReadPassword(int(in.(*os.File).Fd()))
				fmt.Fprintln(a.stderr)
				if err != nil {
					return fmt.Errorf("reading the password: %w", err)
				}
				password = string(b)
			default:
				return usageError(errors.New("stdin is not a terminal: give the password with --password-stdin"))
			}
			if password == "" {
				return usageError(errors.New("empty password"))
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			client := pull.NewClient(pull.ClientOptions{Insecure: insecure})
			if err := client.Login(ctx, host, username, password, a.dockerConfigPath()); err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.stdout, "Login succeeded: %s\n", host)
			return err
		},
	}
	cmd.Flags().StringVar(&f.defaultRegistry, "default-registry", "", "the registry when none is given (default $"+envDefaultRegistry+")")
	cmd.Flags().StringVarP(&username, "username", "u", "", "the user `NAME`")
	cmd.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from stdin")
	cmd.Flags().BoolVar(&insecure, "insecure", false, "allow plain HTTP, or HTTPS without certificate verification, for a registry that is not loopback")
	return cmd
}

func (a *app) newLogoutCmd() *cobra.Command {
	var f imageFlags
	cmd := &cobra.Command{
		Use:   "logout [REGISTRY]",
		Short: "Remove a registry's credentials from the docker config.json",
		Long: `Remove the credentials of REGISTRY (host[:port]; default: the default
registry) from the docker config.json "berth login" writes, keeping
everything else. It fails (exit 1) when there were none.`,
		Args: maxOneArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			host, err := a.registryArg(args, &f)
			if err != nil {
				return err
			}
			if err := pull.Logout(host, a.dockerConfigPath()); err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.stdout, "Removed the credentials of %s\n", host)
			return err
		},
	}
	cmd.Flags().StringVar(&f.defaultRegistry, "default-registry", "", "the registry when none is given (default $"+envDefaultRegistry+")")
	return cmd
}

// isTerminal reports whether r is a terminal.
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

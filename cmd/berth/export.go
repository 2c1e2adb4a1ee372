package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/berth-registry/berth/runner/commit"
)

// newExportCmd is `berth export`: a container's filesystem as a tar.
func (a *app) newExportCmd() *cobra.Command {
	var output string
	cmd, _ := a.containerCmd("export [-o FILE] CONTAINER", "Write a container's filesystem as a tar archive", 1,
		func(f *imageFlags, s containerStores, args []string) error {
			if len(args) != 1 {
				return usageError(errors.New("export takes one container"))
			}
			c, err := s.containers.Get(args[0])
			if err != nil {
				return err
			}
			var w io.Writer = a.stdout
			if output == "" {
				if out, ok := a.stdout.(*os.File); ok && term.IsTerminal(int(out.Fd())) {
					return usageError(errors.New("refusing to write a tar to a terminal: use -o FILE or redirect the output"))
				}
			} else {
				out, err := os.Create(output)
				if err != nil {
					return err
				}
				defer out.Close()
				w = out
			}
			if err := commit.Export(context.Background(), s.images, c, w); err != nil {
				if output != "" {
					os.Remove(output)
				}
				return err
			}
			if out, ok := w.(*os.File); ok && output != "" {
				if err := out.Close(); err != nil {
					return fmt.Errorf("writing %s: %w", output, err)
				}
			}
			return nil
		})
	cmd.Long = `Write the whole filesystem of a container (its image's layers with its
changes over them) as one tar archive, to standard output or -o FILE.`
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to `FILE` instead of standard output")
	return cmd
}

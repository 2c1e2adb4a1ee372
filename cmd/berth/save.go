package main

import (
	"context"
	"errors"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/berth-registry/berth/runner/archive"
)

func (a *app) newSaveCmd() *cobra.Command {
	var f imageFlags
	var output string
	cmd := &cobra.Command{
		Use:   "save [--state DIR] [-o FILE] IMAGE...",
		Short: "Save images to a tar archive",
		Long: `Write each IMAGE (a reference, or an image ID) of the local image store to
one tar archive, on stdout or in FILE: an OCI image layout and a
docker-archive at once, as "docker save" writes it since Docker 25, which
"docker load", "podman load", skopeo (docker-archive: and oci-archive:)
and "berth load" read. The blobs are the stored ones, as pulled (layers
stay compressed, manifests keep their digests). A reference saves the
image under that tag; an ID saves it untagged.

Without -o the archive goes to stdout, which must not be a terminal. With
-o it is written to a temporary file renamed to FILE when complete.

Exit codes: 0 on success, 2 for bad arguments, 1 otherwise (an image
pulled by an older berth, which kept no blobs, must be pulled again).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.MinimumNArgs(1)(cmd, args); err != nil {
				return usageError(err)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if output == "" {
				if f, ok := a.stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
					return errors.New("cowardly refusing to save to a terminal: use the -o flag or redirect")
				}
			}
			s, err := a.openImageStore(&f)
			if err != nil {
				return err
			}
			if output == "" {
				return archive.Save(cmdContext(cmd), s, a.stdout, args)
			}
			return writeArchive(cmdContext(cmd), s, output, args)
		},
	}
	a.addImageFlags(cmd, &f)
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to `FILE` instead of stdout")
	return cmd
}

// cmdContext is the command's context, or Background when it has none.
func cmdContext(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}

package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/runner/commit"
)

// newImportCmd is `berth import`: a rootfs tar becomes a one-layer image.
func (a *app) newImportCmd() *cobra.Command {
	var f imageFlags
	var o commit.ImportOptions
	cmd := &cobra.Command{
		Use:   "import [flags] FILE|- [IMAGE]",
		Short: "Create an image from a filesystem tar archive",
		Long: `Create a one-layer image for this host's platform from a tar archive of a
root filesystem (plain, gzip or zstd), read from FILE or, with -, standard
input. Its entries follow the rules of pulled layers: one that would land
outside the filesystem fails the import. -c applies Dockerfile instructions
to the config, as for commit. Prints the new image's ID.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return usageError(fmt.Errorf("import takes a file (or -) and at most one image name"))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.openImageStore(&f)
			if err != nil {
				return err
			}
			var r io.Reader = os.Stdin
			o.Source = args[0]
			if args[0] != "-" {
				in, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer in.Close()
				r = in
			}
			if len(args) == 2 {
				o.Ref = args[1]
			}
			img, err := commit.Import(context.Background(), s, r, o)
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, img.ID)
			return nil
		},
	}
	a.addImageFlags(cmd, &f)
	cmd.Flags().StringArrayVarP(&o.Changes, "change", "c", nil, "apply a Dockerfile `INSTRUCTION` to the image's config (repeatable)")
	cmd.Flags().StringVarP(&o.Message, "message", "m", "", "`MESSAGE` of the image's history entry")
	return cmd
}

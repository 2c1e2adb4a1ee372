package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/runner/archive"
	"github.com/berth-registry/berth/runner/image"
	"github.com/berth-registry/berth/runner/pull"
)

func (a *app) newLoadCmd() *cobra.Command {
	var f imageFlags
	var input, platform string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "load [--state DIR] [-i FILE] [-q] [--platform OS/ARCH[/VARIANT]]",
		Short: "Load images from a tar archive",
		Long: `Load the images of a tar archive, from stdin or FILE, into the local image
store: a docker-archive ("docker save", "podman save", skopeo's
docker-archive:, older ones with <id>/layer.tar too), an OCI image layout
(skopeo's oci-archive:, "docker save" since Docker 25), or both in one tar;
uncompressed, gzip or zstd. Of a multi-platform index, the image for this
host (or --platform) is loaded. Every blob is checked against its digest
and every layer against its config's diff_id; the layers are unpacked with
the rules of pulled layers.

An archive that is truncated, lies about a digest, or holds an entry that
lands outside it (a ".." climb, an absolute path, a symlink or hardlink
pointing out, a write through a link it made) or a device node is refused
with the entry named, and nothing is added to the store.

Prints "Loaded image: REF" for each name the archive gives an image and
"Loaded image ID: ID" for an image it names not. A name without a registry
host is completed with --default-registry; without one it is skipped with
a warning.

Exit codes: 0 on success, 2 for bad arguments, 1 otherwise.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := parsePlatform(platform)
			if err != nil {
				return err
			}
			var in io.Reader = cmd.InOrStdin()
			if input != "" {
				fh, err := os.Open(input)
				if err != nil {
					return err
				}
				defer fh.Close()
				in = fh
			} else if isTerminal(in) {
				return usageError(errors.New("refusing to read an archive from a terminal: use -i FILE or redirect stdin"))
			}
			s, err := a.openImageStore(&f)
			if err != nil {
				return err
			}
			loaded, err := archive.Load(cmdContext(cmd), s, in, archive.LoadOptions{Platform: p})
			if err != nil {
				return err
			}
			for _, l := range loaded {
				for _, n := range l.Unnamed {
					fmt.Fprintf(a.stderr, "berth: warning: image %s: name %q skipped: it names no registry (see --default-registry) or does not parse\n", image.ShortID(l.Image.ID), n)
				}
				for _, n := range l.Names {
					fmt.Fprintf(a.stdout, "Loaded image: %s\n", n)
				}
				if l.Index != "" && l.Image.ID == "" {
					fmt.Fprintf(a.stderr, "berth: index %s has no image for %s: it can be pushed or saved, not run\n", l.Index, pull.HostPlatform())
				}
				if len(l.Names) == 0 && l.Image.ID != "" {
					fmt.Fprintf(a.stdout, "Loaded image ID: %s\n", l.Image.ID)
				}
			}
			return nil
		},
	}
	a.addImageFlags(cmd, &f)
	cmd.Flags().StringVarP(&input, "input", "i", "", "read from `FILE` instead of stdin")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print no progress (accepted for docker's sake: berth load prints none)")
	cmd.Flags().StringVar(&platform, "platform", "", "load the image for `OS/ARCH[/VARIANT]` from a multi-platform index (default: this host's)")
	return cmd
}

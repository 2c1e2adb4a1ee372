package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/runner/commit"
)

// newCommitCmd is `berth commit`: a container's changes become an image.
func (a *app) newCommitCmd() *cobra.Command {
	var o commit.Options
	cmd, _ := a.containerCmd("commit [flags] CONTAINER [IMAGE]", "Create a new image from a container's changes", 1,
		func(f *imageFlags, s containerStores, args []string) error {
			if len(args) > 2 {
				return usageError(fmt.Errorf("commit takes a container and at most one image name"))
			}
			c, err := s.containers.Get(args[0])
			if err != nil {
				return err
			}
			if len(args) == 2 {
				o.Ref = args[1]
			}
			img, err := commit.Commit(context.Background(), s.images, c, o)
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, img.ID)
			return nil
		})
	cmd.Long = `Create a new image from a container's changes: its writable layer becomes
one more layer over its image, with a history entry saying so. A running
container is paused (frozen) while its layer is read, unless --pause=false.
-c applies Dockerfile instructions to the new image's config: CMD,
ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR.
Without IMAGE the new image is dangling; its ID is printed either way.`
	cmd.Flags().StringArrayVarP(&o.Changes, "change", "c", nil, "apply a Dockerfile `INSTRUCTION` to the new image's config (repeatable)")
	cmd.Flags().StringVarP(&o.Message, "message", "m", "", "commit `MESSAGE` (the history entry's comment)")
	cmd.Flags().StringVarP(&o.Author, "author", "a", "", "`AUTHOR` of the image (e.g. \"Jane <jane@example.org>\")")
	cmd.Flags().BoolVarP(&o.Pause, "pause", "p", true, "pause a running container while its layer is read")
	return cmd
}

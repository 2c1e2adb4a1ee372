package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/runner/container"
)

// newRenameCmd is `berth rename OLD NEW`.
func (a *app) newRenameCmd() *cobra.Command {
	cmd, _ := a.containerCmd("rename CONTAINER NEW_NAME", "Rename a container", 2,
		func(f *imageFlags, s containerStores, args []string) error {
			if len(args) != 2 {
				return usageError(errors.New("rename takes a container and its new name"))
			}
			_, err := s.containers.Rename(args[0], args[1])
			if errors.Is(err, container.ErrInvalidName) {
				return usageError(err)
			}
			return err
		})
	return cmd
}

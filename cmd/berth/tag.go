package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/runner/pull"
)

func (a *app) newTagCmd() *cobra.Command {
	var f imageFlags
	cmd := &cobra.Command{
		Use:   "tag [--state DIR] SOURCE TARGET",
		Short: "Give an image of the local image store another reference",
		Long: `Make TARGET (host[:port]/name[:tag], completed as "berth pull" completes
references) name the image SOURCE names (a reference or an image ID), for
"berth push" to push it there. A TARGET that named another image moves.

Exit codes: 0 on success, 2 for a bad reference, 1 otherwise (no such image).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.ExactArgs(2)(cmd, args); err != nil {
				return usageError(err)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.openImageStore(&f)
			if err != nil {
				return err
			}
			_, err = s.Tag(args[0], args[1])
			if errors.Is(err, pull.ErrInvalidReference) {
				return usageError(err)
			}
			return err
		},
	}
	a.addImageFlags(cmd, &f)
	return cmd
}

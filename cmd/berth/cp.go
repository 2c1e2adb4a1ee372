package main

import (
	"context"
	"errors"
	"os"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/runner/container"
	"github.com/berth-registry/berth/runner/containerfs"
	"github.com/berth-registry/berth/runner/lifecycle"
)

// newCpCmd is `berth cp`.
func (a *app) newCpCmd() *cobra.Command {
	var follow, archive bool
	cmd, _ := a.containerCmd("cp [flags] CONTAINER:SRC DEST|-\n  berth cp [flags] SRC|- CONTAINER:DEST", "Copy files between a container and the host", 2,
		func(f *imageFlags, s containerStores, args []string) error {
			if len(args) != 2 {
				return usageError(errors.New("cp takes a source and a destination"))
			}
			srcRef, src := containerfs.SplitCopyArg(args[0])
			destRef, dest := containerfs.SplitCopyArg(args[1])
			switch {
			case srcRef != "" && destRef != "":
				return usageError(errors.New("cp copies between a container and the host, not between containers"))
			case srcRef == "" && destRef == "":
				return usageError(errors.New("cp needs CONTAINER:PATH as its source or its destination"))
			}
			ref := srcRef + destRef
			c, err := s.containers.Get(ref)
			if err != nil {
				return err
			}
			var cpath string
			if srcRef != "" {
				cpath = src
			} else {
				cpath = dest
			}
			if cpath == "" {
				return usageError(errors.New("cp: an empty path in the container"))
			}
			return a.withContainerRoot(s, c, func(root *containerfs.Root, owner [2]int) error {
				if srcRef != "" {
					return containerfs.CopyOut(root, src, dest, follow, a.stdout)
				}
				o := containerfs.ExtractOptions{Owner: &owner}
				if archive {
					o.Owner = nil
				}
				return containerfs.CopyIn(root, src, dest, follow, o, os.Stdin)
			})
		})
	cmd.Long = `Copy files and directories between a container (running or stopped) and the
host, as docker cp: SRC into DEST when DEST is an existing directory, else
as DEST; SRC/. copies what the directory holds. "-" is a tar stream on
standard input (into a container directory) or output. Every path in the
container resolves inside its root filesystem, symlinks included; symlinks
are copied as symlinks. Files copied in belong to the container's root
(-a keeps their owners); files copied out belong to the invoking user and
lose their setuid and setgid bits.`
	cmd.Flags().BoolVarP(&follow, "follow-link", "L", false, "follow a symlink at the end of SRC")
	cmd.Flags().BoolVarP(&archive, "archive", "a", false, "keep the owners (uid and gid) of what is copied in")
	return cmd
}

// withContainerRoot opens c's root for do (lifecycle.WithRoot).
func (a *app) withContainerRoot(s containerStores, c *container.Container, do func(*containerfs.Root, [2]int) error) error {
	return lifecycle.WithRoot(context.Background(), s.images, c, do)
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/runner/container"
	"github.com/berth-registry/berth/runner/containerfs"
	"github.com/berth-registry/berth/runner/lifecycle"
)

// splitCpArg splits a `berth cp` argument into a container reference and
// a path in it ("" for a host path), as docker: CONTAINER:PATH, where a
// host path holding a colon is written ./a:b or /a:b.
func splitCpArg(arg string) (ref, p string) {
	if strings.HasPrefix(arg, "/") || strings.HasPrefix(arg, ".") {
		return "", arg
	}
	ref, p, ok := strings.Cut(arg, ":")
	if !ok || ref == "" {
		return "", arg
	}
	return ref, p
}

// newCpCmd is `berth cp`.
func (a *app) newCpCmd() *cobra.Command {
	var follow, archive bool
	cmd, _ := a.containerCmd("cp [flags] CONTAINER:SRC DEST|-\n  berth cp [flags] SRC|- CONTAINER:DEST", "Copy files between a container and the host", 2,
		func(f *imageFlags, s containerStores, args []string) error {
			if len(args) != 2 {
				return usageError(errors.New("cp takes a source and a destination"))
			}
			srcRef, src := splitCpArg(args[0])
			destRef, dest := splitCpArg(args[1])
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
					return a.copyOut(root, src, dest, follow)
				}
				o := containerfs.ExtractOptions{Owner: &owner}
				if archive {
					o.Owner = nil
				}
				return a.copyIn(root, src, dest, follow, o)
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

// copyOut copies src of the container's root to dest on the host ("-":
// a tar on standard output).
func (a *app) copyOut(root *containerfs.Root, src, dest string, follow bool) error {
	stat := root.Lstat
	if follow || strings.HasSuffix(src, "/") || strings.HasSuffix(src, "/.") {
		stat = root.Stat
	}
	info, err := stat(src)
	if err != nil {
		return fmt.Errorf("no such file or directory in the container: %s (%w)", src, err)
	}
	if dest == "-" {
		name := filepath.Base(filepath.Clean("/" + src))
		if name == "/" {
			name = ""
		}
		return containerfs.WriteTar(root, src, name, follow, a.stdout)
	}
	st, err := os.Stat(dest)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	dir, name, err := containerfs.Plan(src, info.IsDir(), dest, exists, exists && st.IsDir())
	if err != nil {
		return err
	}
	host, err := containerfs.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer host.Close()
	o := containerfs.ExtractOptions{Owner: &[2]int{os.Getuid(), os.Getgid()}, NoDevices: true, NoSetuid: true}
	return pipeTar(func(w io.Writer) error { return containerfs.WriteTar(root, src, name, follow, w) },
		func(r io.Reader) error { return containerfs.Extract(host, "/", r, o) })
}

// copyIn copies src of the host ("-": a tar on standard input) to dest in
// the container's root.
func (a *app) copyIn(root *containerfs.Root, src, dest string, follow bool, o containerfs.ExtractOptions) error {
	destInfo, err := root.Stat(dest)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if src == "-" {
		if !exists || !destInfo.IsDir() {
			return fmt.Errorf("%w: the destination %s must be an existing directory in the container", containerfs.ErrInvalid, dest)
		}
		return containerfs.Extract(root, dest, os.Stdin, o)
	}
	abs, err := filepath.Abs(src)
	if err != nil {
		return err
	}
	if strings.HasSuffix(src, "/.") || strings.HasSuffix(src, "/") {
		abs += "/"
	}
	host, err := containerfs.OpenRoot(filepath.Dir(filepath.Clean(abs)))
	if err != nil {
		return err
	}
	defer host.Close()
	hostSrc := "/" + filepath.Base(filepath.Clean(abs))
	stat := host.Lstat
	if follow {
		stat = host.Stat
	}
	info, err := stat(hostSrc)
	if err != nil {
		return err
	}
	if strings.HasSuffix(src, "/.") {
		hostSrc += "/."
	}
	dir, name, err := containerfs.Plan(hostSrc, info.IsDir(), dest, exists, exists && destInfo.IsDir())
	if err != nil {
		return err
	}
	return pipeTar(func(w io.Writer) error { return containerfs.WriteTar(host, hostSrc, name, follow, w) },
		func(r io.Reader) error { return containerfs.Extract(root, dir, r, o) })
}

// pipeTar runs write into read through a pipe.
func pipeTar(write func(io.Writer) error, read func(io.Reader) error) error {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := write(pw)
		pw.CloseWithError(err)
		done <- err
	}()
	rerr := read(pr)
	pr.CloseWithError(errors.New("the copy stopped"))
	werr := <-done
	if rerr != nil {
		return rerr
	}
	return werr
}

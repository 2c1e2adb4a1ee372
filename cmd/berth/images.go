package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/runner/container"
	"github.com/berth-registry/berth/runner/format"
	"github.com/berth-registry/berth/runner/image"
	"github.com/berth-registry/berth/runner/view"
)

func (a *app) newImagesCmd() *cobra.Command {
	var f imageFlags
	var quiet, digests, noTrunc bool
	var filters []string
	var tmpl string
	cmd := &cobra.Command{
		Use:   "images [--state DIR] [-q] [--digests] [--filter KEY=VALUE]... [--format FORMAT]",
		Short: "List the images in the local image store",
		Long: `List the pulled images, most recently pulled first: one line per
reference, and one "<none>" line for an image no reference names any more
("berth image prune" removes those). SIZE is the unpacked size of the
image's layers; layers shared between images are counted in each.

--digests adds the DIGEST column: the digest of the manifest each
reference was pulled or tagged by (an index for a multi-platform image).
--filter, docker's: dangling=true|false, reference=PATTERN (path.Match on
host/name or host/name:tag; the default registry may be left out),
label=KEY[=VALUE]. --format takes a Go template over .Repository .Tag
.Digest .ID .Platform .CreatedSince .CreatedAt .Size ("table ..." for
columns, "json" for one JSON object a line).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			filter, err := view.ParseImageFilters(filters)
			if err != nil {
				return usageError(err)
			}
			t, err := format.Parse(tmpl, view.ImagesFormat(digests))
			if err != nil {
				return usageError(err)
			}
			s, err := a.openImageStore(&f)
			if err != nil {
				return err
			}
			filter.DefaultRegistry = s.DefaultRegistry
			imgs, err := s.List()
			if err != nil {
				return err
			}
			manifests, err := s.ReferenceManifests()
			if err != nil {
				return err
			}
			rows := view.ImageRows(imgs, manifests, view.ImageRowOptions{Now: time.Now(), NoTrunc: noTrunc, Filter: filter})
			if quiet {
				seen := map[string]bool{}
				for _, r := range rows {
					if !seen[r.ID] {
						seen[r.ID] = true
						fmt.Fprintln(a.stdout, r.ID)
					}
				}
				return nil
			}
			p := t.NewPrinter(a.stdout, view.ImageHeaders)
			for _, r := range rows {
				if err := p.Print(r); err != nil {
					return err
				}
			}
			return p.Flush()
		},
	}
	a.addImageFlags(cmd, &f)
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the image IDs")
	cmd.Flags().BoolVar(&digests, "digests", false, "show the manifest digests")
	cmd.Flags().BoolVar(&noTrunc, "no-trunc", false, "do not truncate the image IDs")
	cmd.Flags().StringArrayVarP(&filters, "filter", "f", nil, "show only the images that match `KEY=VALUE` (dangling, reference, label)")
	cmd.Flags().StringVar(&tmpl, "format", "", "print each line through a Go `TEMPLATE`")
	return cmd
}

// imagesInUse returns, by image ID, the containers (running or not) whose
// rootfs is made of an image's layers.
func imagesInUse(containers *container.Store) (map[digest.Digest][]string, error) {
	list, err := containers.List()
	if err != nil {
		return nil, err
	}
	inUse := map[digest.Digest][]string{}
	for _, c := range list {
		st, err := c.State()
		if err != nil || st.ImageID == "" {
			continue // removed meanwhile, or made from no image
		}
		id := digest.Digest(st.ImageID)
		inUse[id] = append(inUse[id], c.ID)
	}
	return inUse, nil
}

func (a *app) newRmiCmd() *cobra.Command {
	var f imageFlags
	var force bool
	cmd := &cobra.Command{
		Use:   "rmi [--state DIR] [-f] IMAGE...",
		Short: "Remove images from the local image store",
		Long: `Remove each IMAGE from the local image store. A reference removes that
reference, and the image once no reference names it; an image ID (or a
unique prefix of it) removes the image and all its references. Layers are
freed by "berth image prune". Every IMAGE is tried; the exit code is 1 if
any was not removed.

An image that a container uses (running or not: "berth start" needs it
again) is not removed: remove the container first. With --force, the
image's references are removed and the image stays, listed as "<none>",
until its containers are gone and "berth image prune" runs.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.MinimumNArgs(1)(cmd, args); err != nil {
				return usageError(err)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			s, containers, err := a.openStores(&f)
			if err != nil {
				return err
			}
			inUse, err := imagesInUse(containers)
			if err != nil {
				return err
			}
			var failed []string
			for _, ref := range args {
				res, err := s.Remove(ref, image.RemoveOptions{InUse: inUse, Force: force})
				if errors.Is(err, image.ErrInUse) {
					err = fmt.Errorf("%w (remove the container first, or use --force to remove only the image's references)", err)
				}
				if err != nil {
					fmt.Fprintf(a.stderr, "berth: %s: %v\n", ref, err)
					failed = append(failed, ref)
					continue
				}
				for _, u := range res.Untagged {
					fmt.Fprintf(a.stdout, "Untagged: %s\n", u)
				}
				if res.Deleted != "" {
					fmt.Fprintf(a.stdout, "Deleted: %s\n", res.Deleted)
				}
			}
			if len(failed) > 0 {
				return fmt.Errorf("%d of %d images not removed: %s", len(failed), len(args), strings.Join(failed, " "))
			}
			return nil
		},
	}
	a.addImageFlags(cmd, &f)
	cmd.Flags().BoolVarP(&force, "force", "f", false, "remove the references of an image a container uses (the image stays until the container is gone)")
	return cmd
}

func (a *app) newImageCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Manage the local image store",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError(fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath()))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var f imageFlags
	prune := &cobra.Command{
		Use:   "prune [--state DIR]",
		Short: "Remove dangling images and the layers no image uses",
		Long: `Remove the images no reference names (replaced by a newer pull of their
tag, or untagged by "berth rmi --force") and no container uses, then every
stored layer no remaining image uses. Running pulls finish first, and new
ones wait until the prune is done.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, containers, err := a.openStores(&f)
			if err != nil {
				return err
			}
			inUse, err := imagesInUse(containers)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			res, err := s.Prune(ctx, slices.Collect(maps.Keys(inUse))...)
			for _, id := range res.Images {
				fmt.Fprintf(a.stdout, "Deleted image: %s\n", id)
			}
			for _, d := range res.Layers {
				fmt.Fprintf(a.stdout, "Deleted layer: %s\n", d)
			}
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.stdout, "Removed %d images and %d layers (%d blobs), %s\n",
				len(res.Images), len(res.Layers), len(res.Blobs), humanBytes(res.Bytes+res.BlobBytes))
			return err
		},
	}
	a.addImageFlags(prune, &f)
	cmd.AddCommand(prune, a.newImageInspectCmd(), a.newHistoryCmd())
	return cmd
}

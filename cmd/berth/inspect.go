package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/runner/format"
	"github.com/berth-registry/berth/runner/view"
)

// newInspectCmd is `berth inspect`: containers, then images.
func (a *app) newInspectCmd() *cobra.Command {
	var f imageFlags
	var o inspectOptions
	cmd := &cobra.Command{
		Use:   "inspect [--type container|image] [-f FORMAT] [-s] NAME...",
		Short: "Print the low-level information of containers and images as JSON",
		Long: `Print a JSON array with one document per NAME, in docker's shape: a
container (by ID or unique ID prefix) if one has that name, else an image
(by reference or ID). --type looks for one kind only. -f prints each
document through a Go template instead ({{.State.Status}}, {{json .Config}};
docker's template functions). Names not found are reported on stderr as
"Error: No such object: NAME" and the exit code is 1; the others are
printed.`,
		Args: needArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.inspect(cmd.Context(), &f, args, o)
		},
	}
	a.addImageFlags(cmd, &f)
	a.addInspectFlags(cmd, &o)
	cmd.Flags().StringVar(&o.kind, "type", "", "look for a `container` or an `image` only")
	cmd.Flags().BoolVarP(&o.size, "size", "s", false, "add a container's sizes (SizeRw, SizeRootFs)")
	return cmd
}

// newImageInspectCmd is `berth image inspect`.
func (a *app) newImageInspectCmd() *cobra.Command {
	var f imageFlags
	o := inspectOptions{kind: view.KindImage}
	cmd := &cobra.Command{
		Use:   "inspect [-f FORMAT] IMAGE...",
		Short: "Print the low-level information of images as JSON",
		Long: `Print a JSON array with one document per IMAGE (a reference or an ID), in
the shape of docker's image inspect: Id (the config digest), RepoTags,
RepoDigests, Config, RootFS, Size, Os, Architecture, Descriptor (the
manifest). -f prints each through a Go template instead.`,
		Args: needArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.inspect(cmd.Context(), &f, args, o)
		},
	}
	a.addImageFlags(cmd, &f)
	a.addInspectFlags(cmd, &o)
	return cmd
}

// inspectOptions are the flags of the inspect commands.
type inspectOptions struct {
	format string
	kind   string
	size   bool
}

func (a *app) addInspectFlags(cmd *cobra.Command, o *inspectOptions) {
	cmd.Flags().StringVarP(&o.format, "format", "f", "", "print each document through a Go `TEMPLATE` (docker's functions: json, join, split, upper, lower, title, ...)")
}

// inspect prints the documents of names, then the names not found.
func (a *app) inspect(ctx context.Context, f *imageFlags, names []string, o inspectOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	switch o.kind {
	case view.KindAny, view.KindContainer, view.KindImage:
	default:
		return usageError(fmt.Errorf("--type %q: want container or image", o.kind))
	}
	var tmpl *format.Template
	if o.format != "" && o.format != "json" {
		t, err := format.Parse(o.format, "")
		if err != nil {
			return usageError(err)
		}
		tmpl = t
	}
	images, containers, err := a.openStores(f)
	if err != nil {
		return err
	}
	in := view.Inspector{Images: images, Containers: containers}
	docs := []any{}
	var errs []string
	for _, name := range names {
		doc, err := in.Inspect(ctx, name, o.kind, o.size)
		switch {
		case errors.Is(err, view.ErrNotFound):
			what := "object"
			if o.kind != view.KindAny {
				what = o.kind
			}
			errs = append(errs, fmt.Sprintf("Error: No such %s: %s", what, name))
		case err != nil:
			errs = append(errs, fmt.Sprintf("Error: %s: %v", name, err))
		default:
			docs = append(docs, doc)
		}
	}
	if err := view.WriteDocuments(a.stdout, docs, tmpl); err != nil {
		return err
	}
	for _, e := range errs {
		fmt.Fprintln(a.stderr, e)
	}
	if len(errs) > 0 {
		return &exitError{code: exitFailure, err: errors.New("")}
	}
	return nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/runner/archive"
	"github.com/berth-registry/berth/runner/build"
	"github.com/berth-registry/berth/runner/build/dockerfile"
	"github.com/berth-registry/berth/runner/build/output"
	"github.com/berth-registry/berth/runner/build/registrycache"
	"github.com/berth-registry/berth/runner/image"
	"github.com/berth-registry/berth/runner/pull"
	"github.com/berth-registry/berth/runner/push"
)

// buildFlags are `berth build`'s flags.
type buildFlags struct {
	imageFlags
	tags, buildArgs, labels   []string
	secrets                   []string
	file, target, network     string
	progress, iidfile, output string
	cacheFrom, cacheTo        []string
	noCache, pull, push       bool
}

// newBuildCmd is `berth build`: a Dockerfile becomes an image in the
// local store.
func (a *app) newBuildCmd() *cobra.Command {
	o := &buildFlags{}
	cmd := &cobra.Command{
		Use:   "build [flags] CONTEXT",
		Short: "Build an image from a Dockerfile",
		Long: `Build an image from CONTEXT/Dockerfile (or -f FILE) without a daemon: RUN steps run in
berth's own containers over overlay mounts, each filesystem step becomes one layer, and the image
lands in the local image store under each -t (berth run and berth images see it). Steps are cached
in the state directory: a rebuild with nothing changed prints CACHED for each step. CONTEXT "-"
reads the Dockerfile from stdin, with no context. .dockerignore (or FILE.dockerignore next to the
Dockerfile) excludes paths from the context.

--push pushes the image to each -t's registry once built (as berth push does); --pull pulls
every FROM image again. --output writes the result elsewhere too: type=local,dest=DIR (the
filesystem), type=tar, type=oci or type=docker,dest=FILE (- is stdout). --cache-to
type=registry,ref=REF[,mode=min|max] pushes the build's cache as one manifest, which
--cache-from REF reads back on another machine: its steps are then CACHED and their layers
downloaded instead of built. With SOURCE_DATE_EPOCH (environment or --build-arg) the build is
reproducible: image and history times take it, file times are clamped to it.

Exit codes: 0 on success, 2 for bad arguments, 1 otherwise (a failing RUN, a syntax error, a
missing COPY source).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError(errors.New("build needs exactly one CONTEXT (a directory, or - for a Dockerfile on stdin)"))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.build(cmdContext(cmd), o, args[0])
		},
	}
	a.addImageFlags(cmd, &o.imageFlags)
	f := cmd.Flags()
	f.StringArrayVarP(&o.tags, "tag", "t", nil, "name the image `NAME[:TAG]` (repeatable)")
	f.StringVarP(&o.file, "file", "f", "", "the Dockerfile's `PATH` (default CONTEXT/Dockerfile; - is stdin)")
	f.StringArrayVar(&o.buildArgs, "build-arg", nil, "set a build argument `K=V` (K alone takes the environment's value; repeatable)")
	f.StringVar(&o.target, "target", "", "build the `STAGE` named so (and the stages it needs) instead of the last one")
	f.BoolVar(&o.noCache, "no-cache", false, "run every step instead of reusing cached layers")
	f.StringVar(&o.network, "network", "host", "network `MODE` of RUN steps: host or none")
	f.StringArrayVar(&o.labels, "label", nil, "set a label `K=V` on the image (repeatable)")
	f.StringArrayVar(&o.secrets, "secret", nil, "give RUN --mount=type=secret a secret: `id=ID,src=FILE` or id=ID,env=VAR (repeatable)")
	f.StringVar(&o.progress, "progress", "auto", "progress output `TYPE`: auto, plain, or quiet (print only the image ID)")
	f.StringVar(&o.iidfile, "iidfile", "", "write the image ID to `FILE`")
	f.StringVarP(&o.output, "output", "o", "", "also write the result as `type=local|tar|oci|docker,dest=PATH` (- is stdout)")
	f.BoolVar(&o.pull, "pull", false, "pull every FROM image again instead of using the local one")
	f.BoolVar(&o.push, "push", false, "push the image to the registry of each -t once built")
	f.StringArrayVar(&o.cacheFrom, "cache-from", nil, "also look steps up in the registry cache `type=registry,ref=REF` (or REF; repeatable)")
	f.StringArrayVar(&o.cacheTo, "cache-to", nil, "push the build's cache to `type=registry,ref=REF[,mode=min|max]` as one manifest")
	return cmd
}

func (a *app) build(ctx context.Context, o *buildFlags, contextArg string) error {
	ctx, stop := a.signalContext(ctx)
	defer stop()
	if o.network != dockerfile.NetworkHost && o.network != dockerfile.NetworkNone {
		return usageError(fmt.Errorf("--network %q: want host or none", o.network))
	}
	var progress io.Writer
	switch o.progress {
	case "auto", "plain", "tty":
		progress = a.stderr
	case "quiet":
	default:
		return usageError(fmt.Errorf("--progress %q: want auto, plain or quiet", o.progress))
	}
	var out *output.Spec
	if o.output != "" {
		sp, err := output.Parse(o.output)
		if err != nil {
			return usageError(err)
		}
		out = &sp
	}
	if o.push && len(o.tags) == 0 {
		return usageError(errors.New("--push needs at least one -t IMAGE to push to"))
	}
	if o.push && out != nil && out.Dest == output.Stdout {
		return usageError(errors.New("--push prints to stdout: it cannot go with an --output to stdout"))
	}
	args, err := build.KeyValues("--build-arg", o.buildArgs, a.lookupEnv)
	if err != nil {
		return usageError(err)
	}
	epoch, err := build.SourceDateEpoch(args, a.lookupEnv)
	if err != nil {
		return usageError(err)
	}
	labels, err := build.KeyValues("--label", o.labels, nil)
	if err != nil {
		return usageError(err)
	}
	secrets := map[string][]byte{}
	for _, s := range o.secrets {
		id, val, err := build.ParseSecret(s, a.lookupEnv)
		if err != nil {
			return usageError(err)
		}
		secrets[id] = val
	}
	opts := build.Options{
		Secrets:  secrets,
		Convert:  dockerfile.Options{BuildArgs: args, Target: o.target, Network: o.network, Labels: labels},
		NoCache:  o.noCache,
		Tags:     o.tags,
		Progress: progress,
		Warn:     func(msg string) { fmt.Fprintf(a.stderr, "berth: warning: %s\n", msg) },

		SourceDateEpoch: epoch,
	}
	if err := build.LoadDockerfile(contextArg, o.file, os.Stdin, &opts); errors.Is(err, build.ErrInvalid) {
		return usageError(err)
	} else if err != nil {
		return err
	}
	images, err := a.openImageStore(&o.imageFlags)
	if err != nil {
		return err
	}
	var client *pull.Client
	if len(o.cacheFrom)+len(o.cacheTo) > 0 || o.push {
		if client, err = pull.NewClientWithConfig(pull.ClientOptions{}, a.dockerConfigPath()); err != nil {
			return err
		}
	}
	if err := a.buildCaches(o, images, client, &opts); err != nil {
		return err
	}
	opts.Resolve = func(ctx context.Context, ref string) (image.Image, error) {
		if !o.pull {
			img, err := images.Get(ref)
			if !errors.Is(err, image.ErrNotFound) {
				return img, err
			}
		}
		po := image.PullOptions{}
		if progress != nil {
			po.Progress = progressTo(progress)
		}
		return a.pullImage(ctx, images, ref, po)
	}
	img, err := build.Build(ctx, images, opts)
	if err != nil {
		return err
	}
	if o.iidfile != "" {
		if err := os.WriteFile(o.iidfile, []byte(img.ID.String()), 0o644); err != nil {
			return err
		}
	}
	if out != nil {
		name := img.ID.String()
		if len(o.tags) > 0 {
			name = o.tags[0]
		}
		if err := output.Write(ctx, images, img, name, *out, a.stdout, filepath.Join(images.Dir(), "build", "tmp")); err != nil {
			return err
		}
	}
	if progress == nil && (out == nil || out.Dest != output.Stdout) {
		fmt.Fprintln(a.stdout, img.ID)
	}
	if o.push {
		return a.pushRefs(ctx, images, client, img.References, progress == nil, "")
	}
	return nil
}

// buildCaches adds the --cache-from sources and --cache-to targets.
func (a *app) buildCaches(o *buildFlags, images *image.Store, client *pull.Client, opts *build.Options) error {
	for _, s := range o.cacheFrom {
		ref, _, err := registrycache.ParseSpec(s)
		if err != nil {
			return usageError(fmt.Errorf("--cache-from: %w", err))
		}
		src, err := registrycache.NewSource(client, ref, images.DefaultRegistry)
		if err != nil {
			return usageError(fmt.Errorf("--cache-from: %w", err))
		}
		opts.CacheFrom = append(opts.CacheFrom, src)
	}
	for _, s := range o.cacheTo {
		ref, mode, err := registrycache.ParseSpec(s)
		if err != nil {
			return usageError(fmt.Errorf("--cache-to: %w", err))
		}
		if _, err := pull.ParseReference(ref, images.DefaultRegistry); err != nil {
			return usageError(fmt.Errorf("--cache-to: %w", err))
		}
		opts.CacheTo = append(opts.CacheTo, registrycache.Export(client, ref, mode, push.Options{}))
	}
	return nil
}

// signalContext is ctx cancelled on SIGINT or SIGTERM (a.notify).
func (a *app) signalContext(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	sigc := make(chan os.Signal, 1)
	stop := a.notify(sigc)
	go func() {
		select {
		case <-sigc:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, func() { stop(); cancel() }
}

// writeArchive writes the images names name as one archive at dest
// (archive.Save: an OCI image layout and a docker-archive at once),
// through a temporary file renamed into place when complete.
func writeArchive(ctx context.Context, images *image.Store, dest string, names []string) error {
	return output.WriteFile(dest, func(w io.Writer) error { return archive.Save(ctx, images, w, names) })
}

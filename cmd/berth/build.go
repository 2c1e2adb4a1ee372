package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/patternmatcher/ignorefile"
	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/runner/archive"
	"github.com/berth-registry/berth/runner/build"
	"github.com/berth-registry/berth/runner/build/dockerfile"
	"github.com/berth-registry/berth/runner/image"
)

// buildFlags are `berth build`'s flags.
type buildFlags struct {
	imageFlags
	tags, buildArgs, labels   []string
	secrets                   []string
	file, target, network     string
	progress, iidfile, output string
	noCache                   bool
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
	f.StringVar(&o.output, "output", "", "also write the image as `type=oci,dest=FILE` (an OCI image archive)")
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
	dest, err := parseOutput(o.output)
	if err != nil {
		return usageError(err)
	}
	args, err := a.keyValues("--build-arg", o.buildArgs, true)
	if err != nil {
		return err
	}
	labels, err := a.keyValues("--label", o.labels, false)
	if err != nil {
		return err
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
	}
	if err := readDockerfile(contextArg, o.file, &opts); err != nil {
		return err
	}
	images, err := a.openImageStore(&o.imageFlags)
	if err != nil {
		return err
	}
	opts.Resolve = func(ctx context.Context, ref string) (image.Image, error) {
		img, err := images.Get(ref)
		if !errors.Is(err, image.ErrNotFound) {
			return img, err
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
	if dest != "" {
		name := img.ID.String()
		if len(img.References) > 0 {
			name = o.tags[0]
		}
		if err := writeArchive(ctx, images, dest, []string{name}); err != nil {
			return err
		}
	}
	if progress == nil {
		fmt.Fprintln(a.stdout, img.ID)
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

// keyValues parses K=V flags; with fromEnv, a lone K takes the
// environment's value (and is left out when unset).
func (a *app) keyValues(flag string, kvs []string, fromEnv bool) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if k == "" {
			return nil, usageError(fmt.Errorf("%s %q: want K=V", flag, kv))
		}
		if !ok {
			if !fromEnv {
				v = ""
			} else if v, ok = a.lookupEnv(k); !ok {
				continue
			}
		}
		out[k] = v
	}
	return out, nil
}

// parseOutput parses --output: "" or type=oci,dest=FILE.
func parseOutput(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	var typ, dest string
	for _, f := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "type":
			typ = v
		case "dest":
			dest = v
		default:
			return "", fmt.Errorf("--output %q: unknown field %q", s, k)
		}
	}
	if typ != "oci" || dest == "" {
		return "", fmt.Errorf("--output %q: want type=oci,dest=FILE", s)
	}
	return dest, nil
}

// readDockerfile reads the Dockerfile and the context's ignore patterns
// into opts: CONTEXT "-" (or -f -) is stdin, without a context.
func readDockerfile(contextArg, file string, opts *build.Options) error {
	if contextArg == "-" || file == "-" {
		if contextArg != "-" || (file != "" && file != "-") {
			return usageError(errors.New("a Dockerfile from stdin goes with CONTEXT -, and without -f FILE"))
		}
		df, err := io.ReadAll(os.Stdin)
		if err != nil {
			return fmt.Errorf("reading the Dockerfile from stdin: %w", err)
		}
		opts.Dockerfile, opts.DockerfileName = df, "Dockerfile"
		return nil
	}
	st, err := os.Stat(contextArg)
	if err != nil {
		return usageError(fmt.Errorf("build context: %w", err))
	}
	if !st.IsDir() {
		return usageError(fmt.Errorf("build context %s is not a directory", contextArg))
	}
	opts.ContextDir = contextArg
	if file == "" {
		file = filepath.Join(contextArg, "Dockerfile")
	}
	df, err := os.ReadFile(file)
	if err != nil {
		return usageError(fmt.Errorf("reading the Dockerfile: %w", err))
	}
	opts.Dockerfile, opts.DockerfileName = df, filepath.Base(file)
	ignore := file + ".dockerignore"
	if _, err := os.Stat(ignore); err != nil {
		ignore = filepath.Join(contextArg, ".dockerignore")
	}
	f, err := os.Open(ignore)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if opts.Ignore, err = ignorefile.ReadAll(f); err != nil {
		return fmt.Errorf("%s: %w", ignore, err)
	}
	return nil
}

// writeArchive writes the images names name as one archive at dest
// (archive.Save: an OCI image layout and a docker-archive at once),
// through a temporary file renamed into place when complete.
func writeArchive(ctx context.Context, images *image.Store, dest string, names []string) error {
	tmp, err := os.CreateTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", dest, err)
	}
	defer os.Remove(tmp.Name())
	if err := archive.Save(ctx, images, tmp, names); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", dest, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", dest, err)
	}
	return os.Rename(tmp.Name(), dest)
}

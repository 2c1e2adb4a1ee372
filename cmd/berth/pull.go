package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/runner/image"
	"github.com/berth-registry/berth/runner/pull"
)

// envDefaultRegistry names the registry of image references that name none.
const envDefaultRegistry = "BERTH_DEFAULT_REGISTRY"

// imageFlags are the flags every command using the local image store has:
// where the store is and which registry completes short references.
type imageFlags struct {
	state           string
	defaultRegistry string
}

// addImageFlags registers --state and --default-registry on cmd.
func (a *app) addImageFlags(cmd *cobra.Command, f *imageFlags) {
	cmd.Flags().StringVar(&f.state, "state", "", "the local image store's state `DIR` (default "+image.DefaultStateDir+" for root, else $XDG_DATA_HOME/berth)")
	cmd.Flags().StringVar(&f.defaultRegistry, "default-registry", "", "`HOST[:PORT]` of image references that name no registry (default $"+envDefaultRegistry+"; none: such references are refused)")
}

// registry returns the default registry: the flag, else the environment.
func (a *app) defaultRegistry(f *imageFlags) string {
	if f.defaultRegistry != "" {
		return f.defaultRegistry
	}
	v, _ := a.lookupEnv(envDefaultRegistry)
	return v
}

// stateDir returns the state directory: the flag, else DefaultStateDir
// for root, else $XDG_DATA_HOME/berth or ~/.local/share/berth.
func (a *app) stateDir(f *imageFlags) (string, error) {
	if f.state != "" {
		return f.state, nil
	}
	if os.Geteuid() == 0 {
		return image.DefaultStateDir, nil
	}
	if d, ok := a.lookupEnv("XDG_DATA_HOME"); ok && d != "" {
		return filepath.Join(d, "berth"), nil
	}
	home, ok := a.lookupEnv("HOME")
	if !ok || home == "" {
		return "", usageError(errors.New("no state directory: set --state, XDG_DATA_HOME or HOME"))
	}
	return filepath.Join(home, ".local", "share", "berth"), nil
}

// openImageStore opens the image store the flags name.
func (a *app) openImageStore(f *imageFlags) (*image.Store, error) {
	dir, err := a.stateDir(f)
	if err != nil {
		return nil, err
	}
	if reg := a.defaultRegistry(f); reg != "" {
		if _, err := pull.NormalizeRegistry(reg); err != nil {
			return nil, usageError(fmt.Errorf("default registry: %w", err))
		}
	}
	s, err := image.Open(dir)
	if err != nil {
		return nil, err
	}
	s.DefaultRegistry = a.defaultRegistry(f)
	return s, nil
}

// dockerConfigPath is the docker config.json of credentials: in
// $DOCKER_CONFIG when set, else "" (pull's default, ~/.docker).
func (a *app) dockerConfigPath() string {
	if d, ok := a.lookupEnv("DOCKER_CONFIG"); ok && d != "" {
		return filepath.Join(d, "config.json")
	}
	return ""
}

// parsePlatform parses a --platform value; "" is nil (the host's).
func parsePlatform(s string) (*pull.Platform, error) {
	if s == "" {
		return nil, nil
	}
	p, err := pull.ParsePlatform(s)
	if err != nil {
		return nil, usageError(err)
	}
	return &p, nil
}

// progressTo returns the pull progress display for w: redrawn lines on a
// terminal, plain lines otherwise.
func progressTo(w io.Writer) pull.Progress {
	if f, ok := w.(*os.File); ok {
		return pull.NewProgress(f)
	}
	return pull.NewPlainProgress(w)
}

// pullImage pulls ref into s with the command's options, mapping a
// malformed reference to a usage error.
func (a *app) pullImage(ctx context.Context, s *image.Store, ref string, opts image.PullOptions) (image.Image, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if opts.DockerConfig == "" {
		opts.DockerConfig = a.dockerConfigPath()
	}
	img, err := s.Pull(ctx, ref, opts)
	if errors.Is(err, pull.ErrInvalidReference) {
		return image.Image{}, usageError(err)
	}
	return img, err
}

func (a *app) newPullCmd() *cobra.Command {
	var f imageFlags
	var platform string
	var insecure, quiet, allPlatforms bool
	cmd := &cobra.Command{
		Use:   "pull [--platform OS/ARCH[/VARIANT]] [--all-platforms] [--insecure] [--state DIR] IMAGE",
		Short: "Pull an image from a registry into the local image store",
		Long: `Pull IMAGE (host[:port]/name[:tag][@digest]) into the local image store,
for "berth run" and "berth bundle". A name without a registry host is
completed with --default-registry (or $` + envDefaultRegistry + `); the tag
defaults to "latest". Layers already in the store are not downloaded again.

Through a multi-platform index, the image for this host (or --platform) is
pulled; --all-platforms stores every platform's blobs too (not unpacked),
so that "berth push" and "berth save" give out the whole index. An index
without an image for this host is then kept for push and save only.

Credentials come from the docker config.json ($DOCKER_CONFIG/config.json,
else ~/.docker/config.json) that "berth login" writes. Loopback registries
are reached over plain HTTP; --insecure allows plain HTTP, or HTTPS without
certificate verification, for any registry.

Progress goes to stderr; the image ID, and with --quiet only it, to stdout.
The layer store needs root.

Exit codes: 0 on success, 2 for a bad flag or reference, 1 otherwise.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.ExactArgs(1)(cmd, args); err != nil {
				return usageError(err)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := parsePlatform(platform)
			if err != nil {
				return err
			}
			s, err := a.openImageStore(&f)
			if err != nil {
				return err
			}
			opts := image.PullOptions{Platform: p, Insecure: insecure, AllPlatforms: allPlatforms}
			if !quiet {
				opts.Progress = progressTo(a.stderr)
				opts.Stored = func(platform string, d digest.Digest) {
					if platform == "" {
						platform = "(no platform)"
					}
					fmt.Fprintf(a.stderr, "%s: manifest %s stored\n", platform, d)
				}
			}
			img, err := a.pullImage(cmd.Context(), s, args[0], opts)
			if err != nil {
				return err
			}
			name := args[0]
			if r, err := pull.ParseReference(args[0], s.DefaultRegistry); err == nil {
				name = r.String()
			}
			ix, isIndex, err := s.Index(name)
			if err != nil {
				return err
			}
			if quiet {
				if img.ID == "" {
					_, err = fmt.Fprintln(a.stdout, ix.Digest)
					return err
				}
				_, err = fmt.Fprintln(a.stdout, img.ID)
				return err
			}
			if isIndex && allPlatforms {
				fmt.Fprintf(a.stdout, "%s: index %s (%d manifests, every platform stored)\n", name, ix.Digest, len(ix.Manifests))
			}
			if img.ID == "" {
				_, err = fmt.Fprintf(a.stdout, "%s: the index has no image for %s: none can be run here, it can be pushed or saved\n", name, pull.HostPlatform())
				return err
			}
			_, err = fmt.Fprintf(a.stdout, "%s: image %s (%s, manifest %s)\n", name, img.ID, img.Platform, img.ManifestDigest)
			return err
		},
	}
	a.addImageFlags(cmd, &f)
	cmd.Flags().StringVar(&platform, "platform", "", "pull the image for `OS/ARCH[/VARIANT]` from a multi-platform index (default: this host's)")
	cmd.Flags().BoolVar(&allPlatforms, "all-platforms", false, "through a multi-platform index, store every platform (for push and save); run uses this host's")
	cmd.Flags().BoolVar(&insecure, "insecure", false, "allow plain HTTP, or HTTPS without certificate verification, for a registry that is not loopback")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the image ID, no progress")
	return cmd
}

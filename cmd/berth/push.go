package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/runner/image"
	"github.com/berth-registry/berth/runner/pull"
	"github.com/berth-registry/berth/runner/push"
)

func (a *app) newPushCmd() *cobra.Command {
	var f imageFlags
	var allTags, insecure, quiet bool
	var digestFile string
	cmd := &cobra.Command{
		Use:   "push [--all-tags] [--digestfile FILE] [-q] [--insecure] [--state DIR] IMAGE",
		Short: "Push an image of the local image store to a registry",
		Long: `Push IMAGE (host[:port]/name[:tag], completed as "berth pull" completes
references; "berth tag" names an image for another registry or repository)
to its registry. Blobs the repository has are not sent; blobs of images that
came from another repository of the same registry are mounted from there;
the rest are uploaded, large ones in chunks that resume after a broken
connection. The manifest goes last, exactly as it was pulled, so a pulled
and retagged image keeps its digest; a push that fails leaves the tag as it
was. --all-tags pushes every local tag of IMAGE's repository. A
multi-platform index pulled with --all-platforms (or loaded whole) is
pushed whole, its digest kept; one pulled without it pushes as the image
of the one platform it holds.

Credentials come from the docker config.json that "berth login" writes, as
for "berth pull"; loopback registries are reached over plain HTTP, others
with --insecure.

Progress goes to stderr; "TAG: digest: DIGEST size: SIZE" per pushed tag to
stdout, or with --quiet only the pushed reference.

Exit codes: 0 on success, 2 for a bad flag or reference, 1 otherwise.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.ExactArgs(1)(cmd, args); err != nil {
				return usageError(err)
			}
			if allTags && digestFile != "" {
				return usageError(errors.New("--digestfile takes the digest of one tag: it cannot be used with --all-tags"))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.openImageStore(&f)
			if err != nil {
				return err
			}
			ref, err := pull.ParseReference(args[0], s.DefaultRegistry)
			if err != nil {
				return usageError(err)
			}
			refs := []string{ref.String()}
			if allTags {
				if last := args[0][strings.LastIndexByte(args[0], '/')+1:]; strings.ContainsAny(last, ":@") {
					return usageError(fmt.Errorf("%s: --all-tags takes a repository without a tag or digest", args[0]))
				}
				if refs, err = push.Tags(s, ref.Name()); err != nil {
					return err
				}
			}
			client, err := pull.NewClientWithConfig(pull.ClientOptions{Insecure: insecure}, a.dockerConfigPath())
			if err != nil {
				return err
			}
			return a.pushRefs(cmd.Context(), s, client, refs, quiet, digestFile)
		},
	}
	a.addImageFlags(cmd, &f)
	cmd.Flags().BoolVarP(&allTags, "all-tags", "a", false, "push every local tag of the repository")
	cmd.Flags().StringVar(&digestFile, "digestfile", "", "write the digest of the pushed manifest to `FILE`")
	cmd.Flags().BoolVar(&insecure, "insecure", false, "allow plain HTTP, or HTTPS without certificate verification, for a registry that is not loopback")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the pushed reference, no progress")
	return cmd
}

// pushRefs pushes each of refs as berth push does, printing its progress
// to stderr and "TAG: digest: DIGEST size: SIZE" to stdout (with quiet,
// only the reference), and the digest to digestFile when it is not "".
func (a *app) pushRefs(ctx context.Context, s *image.Store, client *pull.Client, refs []string, quiet bool, digestFile string) error {
	var opts push.Options
	if !quiet {
		opts.Progress = pushProgressTo(a.stderr)
	}
	for _, r := range refs {
		res, err := push.Push(ctx, s, client, r, opts)
		if errors.Is(err, image.ErrNotFound) {
			return fmt.Errorf("%w (tag an image with \"berth tag\" first)", err)
		}
		if err != nil {
			return err
		}
		if res.Index != "" {
			fmt.Fprintf(a.stderr, "Only %s of multi-platform index %s is pushed: it is the only platform stored (pull it with --all-platforms to push them all)\n", res.Platform, res.Index)
		}
		if quiet {
			fmt.Fprintln(a.stdout, res.Reference)
		} else {
			name := res.Reference.Tag
			if res.Reference.Digest != "" {
				name = res.Reference.Digest.String()
			}
			fmt.Fprintf(a.stdout, "%s: digest: %s size: %d\n", name, res.Digest, res.Size)
		}
		if digestFile != "" {
			if err := os.WriteFile(digestFile, []byte(res.Digest.String()), 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// pushProgressTo returns the push progress display for w: redrawn lines on
// a terminal, plain lines otherwise.
func pushProgressTo(w io.Writer) push.Progress {
	if f, ok := w.(*os.File); ok {
		return push.NewProgress(f)
	}
	return push.NewPlainProgress(w)
}

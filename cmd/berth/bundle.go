package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/runner/image"
	"github.com/berth-registry/berth/runner/spec"
)

// specFlags are the flags that change the runtime config generated from an
// image, shared by `berth bundle` and `berth run`.
type specFlags struct {
	env        []string
	workdir    string
	user       string
	hostname   string
	network    string
	userns     bool
	volumes    []string
	tty        bool
	memory     string
	cpus       float64
	pids       int64
	readOnly   bool
	entrypoint string
	security   []string
	capAdd     []string
	capDrop    []string
	privileged bool
}

// addSpecFlags registers the runtime config flags on cmd.
func addSpecFlags(cmd *cobra.Command, f *specFlags) {
	fl := cmd.Flags()
	fl.StringArrayVarP(&f.env, "env", "e", nil, "set `NAME=VALUE` in the environment (NAME alone: the host's value); repeatable")
	fl.StringVarP(&f.workdir, "workdir", "w", "", "working `DIR` in the container (absolute; default the image's, else /)")
	fl.StringVarP(&f.user, "user", "u", "", "run as `USER[:GROUP]` (names from the image's /etc/passwd and /etc/group, or numbers)")
	fl.StringVar(&f.hostname, "hostname", "", "the container's `NAME` (default "+spec.DefaultHostname+")")
	fl.StringVar(&f.network, "network", spec.NetworkNone, "`MODE`: none (a new network namespace, loopback only) or host")
	fl.BoolVar(&f.userns, "userns", false, fmt.Sprintf("run in a new user namespace: container ids 0-%d are host ids %d-%d", spec.UserNSSize-1, spec.UserNSHostID, spec.UserNSHostID+spec.UserNSSize-1))
	fl.StringArrayVarP(&f.volumes, "volume", "v", nil, "bind mount `/HOST:/CONTAINER[:ro]`; repeatable")
	fl.BoolVarP(&f.tty, "tty", "t", false, "give the process a terminal")
	fl.StringVarP(&f.memory, "memory", "m", "", "memory limit, `BYTES` with an optional k, m or g suffix (no swap)")
	fl.Float64Var(&f.cpus, "cpus", 0, "limit CPU time to `N` CPUs (1.5: one and a half)")
	fl.Int64Var(&f.pids, "pids-limit", 0, "limit the number of processes to `N`")
	fl.BoolVar(&f.readOnly, "read-only", false, "mount the root filesystem read-only")
	fl.StringVar(&f.entrypoint, "entrypoint", "", "run `PATH` instead of the image's Entrypoint and Cmd (\"\" clears the Entrypoint)")
	fl.StringArrayVar(&f.security, "security-opt", nil, "`OPTION`: seccomp=unconfined, seccomp=PROFILE.json (docker's format), no-new-privileges[=true|false] (repeatable)")
	fl.StringArrayVar(&f.capAdd, "cap-add", nil, "add a capability (`CAP`, with or without CAP_, or ALL; repeatable)")
	fl.StringArrayVar(&f.capDrop, "cap-drop", nil, "drop a capability (`CAP`, with or without CAP_, or ALL; repeatable)")
	fl.BoolVar(&f.privileged, "privileged", false, "give the container full access to the host: every capability and device, no seccomp filter")
}

// options turns the flags, and the command after the image (args), into
// spec.Options. Malformed values are usage errors.
func (f *specFlags) options(cmd *cobra.Command, args []string, lookupEnv func(string) (string, bool)) (spec.Options, error) {
	o := spec.Options{
		Args:       args,
		Env:        f.env,
		LookupEnv:  lookupEnv,
		WorkingDir: f.workdir,
		User:       f.user,
		Hostname:   f.hostname,
		Network:    f.network,
		UserNS:     f.userns,
		Terminal:   f.tty,
		CPUs:       f.cpus,
		PidsLimit:  f.pids,
		ReadOnly:   f.readOnly,
	}
	if cmd.Flags().Changed("entrypoint") {
		o.Entrypoint = []string{}
		if f.entrypoint != "" {
			o.Entrypoint = []string{f.entrypoint}
		}
	}
	if f.memory != "" {
		n, err := parseBytes(f.memory)
		if err != nil {
			return spec.Options{}, usageError(fmt.Errorf("--memory: %w", err))
		}
		o.Memory = n
	}
	for _, v := range f.volumes {
		m, err := spec.ParseMount(v)
		if err != nil {
			return spec.Options{}, usageError(fmt.Errorf("--volume: %w", err))
		}
		o.Mounts = append(o.Mounts, m)
	}
	return o, nil
}

func (a *app) newBundleCmd() *cobra.Command {
	var f imageFlags
	var sf specFlags
	var platform string
	var insecure bool
	cmd := &cobra.Command{
		Use:   "bundle [--platform OS/ARCH[/VARIANT]] [flags] IMAGE DIR [-- CMD [ARG...]]",
		Short: "Write an OCI runtime bundle of an image: DIR/config.json and DIR/rootfs",
		Long: `Write an OCI runtime bundle of IMAGE into DIR (created; it must not exist or
be empty): DIR/rootfs, a plain copy of the image's layers, and
DIR/config.json, the runtime config "berth run" would use, with root.path
"rootfs". Any OCI runtime runs it, as in "runc run -b DIR NAME".

IMAGE is looked up in the local image store (a reference or an image ID)
and pulled first when it is not there, or not for --platform. CMD after
"--" replaces the image's Cmd. The other flags are those of "berth run".

Exit codes: 0 on success, 2 for a bad flag, reference or option, 1 otherwise.`,
		Args: func(cmd *cobra.Command, args []string) error {
			before := cmd.ArgsLenAtDash() // -1: no "--"
			if before < 0 {
				before = len(args)
			}
			if before != 2 {
				return usageError(fmt.Errorf("want IMAGE DIR [-- CMD [ARG...]], got %d arguments before \"--\"", before))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := parsePlatform(platform)
			if err != nil {
				return err
			}
			opts, err := sf.options(cmd, args[2:], a.lookupEnv)
			if err == nil {
				opts.Security, err = a.securityFlags(sf.security, sf.capAdd, sf.capDrop, sf.privileged)
			}
			if err != nil {
				return err
			}
			opts.Warn = func(msg string) { fmt.Fprintf(a.stderr, "berth: warning: %s\n", msg) }
			s, err := a.openImageStore(&f)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			img, err := s.Get(args[0])
			if errors.Is(err, image.ErrNotFound) || err == nil && p != nil && img.Platform != p.Normalize() {
				img, err = a.pullImage(ctx, s, args[0], image.PullOptions{Platform: p, Insecure: insecure, Progress: progressTo(a.stderr)})
			}
			if err != nil {
				return err
			}
			if err := writeBundle(ctx, s, img, args[1], opts); err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.stdout, "bundle of %s written to %s\n", img.ID, args[1])
			return err
		},
	}
	a.addImageFlags(cmd, &f)
	addSpecFlags(cmd, &sf)
	cmd.Flags().StringVar(&platform, "platform", "", "use the image for `OS/ARCH[/VARIANT]` (default: this host's)")
	cmd.Flags().BoolVar(&insecure, "insecure", false, "when pulling: allow plain HTTP, or HTTPS without certificate verification")
	return cmd
}

// writeBundle writes the bundle of img into dir: rootfs/ flattened from the
// layers, then config.json. On failure it removes what it made.
func writeBundle(ctx context.Context, s *image.Store, img image.Image, dir string, opts spec.Options) (err error) {
	created := false
	ents, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("bundle: %w", err)
		}
		created = true
	case err != nil:
		return fmt.Errorf("bundle: %w", err)
	case len(ents) > 0:
		return usageError(fmt.Errorf("bundle: %s is not empty", dir))
	}
	rootfs := filepath.Join(dir, "rootfs")
	defer func() {
		if err == nil {
			return
		}
		if created {
			os.RemoveAll(dir)
		} else {
			os.RemoveAll(rootfs)
			os.Remove(filepath.Join(dir, "config.json"))
		}
	}()
	if err := s.Flatten(ctx, img, rootfs); err != nil {
		return err
	}
	if opts.UserNS {
		if err := shiftOwners(ctx, rootfs, spec.UserNSHostID, spec.UserNSSize); err != nil {
			return err
		}
	}
	cfg, err := spec.Generate(img.Config, rootfs, opts)
	if err != nil {
		if errors.Is(err, spec.ErrInvalid) {
			return usageError(err)
		}
		return err
	}
	cfg.Root.Path = "rootfs"
	b, err := json.MarshalIndent(cfg, "", "\t")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	return nil
}

// shiftOwners adds base to every owner and group id below size in the tree
// at root, so that the container's ids, mapped to base and up by a user
// namespace, own its files as the image says. Modes are set again after
// the change, which clears setuid and setgid bits; file capabilities
// (security.capability) are dropped by the kernel. Symlinks are changed
// themselves, never followed.
func shiftOwners(ctx context.Context, root string, base, size uint32) error {
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no owner information", p)
		}
		uid, gid := st.Uid, st.Gid
		if uid < size {
			uid += base
		}
		if gid < size {
			gid += base
		}
		if err := os.Lchown(p, int(uid), int(gid)); err != nil {
			return err
		}
		if info.Mode()&fs.ModeSymlink == 0 {
			return syscall.Chmod(p, st.Mode&0o7777)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("bundle: shifting owners for the user namespace: %w", err)
	}
	return nil
}

package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-registry/berth/runner/container"
	"github.com/berth-registry/berth/runner/image"
	"github.com/berth-registry/berth/runner/layers"
	"github.com/berth-registry/berth/runner/network"
	"github.com/berth-registry/berth/runner/seccomp"
	"github.com/berth-registry/berth/runner/spec"
)

// CreateOptions say how Create makes a container.
type CreateOptions struct {
	// Ref is the image as the user named it (State.Image).
	Ref string
	// Name is the container's name (generated when empty; see
	// container.Store.New).
	Name string
	// Spec are the caller's changes to the image config (its flags).
	Spec spec.Options
	// AutoRemove removes the container when it exits (--rm).
	AutoRemove bool
	// Restart is the restart policy (--restart; see ParseRestartPolicy),
	// kept by the container's supervisor.
	Restart container.RestartPolicy
	// Health are the --health-* flags, applied to the image's HEALTHCHECK
	// (see ResolveHealthcheck).
	Health HealthOptions
	// Network is the container's network: its mode and published ports.
	// A Mode of "" takes Spec.Network's (none or host).
	Network network.Settings
	// PublishAll publishes the image's exposed ports on free host ports
	// (-P).
	PublishAll bool
	// KeepMounted leaves the rootfs mounted for a run in this process
	// (RunHeld with the returned Fresh); else it is unmounted after the
	// spec is generated.
	KeepMounted bool
}

// Fresh is a container this process has just created, for RunHeld: its
// spec and state (saved when it starts), whether its rootfs is mounted,
// and the result of saving its config.json, which is written while the
// container starts.
type Fresh struct {
	spec      *specs.Spec
	state     container.State
	mounted   bool
	specSaved <-chan error
}

// Create makes a container of img with its config.json. The rootfs is
// mounted while the spec is generated (it reads the image's /etc/passwd).
// With o.KeepMounted it returns a Fresh for RunHeld (the config is then
// written while the container starts); else the container is saved as
// created and Fresh is nil. An invalid option is an error wrapping
// spec.ErrInvalid or ErrInvalidOption (--restart with --rm, a bad
// --health-* option).
func Create(ctx context.Context, images *image.Store, containers *container.Store, img image.Image, o CreateOptions) (*container.Container, *Fresh, error) {
	if o.AutoRemove && o.Restart.Name != "" && o.Restart.Name != RestartNo {
		return nil, nil, fmt.Errorf("%w: conflicting options: --restart %s and --rm", ErrInvalidOption, o.Restart.Name)
	}
	health, err := ResolveHealthcheck(img.RawConfig, o.Health)
	if err != nil {
		return nil, nil, err
	}
	st := container.State{Image: o.Ref, ImageID: img.ID.String(), AutoRemove: o.AutoRemove,
		Created: time.Now().UTC(), Status: container.StatusCreated, Name: o.Name,
		RestartPolicy: o.Restart, Healthcheck: health}
	c, err := containers.New(st)
	if err != nil {
		return nil, nil, err
	}
	st.ID, st.Name = c.ID, c.Name()
	fail := func(err error) (*container.Container, *Fresh, error) {
		c.Unmount()
		c.Remove()
		return nil, nil, err
	}
	set := o.Network
	if set.Mode == "" {
		set.Mode = network.ModeNone
		if o.Spec.Network == spec.NetworkHost {
			set.Mode = network.ModeHost
		}
	}
	if o.PublishAll {
		if err := addExposed(&set, img.Config.Config.ExposedPorts); err != nil {
			return fail(err)
		}
	}
	if err := checkSettings(stateDirOf(c), set); err != nil {
		return fail(err)
	}
	o.Spec.Network = specNetwork(set.Mode)
	if o.Spec.Hostname == "" && o.Spec.Network != spec.NetworkHost {
		o.Spec.Hostname = defaultHostname(c.ID) // as docker names it
	}
	if set.Mode != network.ModeNone {
		if err := network.SaveSettings(c.Dir, set); err != nil {
			return fail(err)
		}
	}
	var uids, gids []specs.LinuxIDMapping
	if o.Spec.UserNS {
		uids, gids = spec.UserNSMappings(), spec.UserNSMappings()
	}
	mounted, err := MountRootfs(ctx, images, img, c, o.KeepMounted && o.AutoRemove, uids, gids, o.Spec.Warn)
	if err != nil {
		return fail(err)
	}
	s, err := spec.Generate(img.Config, c.Rootfs(), o.Spec)
	if err != nil {
		return fail(err)
	}
	if mounted && !o.KeepMounted {
		if err := c.Unmount(); err != nil {
			return fail(err)
		}
	}
	st.Command = s.Process.Args
	st.Flattened = !mounted
	if o.KeepMounted {
		// Run in this process: the config is written while the container
		// starts (off the start's path), the state when it runs.
		saved := make(chan error, 1)
		go func() { saved <- c.SaveSpec(s) }()
		return c, &Fresh{spec: s, state: st, mounted: mounted, specSaved: saved}, nil
	}
	// Compiled now, to fail here and to fill the cache its starts read.
	if _, err := SeccompFilter(c, s); err != nil {
		return fail(err)
	}
	if err := c.SaveSpec(s); err != nil {
		return fail(err)
	}
	if err := c.SaveState(st); err != nil {
		return fail(err)
	}
	return c, nil, nil
}

// defaultHostname is a container's hostname when none is given: the first
// 12 digits of its ID, as docker and podman set it.
func defaultHostname(id string) string { return id[:min(12, len(id))] }

// MountRootfs assembles c's rootfs from img (see image.Store.Rootfs; once
// for a --rm run). With user namespace mappings, the layers are mounted
// idmapped through a namespace with those mappings, so that the container
// sees its image's owners; where the kernel cannot, it mounts them as they
// are, and warn (if not nil) says that the container sees them owned by
// nobody.
func MountRootfs(ctx context.Context, images *image.Store, img image.Image, c *container.Container, once bool, uids, gids []specs.LinuxIDMapping, warn func(string)) (bool, error) {
	opts := image.RootfsOptions{Once: once}
	if len(uids) > 0 && len(gids) > 0 {
		ns, err := container.UserNamespace(uids, gids)
		if err != nil {
			return false, err
		}
		defer ns.Close()
		opts.UserNS = ns
	}
	mounted, err := images.Rootfs(ctx, img, c.Upper(), c.Work(), c.Rootfs(), opts)
	if errors.Is(err, layers.ErrIDMapUnsupported) {
		if warn != nil {
			warn(fmt.Sprintf("the image's files are owned by nobody in the user namespace: %v", err))
		}
		opts.UserNS = nil
		mounted, err = images.Rootfs(ctx, img, c.Upper(), c.Work(), c.Rootfs(), opts)
	}
	return mounted, err
}

// seccompCache is the cache of compiled seccomp filters of the state
// directory that holds c: <state>/seccomp, beside <state>/containers/<id>.
func seccompCache(c *container.Container) seccomp.Cache {
	return seccomp.Cache{Dir: filepath.Join(filepath.Dir(filepath.Dir(c.Dir)), "seccomp")}
}

// SeccompFilter is the compiled filter of s, c's spec (nil when it has
// none), from the state directory's cache: what container.WithSeccomp
// takes, and what berth exec installs too.
func SeccompFilter(c *container.Container, s *specs.Spec) (*seccomp.Program, error) {
	if s.Linux == nil || s.Linux.Seccomp == nil {
		return nil, nil
	}
	p, err := seccompCache(c).Compile(s.Linux.Seccomp, runtime.GOARCH)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", c.ID, err)
	}
	return p, nil
}

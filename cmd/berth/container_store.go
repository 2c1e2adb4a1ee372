package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/berth-registry/berth/runner/container"
	"github.com/berth-registry/berth/runner/image"
	"github.com/berth-registry/berth/runner/lifecycle"
	"github.com/berth-registry/berth/runner/network"
	"github.com/berth-registry/berth/runner/spec"
)

// containerOptions are the flags of `berth run` and `berth create`.
type containerOptions struct {
	imageFlags
	name        string
	restart     string
	health      lifecycle.HealthOptions
	rm          bool
	detach      bool
	interactive bool
	tty         bool
	env         []string
	workdir     string
	user        string
	entrypoint  string
	volumes     []string
	network     string
	publish     []string
	publishAll  bool
	hostname    string
	memory      string
	cpus        float64
	pidsLimit   int64
	userns      bool
	readOnly    bool
	platform    string
	insecure    bool
	securityOpt []string
	capAdd      []string
	capDrop     []string
	privileged  bool
}

// security turns the confinement flags into spec.Security; a malformed
// option or unknown capability is a usage error naming it. --privileged
// warns on stderr.
func (a *app) security(o *containerOptions) (spec.Security, error) {
	return a.securityFlags(o.securityOpt, o.capAdd, o.capDrop, o.privileged)
}

// securityFlags is security for the flags' values (of run, create and
// bundle).
func (a *app) securityFlags(securityOpt, capAdd, capDrop []string, privileged bool) (spec.Security, error) {
	sec := spec.Security{CapAdd: capAdd, CapDrop: capDrop, Privileged: privileged}
	for _, opt := range securityOpt {
		if err := spec.ParseSecurityOpt(&sec, opt, os.ReadFile); err != nil {
			return sec, usageError(fmt.Errorf("--security-opt: %w", err))
		}
	}
	for _, c := range append(slices.Clone(capAdd), capDrop...) {
		if _, err := spec.NormalizeCapability(c); err != nil {
			return sec, usageError(err)
		}
	}
	if privileged {
		fmt.Fprintln(a.stderr, "berth: warning: --privileged gives the container full access to the host: "+
			"every capability and device, no seccomp filter, writable /sys")
		devs, err := spec.HostDevices()
		if err != nil {
			return sec, err
		}
		sec.Devices = devs
	}
	return sec, nil
}

// openStores opens the image and container stores of the state directory.
func (a *app) openStores(f *imageFlags) (*image.Store, *container.Store, error) {
	dir, err := a.stateDir(f)
	if err != nil {
		return nil, nil, err
	}
	images, err := a.openImageStore(f)
	if err != nil {
		return nil, nil, err
	}
	containers, err := container.OpenStore(dir)
	if err != nil {
		return nil, nil, err
	}
	return images, containers, nil
}

// resolveImage returns the local image ref names, pulling it when it is
// missing or when a platform is asked for.
func (a *app) resolveImage(ctx context.Context, images *image.Store, ref string, o *containerOptions) (image.Image, error) {
	platform, err := parsePlatform(o.platform)
	if err != nil {
		return image.Image{}, err
	}
	if platform == nil {
		img, err := images.Get(ref)
		if err == nil {
			return img, nil
		}
		if !errors.Is(err, image.ErrNotFound) {
			return image.Image{}, err
		}
	}
	return a.pullImage(ctx, images, ref, image.PullOptions{Platform: platform, Insecure: o.insecure, Progress: progressTo(a.stderr)})
}

// createContainer makes a container of ref (pulled when missing; see
// lifecycle.Create): with keepMounted, for a run in this process, its
// rootfs stays mounted and the returned Fresh is for lifecycle.RunHeld.
func (a *app) createContainer(ctx context.Context, ref string, args []string, o *containerOptions, keepMounted bool) (*container.Container, *image.Store, *lifecycle.Fresh, error) {
	mem, err := parseBytes(o.memory)
	if err != nil {
		return nil, nil, nil, usageError(fmt.Errorf("--memory: %w", err))
	}
	var mounts []spec.Mount
	for _, v := range o.volumes {
		m, err := spec.ParseMount(v)
		if err != nil {
			return nil, nil, nil, usageError(err)
		}
		mounts = append(mounts, m)
	}
	opts := spec.Options{
		Args: args, Env: o.env, LookupEnv: a.lookupEnv, WorkingDir: o.workdir, User: o.user,
		Hostname: o.hostname, UserNS: o.userns, Mounts: mounts,
		Terminal: o.tty, Memory: mem, CPUs: o.cpus, PidsLimit: o.pidsLimit, ReadOnly: o.readOnly,
		Warn: func(msg string) { fmt.Fprintf(a.stderr, "berth: warning: %s\n", msg) },
	}
	netSet := network.Settings{Mode: o.network}
	if netSet.Mode == "" || netSet.Mode == "default" {
		netSet.Mode = network.ModeBridge
	}
	for _, p := range o.publish {
		ports, err := network.ParsePublish(p)
		if err != nil {
			return nil, nil, nil, usageError(err)
		}
		netSet.Ports = append(netSet.Ports, ports...)
	}
	if opts.Security, err = a.security(o); err != nil {
		return nil, nil, nil, err
	}
	if o.entrypoint != "" {
		opts.Entrypoint = []string{o.entrypoint}
	}
	restart, err := lifecycle.ParseRestartPolicy(o.restart)
	if err != nil {
		return nil, nil, nil, usageError(err)
	}
	images, containers, err := a.openStores(&o.imageFlags)
	if err != nil {
		return nil, nil, nil, err
	}
	img, err := a.resolveImage(ctx, images, ref, o)
	if err != nil {
		return nil, nil, nil, err
	}
	c, f, err := lifecycle.Create(ctx, images, containers, img, lifecycle.CreateOptions{
		Ref: ref, Name: o.name, Spec: opts, AutoRemove: o.rm, KeepMounted: keepMounted, Restart: restart, Health: o.health,
		Network: netSet, PublishAll: o.publishAll})
	if errors.Is(err, spec.ErrInvalid) || errors.Is(err, container.ErrInvalidName) || errors.Is(err, lifecycle.ErrInvalidOption) ||
		errors.Is(err, network.ErrInvalid) {
		err = usageError(err)
	}
	if err != nil {
		return nil, nil, nil, err
	}
	return c, images, f, nil
}

// containerExit is the exit code of a container as berth's own: berth
// prints nothing for it.
func containerExit(code int) error {
	if code == 0 {
		return nil
	}
	return &exitError{code: code, err: errors.New("")}
}

// parseBytes parses a size as docker does: a number with an optional
// b, k, m or g suffix (powers of 1024); "" is 0.
func parseBytes(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimSuffix(t, "b")
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k':
			mult, t = 1<<10, t[:n-1]
		case 'm':
			mult, t = 1<<20, t[:n-1]
		case 'g':
			mult, t = 1<<30, t[:n-1]
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("bad size %q (want e.g. 64m)", s)
	}
	return int64(v * float64(mult)), nil
}

// copyFile copies the file at name to w.
func copyFile(w io.Writer, name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

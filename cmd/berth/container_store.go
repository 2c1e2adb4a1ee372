package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-registry/berth/runner/container"
	"github.com/berth-registry/berth/runner/image"
	"github.com/berth-registry/berth/runner/layers"
	"github.com/berth-registry/berth/runner/seccomp"
	"github.com/berth-registry/berth/runner/spec"
)

// containerOptions are the flags of `berth run` and `berth create`.
type containerOptions struct {
	imageFlags
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

// seccompCache is the cache of compiled seccomp filters of the state
// directory that holds c: <state>/seccomp, beside <state>/containers/<id>.
func seccompCache(c *container.Container) seccomp.Cache {
	return seccomp.Cache{Dir: filepath.Join(filepath.Dir(filepath.Dir(c.Dir)), "seccomp")}
}

// seccompFilter is the compiled filter of s (nil when it has none), from
// the state directory's cache.
func seccompFilter(c *container.Container, s *specs.Spec) (*seccomp.Program, error) {
	if s.Linux == nil || s.Linux.Seccomp == nil {
		return nil, nil
	}
	p, err := seccompCache(c).Compile(s.Linux.Seccomp, runtime.GOARCH)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", c.ID, err)
	}
	return p, nil
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

// fresh is a container this process has just created, for runHeld: its
// spec and state (saved when it starts), whether its rootfs is mounted, and
// the result of saving its config.json, which is written while the
// container starts.
type fresh struct {
	spec      *specs.Spec
	state     container.State
	mounted   bool
	specSaved <-chan error
}

// createContainer makes a container of ref with its config.json. The
// rootfs is mounted while the spec is generated (it reads the image's
// /etc/passwd); with keepMounted it stays mounted for a run in this process
// (f.mounted says so), else it is unmounted. It returns the image store it
// opened and, with keepMounted, what runHeld needs to run the container
// without reading it back.
func (a *app) createContainer(ctx context.Context, ref string, args []string, o *containerOptions, keepMounted bool) (*container.Container, *image.Store, *fresh, error) {
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
		Hostname: o.hostname, Network: o.network, UserNS: o.userns, Mounts: mounts,
		Terminal: o.tty, Memory: mem, CPUs: o.cpus, PidsLimit: o.pidsLimit, ReadOnly: o.readOnly,
		Warn: func(msg string) { fmt.Fprintf(a.stderr, "berth: warning: %s\n", msg) },
	}
	if opts.Security, err = a.security(o); err != nil {
		return nil, nil, nil, err
	}
	if o.entrypoint != "" {
		opts.Entrypoint = []string{o.entrypoint}
	}
	images, containers, err := a.openStores(&o.imageFlags)
	if err != nil {
		return nil, nil, nil, err
	}
	img, err := a.resolveImage(ctx, images, ref, o)
	if err != nil {
		return nil, nil, nil, err
	}
	st := container.State{Image: ref, ImageID: img.ID.String(), AutoRemove: o.rm,
		Created: time.Now().UTC(), Status: container.StatusCreated}
	c, err := containers.New(st)
	if err != nil {
		return nil, nil, nil, err
	}
	st.ID = c.ID
	fail := func(err error) (*container.Container, *image.Store, *fresh, error) {
		c.Unmount()
		c.Remove()
		return nil, nil, nil, err
	}
	var uids, gids []specs.LinuxIDMapping
	if o.userns {
		uids, gids = spec.UserNSMappings(), spec.UserNSMappings()
	}
	mounted, err := mountRootfs(ctx, images, img, c, keepMounted && o.rm, uids, gids, opts.Warn)
	if err != nil {
		return fail(err)
	}
	s, err := spec.Generate(img.Config, c.Rootfs(), opts)
	if err != nil {
		if errors.Is(err, spec.ErrInvalid) {
			err = usageError(err)
		}
		return fail(err)
	}
	if mounted && !keepMounted {
		if err := c.Unmount(); err != nil {
			return fail(err)
		}
	}
	st.Command = s.Process.Args
	st.Flattened = !mounted
	if keepMounted {
		// Run in this process: the config is written while the container
		// starts (off the start's path), the state when it runs.
		saved := make(chan error, 1)
		go func() { saved <- c.SaveSpec(s) }()
		return c, images, &fresh{spec: s, state: st, mounted: mounted, specSaved: saved}, nil
	}
	// Compiled now, to fail here and to fill the cache its starts read.
	if _, err := seccompFilter(c, s); err != nil {
		return fail(err)
	}
	if err := c.SaveSpec(s); err != nil {
		return fail(err)
	}
	if err := c.SaveState(st); err != nil {
		return fail(err)
	}
	return c, images, nil, nil
}

// mountRootfs assembles c's rootfs from img (see image.Store.Rootfs; once
// for a --rm run). With user namespace mappings, the layers are mounted
// idmapped through a namespace with those mappings, so that the container
// sees its image's owners; where the kernel cannot, it mounts them as they
// are, and warn (if not nil) says that the container sees them owned by
// nobody.
func mountRootfs(ctx context.Context, images *image.Store, img image.Image, c *container.Container, once bool, uids, gids []specs.LinuxIDMapping, warn func(string)) (bool, error) {
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

// runHeld runs the container c to its end while holding it: mounts its
// rootfs (unless f says this process has it mounted), records the running
// state, runs, unmounts, and records the exit or, with AutoRemove, removes
// the container. started is called once the process runs (or with the
// error when it did not start). f, when not nil, is the container as this
// process just created it; else its spec and state are read.
func runHeld(ctx context.Context, images *image.Store, c *container.Container, stdio container.Stdio, started func(error), f *fresh) (int, error) {
	if started == nil {
		started = func(error) {}
	}
	release, err := c.Hold()
	if err != nil {
		started(err)
		return 125, err
	}
	defer release()
	var st container.State
	var s *specs.Spec
	mounted := false
	if f != nil {
		st, s, mounted = f.state, f.spec, f.mounted
	} else {
		if st, err = c.State(); err == nil {
			s, err = c.Spec()
		}
		if err != nil {
			started(err)
			return 125, err
		}
	}
	code, err := runMounted(ctx, images, c, &st, s, stdio, started, mounted)
	if f != nil {
		if serr := <-f.specSaved; serr != nil && err == nil {
			err = fmt.Errorf("container %s: saving its config: %w", c.ID, serr)
		}
	}
	if st.AutoRemove {
		rerr := c.RemoveHeld()
		if rerr == nil {
			return code, err
		}
		if err == nil {
			err = rerr
		}
	}
	if serr := c.SaveState(st); serr != nil && err == nil {
		err = serr
	}
	return code, err
}

// runMounted mounts c's rootfs unless mounted (or flattened), runs the
// container, unmounts and fills in st: running, then exited (saving only
// the running state).
func runMounted(ctx context.Context, images *image.Store, c *container.Container, st *container.State, s *specs.Spec, stdio container.Stdio, started func(error), mounted bool) (int, error) {
	if !st.Flattened && mounted {
		defer c.Unmount()
	}
	if !st.Flattened && !mounted {
		img, err := images.Get(st.ImageID)
		if err != nil {
			started(err)
			return 125, fmt.Errorf("container %s: its image: %w", c.ID, err)
		}
		c.Unmount()
		var uids, gids []specs.LinuxIDMapping
		if s.Linux != nil {
			uids, gids = s.Linux.UIDMappings, s.Linux.GIDMappings
		}
		if _, err := mountRootfs(ctx, images, img, c, st.AutoRemove, uids, gids, nil); err != nil {
			started(err)
			return 125, err
		}
		defer c.Unmount()
	}
	if err := c.Admit(s); err != nil {
		started(err)
		return 125, err
	}
	filter, err := seccompFilter(c, s)
	if err != nil {
		started(err)
		return 125, err
	}
	var proc *container.Process
	code, err := container.RunWith(ctx, c.ID, s, stdio, func(p *container.Process) {
		proc = p
		st.Status, st.Pid, st.Holder = container.StatusRunning, p.Pid(), os.Getpid()
		st.Started, st.Error = time.Now().UTC(), ""
		c.SaveState(*st)
		started(nil)
	}, container.WithSeccomp(filter))
	if proc == nil {
		started(err)
	}
	st.Status, st.Pid, st.Holder = container.StatusExited, 0, 0
	st.ExitCode, st.Finished = code, time.Now().UTC()
	if proc != nil {
		st.OOMKilled = proc.OOMKilled()
	}
	if err != nil {
		st.Error = err.Error()
	}
	return code, err
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

// parseSignal parses "SIGTERM", "TERM" or "15".
func parseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	name := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	for i := 1; i < 32; i++ {
		if strings.TrimPrefix(strings.ToUpper(unix.SignalName(syscall.Signal(i))), "SIG") == name {
			return syscall.Signal(i), nil
		}
	}
	return 0, fmt.Errorf("unknown signal %q", s)
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

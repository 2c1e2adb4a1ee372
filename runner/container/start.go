package container

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-registry/berth/runner/seccomp"
)

// Stdio are the container process's standard streams. With a terminal
// (Spec.Process.Terminal) the process gets a pty created inside the
// container: In is copied to it and its output to Out (Err is unused).
// *os.File streams are handed to the process as they are; other readers
// and writers are copied through pipes.
type Stdio struct {
	In  io.Reader // nil: /dev/null
	Out io.Writer // nil: /dev/null
	Err io.Writer // nil: /dev/null
}

// Process is a started container: its init has exec'd the spec's process,
// which is PID 1 of the container's pid namespace.
type Process struct {
	ID  string
	cmd *exec.Cmd
	cg  Cgroup // nil when the container runs without a cgroup

	pty    *os.File       // the pty master, with a terminal
	copied sync.WaitGroup // the pty output copy

	created func(pid int) error // Hooks.Created

	waitOnce sync.Once
	code     int
	waitErr  error
	oom      bool
}

// Start starts the container spec describes, with the cgroup
// spec.Linux.CgroupsPath (default "berth/<id>"; a random id when id is "").
// It returns once the process was executed, or the init's failure as an
// *InitError. ctx bounds the start only; stop the container with Signal.
// The caller must call Wait.
//
// When spec.Linux.Seccomp is set, its filter is installed right before the
// process is executed: compiled here (about a millisecond for docker's
// default profile) unless WithSeccomp gives the compiled program.
func Start(ctx context.Context, id string, spec *specs.Spec, stdio Stdio, opts ...StartOption) (*Process, error) {
	return start(ctx, id, spec, stdio, nil, nil, NewCgroup, opts...)
}

// A StartOption changes how Start, Run and RunWith start a container.
type StartOption func(*startOptions)

type startOptions struct {
	seccomp *seccomp.Program
}

// WithSeccomp gives the compiled form of the spec's Linux.Seccomp (see
// seccomp.Cache), which Start then does not compile; nil changes nothing.
func WithSeccomp(p *seccomp.Program) StartOption {
	return func(o *startOptions) { o.seccomp = p }
}

// seccompProgram is the filter the container gets: the one opts give, or
// spec's compiled, or nil without one.
func seccompProgram(spec *specs.Spec, opts []StartOption) (*seccomp.Program, error) {
	var o startOptions
	for _, opt := range opts {
		opt(&o)
	}
	if spec.Linux == nil || spec.Linux.Seccomp == nil {
		return nil, nil
	}
	if o.seccomp != nil {
		return o.seccomp, nil
	}
	p, err := seccomp.Compile(spec.Linux.Seccomp, runtime.GOARCH)
	if err != nil {
		return nil, fmt.Errorf("container: %w", err)
	}
	return p, nil
}

// start is Start; ready, when not nil, is waited for before the init may
// go on to exec the container's process, and created (see Hooks) is
// called then. newCgroup makes the cgroup (NewCgroup, but for tests).
func start(ctx context.Context, id string, spec *specs.Spec, stdio Stdio, ready <-chan struct{}, created func(int) error,
	newCgroup func(string, *specs.LinuxResources) (Cgroup, error), opts ...StartOption) (*Process, error) {
	if id == "" {
		id = NewID()
	}
	cloneFlags, userns, cgroupns, err := checkSpec(spec)
	if err != nil {
		return nil, err
	}
	filter, err := seccompProgram(spec, opts)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var res *specs.LinuxResources
	cgPath := "berth/" + id
	if spec.Linux != nil {
		res = spec.Linux.Resources
		if spec.Linux.CgroupsPath != "" {
			cgPath = spec.Linux.CgroupsPath
		}
	}
	cg, err := newCgroup(cgPath, res)
	if err != nil {
		if hasLimits(res) {
			return nil, err
		}
		cg = nil // no limits asked for: run without a cgroup where none can be made
	}
	if res != nil && len(res.Devices) > 0 && (cg == nil || !cg.DeviceRules()) {
		spec = withoutDevices(spec)
	}
	if userns {
		// The namespace's root may not create anything in a rootfs that
		// host root owns: make the mount points and cwd from here.
		if err := makeMountpoints(spec); err != nil {
			if cg != nil {
				cg.Destroy()
			}
			return nil, err
		}
	}
	p := &Process{ID: id, cg: cg, created: created}
	if err := p.start(spec, stdio, cloneFlags, userns, cgroupns && cg != nil, ready, filter); err != nil {
		if cg != nil {
			cg.Destroy()
		}
		return nil, err
	}
	return p, nil
}

// checkSpec validates what Start needs and returns the clone flags.
func checkSpec(spec *specs.Spec) (flags uintptr, userns, cgroupns bool, err error) {
	switch {
	case spec == nil:
		return 0, false, false, fmt.Errorf("%w: nil spec", ErrInvalidSpec)
	case spec.Process == nil || len(spec.Process.Args) == 0:
		return 0, false, false, fmt.Errorf("%w: no process args", ErrInvalidSpec)
	case spec.Root == nil || !filepath.IsAbs(spec.Root.Path):
		return 0, false, false, fmt.Errorf("%w: root.path must be an absolute path", ErrInvalidSpec)
	}
	if st, err := os.Stat(spec.Root.Path); err != nil || !st.IsDir() {
		return 0, false, false, fmt.Errorf("%w: root.path %s is not a directory", ErrInvalidSpec, spec.Root.Path)
	}
	if spec.Linux == nil {
		return 0, false, false, nil
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace && ns.Path != "" {
			continue // joined by the thread that starts the init (startIn)
		}
		if ns.Path != "" {
			return 0, false, false, fmt.Errorf("%w: joining the %s namespace at %s", ErrUnsupported, ns.Type, ns.Path)
		}
		switch ns.Type {
		case specs.PIDNamespace:
			flags |= unix.CLONE_NEWPID
		case specs.MountNamespace:
			flags |= unix.CLONE_NEWNS
		case specs.UTSNamespace:
			flags |= unix.CLONE_NEWUTS
		case specs.IPCNamespace:
			flags |= unix.CLONE_NEWIPC
		case specs.NetworkNamespace:
			flags |= unix.CLONE_NEWNET
		case specs.UserNamespace:
			flags |= unix.CLONE_NEWUSER
			userns = true
		case specs.CgroupNamespace:
			cgroupns = true // unshared by the init, see the package doc
		default:
			return 0, false, false, fmt.Errorf("%w: %s namespace", ErrUnsupported, ns.Type)
		}
	}
	if flags&unix.CLONE_NEWNS == 0 {
		return 0, false, false, fmt.Errorf("%w: a mount namespace is required", ErrInvalidSpec)
	}
	if userns && (len(spec.Linux.UIDMappings) == 0 || len(spec.Linux.GIDMappings) == 0) {
		return 0, false, false, fmt.Errorf("%w: a user namespace needs uid and gid mappings", ErrInvalidSpec)
	}
	return flags, userns, cgroupns, nil
}

// withoutDevices returns a copy of spec whose container can reach no
// device beyond those the init creates, for when its device rules cannot
// be enforced (cgroup v2, or no cgroup): without CAP_MKNOD it cannot make
// a node, and its bind mounts are nodev, so that a host's device nodes
// bound in cannot be opened. The rules would have allowed a little more
// (opening the default devices' numbers through nodes of its own).
func withoutDevices(spec *specs.Spec) *specs.Spec {
	out := *spec
	if spec.Process != nil && spec.Process.Capabilities != nil {
		proc := *spec.Process
		caps := *proc.Capabilities
		drop := func(set []string) []string {
			return slices.DeleteFunc(slices.Clone(set), func(c string) bool { return c == "CAP_MKNOD" })
		}
		caps.Bounding, caps.Effective, caps.Permitted = drop(caps.Bounding), drop(caps.Effective), drop(caps.Permitted)
		caps.Inheritable, caps.Ambient = drop(caps.Inheritable), drop(caps.Ambient)
		proc.Capabilities = &caps
		out.Process = &proc
	}
	out.Mounts = make([]specs.Mount, len(spec.Mounts))
	for i, m := range spec.Mounts {
		if m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind") {
			if !slices.Contains(m.Options, "nodev") {
				m.Options = append(slices.Clone(m.Options), "nodev")
			}
		}
		out.Mounts[i] = m
	}
	return &out
}

func hasLimits(r *specs.LinuxResources) bool {
	return r != nil && ((r.Memory != nil && r.Memory.Limit != nil) ||
		(r.CPU != nil && r.CPU.Quota != nil) || (r.Pids != nil && r.Pids.Limit != nil && *r.Pids.Limit > 0))
}

func (p *Process) start(spec *specs.Spec, stdio Stdio, cloneFlags uintptr, userns, cgroupns bool, ready <-chan struct{}, filter *seccomp.Program) error {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("container: socketpair: %w", err)
	}
	parentSock := os.NewFile(uintptr(fds[0]), "init-parent")
	childSock := os.NewFile(uintptr(fds[1]), "init-child")
	defer parentSock.Close()

	var tasks []*os.File // v1: the init joins the cgroup through these
	var cgDir *os.File   // v2: the init is cloned into the cgroup
	switch j := p.cg.(type) {
	case threadJoiner:
		tasks, err = j.taskFiles()
	case cloneJoiner:
		cgDir, err = j.dirFile()
	}
	if err != nil {
		childSock.Close()
		return err
	}
	cmd := p.initCmd(spec, stdio, cloneFlags, userns, childSock, tasks)
	if cgDir != nil {
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(cgDir.Fd())
	}
	nsPath := netnsPath(spec)
	err = startIn(cmd, nsPath)
	joined := tasks != nil || cgDir != nil
	if cgDir != nil && errors.Is(err, syscall.ENOSYS) {
		// No clone3 (before Linux 5.7, or refused by a seccomp filter):
		// clone, then move the process in.
		joined = false
		cmd = p.initCmd(spec, stdio, cloneFlags, userns, childSock, nil)
		err = startIn(cmd, nsPath)
	}
	childSock.Close()
	for _, f := range tasks {
		f.Close()
	}
	if cgDir != nil {
		cgDir.Close()
	}
	if err != nil {
		return fmt.Errorf("container: starting the init: %w", err)
	}
	p.cmd = cmd
	fail := func(err error) error {
		cmd.Process.Kill()
		cmd.Wait()
		if p.pty != nil {
			p.pty.Close()
		}
		return err
	}
	if p.cg != nil && !joined {
		if err := p.cg.Add(cmd.Process.Pid); err != nil {
			return fail(err)
		}
	}
	cfg := encodeConfig(initConfig{Spec: spec, CgroupNS: cgroupns, UserNS: userns, CgroupFiles: len(tasks), Seccomp: filter})
	if len(cfg) > maxMessage {
		return fail(fmt.Errorf("%w: the spec is larger than %d bytes", ErrInvalidSpec, maxMessage))
	}
	if ready != nil {
		<-ready
	}
	if p.created != nil {
		if err := p.created(cmd.Process.Pid); err != nil {
			return fail(err)
		}
	}
	if _, err := parentSock.Write(cfg); err != nil {
		return fail(fmt.Errorf("container: sending the spec to the init: %w", err))
	}
	if err := p.awaitExec(parentSock); err != nil { // the socket closed on exec
		return fail(err)
	}
	if spec.Process.Terminal {
		if p.pty == nil {
			// The init exited before it sent the pty.
			return fail(&InitError{Stage: stageTTY, Msg: "the init exited"})
		}
		p.copied.Add(1)
		go func() {
			defer p.copied.Done()
			if stdio.Out != nil {
				io.Copy(stdio.Out, p.pty) // ends with EIO when the last slave closes
			} else {
				io.Copy(io.Discard, p.pty)
			}
		}()
		if stdio.In != nil {
			go io.Copy(p.pty, stdio.In)
		}
	}
	return nil
}

// initCmd is the command that starts the init: childSock becomes its
// descriptor 3 and tasks (the cgroup v1 tasks files) the ones after it.
func (p *Process) initCmd(spec *specs.Spec, stdio Stdio, cloneFlags uintptr, userns bool, childSock *os.File, tasks []*os.File) *exec.Cmd {
	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       []string{"berth-init", InitArg},
		Env:        []string{},
		ExtraFiles: append([]*os.File{childSock}, tasks...),
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: cloneFlags,
			Setsid:     true,
			Pdeathsig:  syscall.SIGKILL,
		},
	}
	if userns {
		cmd.SysProcAttr.UidMappings = sysIDMaps(spec.Linux.UIDMappings)
		cmd.SysProcAttr.GidMappings = sysIDMaps(spec.Linux.GIDMappings)
		cmd.SysProcAttr.GidMappingsEnableSetgroups = true
		// Become the namespace's root before the exec, so that the init
		// has the namespace's capabilities.
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: 0, Gid: 0}
	}
	if !spec.Process.Terminal {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = stdio.In, stdio.Out, stdio.Err
	}
	return cmd
}

// Pid is the host pid of the container's PID 1.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the container's PID 1. As for any PID 1, signals it
// has no handler for are ignored, except SIGKILL (and SIGSTOP).
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Resize sets the size of the container's terminal; it does nothing
// without a terminal.
func (p *Process) Resize(width, height uint16) error {
	if p.pty == nil {
		return nil
	}
	return unix.IoctlSetWinsize(int(p.pty.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: width, Row: height})
}

// Terminal reports whether the process has a pty.
func (p *Process) Terminal() bool { return p.pty != nil }

// Wait waits for the container's PID 1 to exit (which ends every other
// process of its pid namespace), removes its cgroup and returns its exit
// code: the process's status, or 128+N when signal N killed it. It may be
// called more than once.
func (p *Process) Wait() (int, error) {
	p.waitOnce.Do(func() {
		err := p.cmd.Wait()
		ps := p.cmd.ProcessState
		ws, _ := ps.Sys().(syscall.WaitStatus)
		switch {
		case ws.Signaled():
			p.code = 128 + int(ws.Signal())
		default:
			p.code = ws.ExitStatus()
		}
		if ee := (*exec.ExitError)(nil); err != nil && !errors.As(err, &ee) {
			p.waitErr = err
		}
		if p.pty != nil {
			p.copied.Wait()
			p.pty.Close()
		}
		if p.cg != nil {
			p.oom, _ = p.cg.OOMKilled()
			if err := p.cg.Destroy(); err != nil && p.waitErr == nil {
				p.waitErr = err
			}
		}
	})
	return p.code, p.waitErr
}

// OOMKilled reports, after Wait, whether the kernel's OOM killer killed a
// process of the container for going over its memory limit.
func (p *Process) OOMKilled() bool { return p.oom }

// ForwardedSignals are the signals Run relays to the container (SIGWINCH
// resizes its terminal instead, when it has one).
var ForwardedSignals = []os.Signal{
	syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH,
}

// Run runs a foreground container to its end: it starts it (Start, with a
// random id), relays ForwardedSignals to it, and, with a terminal whose In
// is a host terminal, puts that terminal in raw mode and keeps the sizes
// in step. It returns the exit code (see Process.Wait); when the init
// fails, the error is an *InitError and the code its ExitCode. Cancelling
// ctx kills the container.
func Run(ctx context.Context, spec *specs.Spec, stdio Stdio, opts ...StartOption) (int, error) {
	return RunWith(ctx, "", spec, stdio, nil, opts...)
}

// RunWith is Run with a container id, and a started callback called
// once the process runs (with its Process; for state files).
func RunWith(ctx context.Context, id string, spec *specs.Spec, stdio Stdio, started func(*Process), opts ...StartOption) (int, error) {
	return RunWithHooks(ctx, id, spec, stdio, Hooks{Started: started}, opts...)
}

// Hooks are the callbacks of RunWithHooks.
type Hooks struct {
	// Created, when not nil, is called with the init's host pid once its
	// namespaces exist and before it goes on to exec the process (it
	// waits): to give its network namespace interfaces. An error kills
	// the init and fails the start.
	Created func(pid int) error
	// Started, when not nil, is called once the process runs.
	Started func(*Process)
}

// RunWithHooks is RunWith with Hooks.
func RunWithHooks(ctx context.Context, id string, spec *specs.Spec, stdio Stdio, h Hooks, opts ...StartOption) (int, error) {
	started := h.Started
	sigs := make(chan os.Signal, 16)
	// Registering costs a round trip with the runtime's signal thread per
	// signal, about 0.5 ms in all: it is done while the container starts,
	// and done before the init may exec its process.
	notified := make(chan struct{})
	go func() {
		signal.Notify(sigs, ForwardedSignals...)
		close(notified)
	}()
	defer func() {
		<-notified
		signal.Stop(sigs)
	}()

	p, err := start(ctx, id, spec, stdio, notified, h.Created, NewCgroup, opts...)
	if err != nil {
		if ie := (*InitError)(nil); errors.As(err, &ie) {
			return ie.ExitCode(), err
		}
		return 125, err
	}
	if started != nil {
		started(p)
	}
	restore := p.attachHostTerminal(stdio)
	defer restore()
	return p.relay(ctx, stdio, sigs)
}

// relay waits for p to exit, relaying sigs to it (SIGWINCH resizes its
// terminal instead, when it has one) and killing it when ctx is done.
func (p *Process) relay(ctx context.Context, stdio Stdio, sigs <-chan os.Signal) (int, error) {
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, err := p.Wait()
		done <- result{code, err}
	}()
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGWINCH {
				if p.Terminal() {
					p.syncSize(stdio)
					continue
				}
			}
			p.Signal(sig)
		case <-ctx.Done():
			p.Signal(syscall.SIGKILL)
			r := <-done
			return r.code, errors.Join(ctx.Err(), r.err)
		case r := <-done:
			return r.code, r.err
		}
	}
}

// NewID returns a random container id: 12 hex digits.
func NewID() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// CgroupPaths are the directories of the container's cgroup (none when it
// runs without one).
func (p *Process) CgroupPaths() []string {
	if p.cg == nil {
		return nil
	}
	return p.cg.Paths()
}

// makeMountpoints creates the spec's mount points and working directory
// in the rootfs (confined to it, see openIn).
func makeMountpoints(spec *specs.Spec) error {
	root := spec.Root.Path
	for _, m := range spec.Mounts {
		dir := true
		if m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind") {
			if st, err := os.Stat(m.Source); err == nil {
				dir = st.IsDir()
			}
		}
		if underMount(spec.Mounts, m.Destination) {
			continue // inside a filesystem the init mounts (/dev/pts in /dev)
		}
		fd, err := openIn(root, m.Destination, true, dir)
		if err != nil {
			return fmt.Errorf("container: mount point %s: %w", m.Destination, err)
		}
		unix.Close(fd)
	}
	if cwd := spec.Process.Cwd; cwd != "" && !underMount(spec.Mounts, cwd) {
		fd, err := openIn(root, cwd, true, true)
		if err != nil {
			return fmt.Errorf("container: working directory %s: %w", cwd, err)
		}
		unix.Close(fd)
	}
	return nil
}

// underMount reports whether p lies strictly inside another mount's
// destination.
func underMount(mounts []specs.Mount, p string) bool {
	p = path.Clean(p)
	for _, m := range mounts {
		d := path.Clean(m.Destination)
		if d != p && strings.HasPrefix(p, strings.TrimSuffix(d, "/")+"/") {
			return true
		}
	}
	return false
}

// netnsPath is the path of the network namespace spec joins ("" when it
// makes a new one or keeps the caller's).
func netnsPath(spec *specs.Spec) string {
	if spec.Linux == nil {
		return ""
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			return ns.Path
		}
	}
	return ""
}

// startIn starts cmd; with nsPath, from a thread that has joined that
// network namespace, so that the init is born in it (as --network
// container:NAME shares a running container's). The thread goes back to
// its own namespace after: it must live on, since the init's parent-death
// signal follows the thread that started it.
func startIn(cmd *exec.Cmd, nsPath string) error {
	if nsPath == "" {
		return cmd.Start()
	}
	target, err := os.Open(nsPath)
	if err != nil {
		return fmt.Errorf("container: network namespace %s: %w", nsPath, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		own, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer own.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("container: joining the network namespace %s: %w", nsPath, err)
			return
		}
		errc <- cmd.Start()
		if unix.Setns(int(own.Fd()), unix.CLONE_NEWNET) != nil {
			select {} // keep the thread (and the init's parent) alive, out of use
		}
		runtime.UnlockOSThread()
	}()
	return <-errc
}

// awaitExec reads the messages of the init (or exec helper) on sock until
// it closes it, which it does once the process runs: a pty master is kept
// as p.pty, an error message is returned as an *InitError.
func (p *Process) awaitExec(sock *os.File) error {
	for {
		m, fd, ok, err := recvMessage(sock)
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		switch m.Type {
		case "pty":
			if fd < 0 {
				return errors.New("container: pty message without a descriptor")
			}
			p.pty = os.NewFile(uintptr(fd), "pty-master")
		case "error":
			if fd >= 0 {
				unix.Close(fd)
			}
			return &InitError{Stage: m.Stage, Msg: m.Error, Errno: m.Errno}
		}
	}
}

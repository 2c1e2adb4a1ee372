package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/berth-registry/berth/runner/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// ExecArg is the argument (os.Args[1]) that makes a binary linking this
// package the helper of Exec (see the package's init function).
const ExecArg = "__berth_container_exec"

// ExecOptions describe a process to start in a running container, as
// `docker exec` does. Whatever is left zero is the container's own.
type ExecOptions struct {
	Args []string
	// Env is added to the container's environment (K=V; a K the
	// container has is replaced).
	Env []string
	// User replaces the container's user when not nil (resolved by the
	// caller in the container's own /etc/passwd).
	User *specs.User
	// Cwd replaces the container's working directory (absolute).
	Cwd string
	// Terminal gives the process a pty created inside the container.
	Terminal bool
	// Detach starts the process and leaves it running: Exec returns once
	// it was executed, with code 0, and nothing waits for it.
	Detach bool
	// Seccomp is the compiled form of the container's seccomp filter (as
	// WithSeccomp takes it); nil compiles the spec's. The process runs
	// under the same filter as the container's.
	Seccomp *seccomp.Program
}

// execNamespaces are the namespaces an exec'd process joins, in the order
// they are entered: the mount namespace last, since entering it changes
// what paths mean.
var execNamespaces = []struct {
	name string
	flag int
}{
	{"cgroup", unix.CLONE_NEWCGROUP}, {"ipc", unix.CLONE_NEWIPC}, {"uts", unix.CLONE_NEWUTS},
	{"net", unix.CLONE_NEWNET}, {"pid", unix.CLONE_NEWPID}, {"mnt", unix.CLONE_NEWNS},
}

// execHeader is the first message to the exec helper: which descriptors
// follow the socket (the cgroup v1 tasks files, then one per namespace
// named here, in this order). The second message is the process, in the
// init's config form (encodeConfig).
type execHeader struct {
	CgroupFiles int      `json:"cgroupFiles"`
	Namespaces  []string `json:"namespaces"`
}

// Exec runs a process in the running container c to its end, as
// `docker exec`: in the namespaces (mount, pid, network, uts, ipc,
// cgroup) and the cgroup of the container's PID 1, with the container
// process's capabilities, no_new_privs, rlimits, user, environment and
// working directory unless o changes them. It relays ForwardedSignals
// and, with a terminal whose In is a host terminal, puts that terminal in
// raw mode. It returns the exit code (128+N for signal N); when the
// process could not be started the error is an *InitError and the code
// its ExitCode (126 not executable, 127 not found). A container that does
// not run fails with ErrNotRunning, a paused one with ErrPaused, a
// user-namespaced one with ErrUnsupported.
func (c *Container) Exec(ctx context.Context, o ExecOptions, stdio Stdio) (int, error) {
	var sigs chan os.Signal
	if !o.Detach {
		sigs = make(chan os.Signal, 16)
		signal.Notify(sigs, ForwardedSignals...)
		defer signal.Stop(sigs)
	}
	p, err := c.startExec(o, stdio)
	if err != nil {
		if ie := (*InitError)(nil); errors.As(err, &ie) {
			return ie.ExitCode(), err
		}
		return 1, err
	}
	if o.Detach {
		return 0, nil
	}
	restore := p.attachHostTerminal(stdio)
	defer restore()
	return p.relay(ctx, stdio, sigs)
}

// execSpec is the container's spec with its process changed by o.
func execSpec(s *specs.Spec, o ExecOptions) (*specs.Spec, error) {
	if len(o.Args) == 0 {
		return nil, fmt.Errorf("%w: exec needs a command", ErrInvalidSpec)
	}
	if s.Process == nil {
		return nil, fmt.Errorf("%w: the container has no process", ErrInvalidSpec)
	}
	out := *s
	proc := *s.Process
	proc.Args = o.Args
	proc.Env = mergeEnv(s.Process.Env, o.Env)
	proc.Terminal = o.Terminal
	proc.ConsoleSize = nil
	if o.User != nil {
		proc.User = *o.User
	}
	if o.Cwd != "" {
		if !path.IsAbs(o.Cwd) {
			return nil, fmt.Errorf("%w: working directory %q is not absolute", ErrInvalidSpec, o.Cwd)
		}
		proc.Cwd = o.Cwd
	}
	if proc.Cwd == "" {
		proc.Cwd = "/"
	}
	out.Process = &proc
	return &out, nil
}

// mergeEnv is env with each K=V of add set (replacing a K of env).
func mergeEnv(env, add []string) []string {
	out := append([]string(nil), env...)
	for _, kv := range add {
		k, _, _ := strings.Cut(kv, "=")
		replaced := false
		for i, old := range out {
			if ok, _, _ := strings.Cut(old, "="); ok == k {
				out[i], replaced = kv, true
			}
		}
		if !replaced {
			out = append(out, kv)
		}
	}
	return out
}

// startExec starts the exec helper (/proc/self/exe ExecArg) in the
// container's cgroup, hands it the container's namespaces and the process,
// and returns once the process was executed.
func (c *Container) startExec(o ExecOptions, stdio Stdio) (*Process, error) {
	st, err := c.State()
	if err != nil {
		return nil, err
	}
	if st.Status != StatusRunning || st.Pid == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNotRunning, c.ID)
	}
	s, err := c.Spec()
	if err != nil {
		return nil, err
	}
	spec, err := execSpec(s, o)
	if err != nil {
		return nil, err
	}
	if frozen, err := Frozen(st.Pid); err == nil && frozen {
		return nil, fmt.Errorf("%w: %s (unpause it first)", ErrPaused, c.ID)
	}
	nsFiles, names, err := openNamespaces(st.Pid)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", c.ID, err)
	}
	defer closeFiles(nsFiles)
	cg, err := containerCgroup(st.Pid)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", c.ID, err)
	}
	defer closeFiles(cg.tasks)
	if cg.dir != nil {
		defer cg.dir.Close()
	}
	// The namespaces are open: the pid cannot have been reused if the
	// container still runs now.
	if st2, err := c.State(); err != nil || st2.Status != StatusRunning || st2.Pid != st.Pid {
		return nil, fmt.Errorf("%w: %s", ErrNotRunning, c.ID)
	}

	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("container: socketpair: %w", err)
	}
	parentSock := os.NewFile(uintptr(fds[0]), "exec-parent")
	childSock := os.NewFile(uintptr(fds[1]), "exec-child")
	defer parentSock.Close()
	extra := append([]*os.File{childSock}, cg.tasks...)
	extra = append(extra, nsFiles...)
	cmd := &exec.Cmd{
		Path:        "/proc/self/exe",
		Args:        []string{"berth-exec", ExecArg},
		Env:         []string{},
		ExtraFiles:  extra,
		SysProcAttr: &syscall.SysProcAttr{},
	}
	if !o.Detach {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	} else {
		cmd.SysProcAttr.Setsid = true
	}
	if !o.Terminal {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = stdio.In, stdio.Out, stdio.Err
	}
	if cg.dir != nil {
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(cg.dir.Fd())
	}
	err = cmd.Start()
	if cg.dir != nil && errors.Is(err, syscall.ENOSYS) {
		// No clone3: start it, then move it in before it forks.
		cmd.SysProcAttr.UseCgroupFD = false
		if err = cmd.Start(); err == nil {
			if err = writeFile(cg.path, "cgroup.procs", fmt.Sprint(cmd.Process.Pid)); err != nil {
				cmd.Process.Kill()
				cmd.Wait()
			}
		}
	}
	childSock.Close()
	if err != nil {
		return nil, fmt.Errorf("container: starting the exec helper: %w", err)
	}
	p := &Process{ID: c.ID, cmd: cmd}
	fail := func(err error) (*Process, error) {
		cmd.Process.Kill()
		cmd.Wait()
		if p.pty != nil {
			p.pty.Close()
		}
		return nil, err
	}
	hdr, _ := json.Marshal(execHeader{CgroupFiles: len(cg.tasks), Namespaces: names})
	filter, err := seccompProgram(spec, []StartOption{WithSeccomp(o.Seccomp)})
	if err != nil {
		return fail(err)
	}
	cfg := encodeConfig(initConfig{Spec: spec, Seccomp: filter})
	if len(cfg) > maxMessage {
		return fail(fmt.Errorf("%w: the process is larger than %d bytes", ErrInvalidSpec, maxMessage))
	}
	for _, m := range [][]byte{hdr, cfg} {
		if _, err := parentSock.Write(m); err != nil {
			return fail(fmt.Errorf("container: sending the process to the exec helper: %w", err))
		}
	}
	if err := p.awaitExec(parentSock); err != nil { // the helper closed it: the process runs
		return fail(err)
	}
	if o.Terminal {
		if p.pty == nil {
			return fail(&InitError{Stage: stageTTY, Msg: "the exec helper exited"})
		}
		if o.Detach {
			p.pty.Close()
			p.pty = nil
		} else {
			p.copyPty(stdio)
		}
	}
	return p, nil
}

// copyPty copies stdio.In to the pty master and its output to stdio.Out.
func (p *Process) copyPty(stdio Stdio) {
	p.copied.Add(1)
	go func() {
		defer p.copied.Done()
		out := stdio.Out
		if out == nil {
			out = io.Discard
		}
		io.Copy(out, p.pty) // ends with EIO when the last slave closes
	}()
	if stdio.In != nil {
		go io.Copy(p.pty, stdio.In)
	}
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// openNamespaces opens the namespaces of pid that differ from this
// process's, in execNamespaces' order, and their names. A container in a
// user namespace of its own is refused: a multithreaded process (any Go
// program) cannot enter one.
func openNamespaces(pid int) ([]*os.File, []string, error) {
	same := func(name string) (bool, error) {
		var a, b unix.Stat_t
		if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/%s", pid, name), &a); err != nil {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
				return false, fmt.Errorf("%w: pid %d is gone", ErrNotRunning, pid)
			}
			return false, err
		}
		if err := unix.Stat("/proc/self/ns/"+name, &b); err != nil {
			return false, err
		}
		return a.Ino == b.Ino && a.Dev == b.Dev, nil
	}
	if ok, err := same("user"); err != nil {
		return nil, nil, err
	} else if !ok {
		return nil, nil, fmt.Errorf("%w: exec into a container with its own user namespace (--userns)", ErrUnsupported)
	}
	var files []*os.File
	var names []string
	for _, ns := range execNamespaces {
		ok, err := same(ns.name)
		if err != nil {
			closeFiles(files)
			return nil, nil, err
		}
		if ok {
			continue
		}
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/%s", pid, ns.name))
		if err != nil {
			closeFiles(files)
			return nil, nil, err
		}
		files = append(files, f)
		names = append(names, ns.name)
	}
	return files, names, nil
}

// execCgroup is how the exec helper joins a container's cgroup: cloned
// into dir (v2), or by writing its thread into the tasks files (v1).
type execCgroup struct {
	dir   *os.File // v2
	path  string   // v2: dir's path
	tasks []*os.File
}

// containerCgroup opens the cgroup of the container whose PID 1 is pid,
// for the exec helper to join. A container in berth's own group (none of
// its own) gives nothing to join.
func containerCgroup(pid int) (execCgroup, error) {
	cgs, err := procCgroups(pid)
	if err != nil {
		return execCgroup{}, err
	}
	own, err := ownCgroups()
	if err != nil {
		return execCgroup{}, err
	}
	if CgroupV2() {
		p := cgs[""]
		if p == "" || p == own[""] {
			return execCgroup{}, nil
		}
		dir := filepath.Join(cgroupRoot, path.Clean("/"+p))
		f, err := os.Open(dir)
		if err != nil {
			return execCgroup{}, fmt.Errorf("cgroup: %w", err)
		}
		return execCgroup{dir: f, path: dir}, nil
	}
	mounts, err := v1Mounts()
	if err != nil {
		return execCgroup{}, err
	}
	var cg execCgroup
	done := map[string]bool{}
	for _, ctrl := range v1Controllers {
		p, ok := cgs[ctrl]
		m, mounted := mounts[ctrl]
		if !ok || !mounted || p == own[ctrl] || done[m[0]] {
			continue
		}
		done[m[0]] = true
		rel := strings.TrimPrefix(path.Clean("/"+p), m[1])
		f, err := os.OpenFile(filepath.Join(m[0], path.Clean("/"+rel), "tasks"), os.O_WRONLY, 0)
		if err != nil {
			closeFiles(cg.tasks)
			return execCgroup{}, fmt.Errorf("cgroup: %w", err)
		}
		cg.tasks = append(cg.tasks, f)
	}
	return cg, nil
}

// runExecInit is the exec helper: it enters the container on its locked
// thread, starts the process from there (so that the process is born in
// the container's pid namespace with that thread's credentials), waits for
// it and exits with its exit code. It never returns.
func runExecInit() {
	runtime.LockOSThread() // never unlocked: this thread ends up in the container
	sock := os.NewFile(initFD, "exec-socket")
	unix.CloseOnExec(initFD)
	pid, err := execInit(sock)
	if err != nil {
		ie := (*InitError)(nil)
		if !errors.As(err, &ie) {
			ie = &InitError{Stage: stageSetup, Msg: err.Error()}
		}
		m := initMessage{Type: "error", Stage: ie.Stage, Error: ie.Msg, Errno: ie.Errno}
		if sendMessage(sock, m, -1) != nil {
			fmt.Fprintln(os.Stderr, ie)
		}
		os.Exit(1)
	}
	sock.Close() // the parent reads the end: the process runs
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, ForwardedSignals...)
	go func() {
		for sig := range sigs {
			unix.Kill(pid, sig.(syscall.Signal))
		}
	}()
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if err != unix.EINTR {
			break
		}
	}
	if ws.Signaled() {
		os.Exit(128 + int(ws.Signal()))
	}
	os.Exit(ws.ExitStatus())
}

// execInit reads the process from the parent, enters the container and
// starts the process; it returns its pid.
func execInit(sock *os.File) (int, error) {
	buf := make([]byte, maxMessage)
	n, err := sock.Read(buf)
	if err != nil {
		return 0, stageError(stageConfig, err)
	}
	var hdr execHeader
	if err := json.Unmarshal(buf[:n], &hdr); err != nil {
		return 0, stageError(stageConfig, err)
	}
	if n, err = sock.Read(buf); err != nil {
		return 0, stageError(stageConfig, err)
	}
	cfg, err := decodeConfig(buf[:n])
	if err != nil {
		return 0, stageError(stageConfig, err)
	}
	if cfg.Spec == nil || cfg.Spec.Process == nil || len(cfg.Spec.Process.Args) == 0 {
		return 0, stageError(stageConfig, ErrInvalidSpec)
	}
	p := cfg.Spec.Process
	nsFD := initFD + 1 + hdr.CgroupFiles
	for i := range hdr.Namespaces {
		unix.CloseOnExec(nsFD + i)
	}
	if err := joinCgroup(hdr.CgroupFiles); err != nil {
		return 0, stageError(stageCgroup, err)
	}
	// Per process: applied before the container's /proc replaces ours.
	if err := setProcessLimits(p); err != nil {
		return 0, stageError(stageSetup, err)
	}
	// A thread may enter a mount namespace only with its own root and
	// working directory.
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return 0, stageError(stageSetup, fmt.Errorf("unshare CLONE_FS: %w", err))
	}
	for i, name := range hdr.Namespaces {
		flag := -1
		for _, ns := range execNamespaces {
			if ns.name == name {
				flag = ns.flag
			}
		}
		if flag < 0 {
			return 0, stageError(stageConfig, fmt.Errorf("%w: namespace %q", ErrInvalidSpec, name))
		}
		err := unix.Setns(nsFD+i, flag)
		unix.Close(nsFD + i)
		if err != nil {
			return 0, stageError(stageSetup, fmt.Errorf("entering the %s namespace: %w", name, err))
		}
	}
	files := []uintptr{0, 1, 2}
	if p.Terminal {
		slave, err := execTerminal(sock)
		if err != nil {
			return 0, stageError(stageTTY, err)
		}
		defer unix.Close(slave)
		files = []uintptr{uintptr(slave), uintptr(slave), uintptr(slave)}
	}
	pid := 0
	err = finish(p, cfg.Seccomp, func(exe string, argv, env []string) error {
		var err error
		pid, err = syscall.ForkExec(exe, argv, &syscall.ProcAttr{
			Env: env, Files: files,
			Sys: &syscall.SysProcAttr{Setsid: p.Terminal, Setctty: p.Terminal, Ctty: 0},
		})
		return err
	})
	return pid, err
}

// execTerminal creates a pty in the container's devpts (this thread is in
// its mount namespace), sends the master to the parent and returns the
// slave.
func execTerminal(sock *os.File) (int, error) {
	master, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("opening /dev/ptmx: %w", err)
	}
	defer unix.Close(master)
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		return -1, fmt.Errorf("unlockpt: %w", err)
	}
	slave, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(master), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
	if errno != 0 {
		return -1, fmt.Errorf("opening the pty peer: %w", errno)
	}
	if err := sendMessage(sock, initMessage{Type: "pty"}, master); err != nil {
		unix.Close(int(slave))
		return -1, fmt.Errorf("sending the pty: %w", err)
	}
	return int(slave), nil
}

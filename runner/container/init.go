package container

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-registry/berth/runner/seccomp"
)

// isInit reports whether args (os.Args) ask for the container init.
func isInit(args []string) bool { return len(args) > 1 && args[1] == InitArg }

// init makes any binary that links this package a container init when it
// is re-executed as one (see Start): the init runs here, while the Go
// runtime initializes packages, and never returns. Doing it here rather
// than in main skips the initialization of every package that sorts after
// this one's dependencies; in berth those are the registry's (regular
// expressions, metrics, the AWS SDK's endpoint tables), which cost a
// container start about 2 ms.
func init() {
	if isInit(os.Args) {
		runInit()
	}
	if len(os.Args) > 1 && os.Args[1] == ExecArg {
		runExecInit()
	}
	if len(os.Args) > 1 && os.Args[1] == usernsArg {
		holdUserNS()
	}
}

// runInit is the container's init: it reads the config from the parent,
// sets up the container and execs its process. It never returns: on
// failure it reports the error to the parent and exits 1.
func runInit() {
	// Per-thread state (capabilities, the cgroup namespace, no_new_privs)
	// must be set on the thread that execs: stay on this one.
	runtime.LockOSThread()
	sock := os.NewFile(initFD, "init-socket")
	unix.CloseOnExec(initFD)
	err := initContainer(sock)
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

// joinCgroup moves the init's thread into the container's cgroup through
// the n tasks files the parent passed after the socket (see
// cgroupV1.taskFiles), and closes them. It runs on the thread that execs
// the process, before the cgroup namespace is unshared, so that the
// namespace's root is the container's group.
func joinCgroup(n int) error {
	for i := range n {
		fd := initFD + 1 + i
		_, err := unix.Write(fd, []byte("0"))
		unix.Close(fd)
		if err != nil {
			for fd++; fd <= initFD+n; fd++ {
				unix.Close(fd)
			}
			return fmt.Errorf("writing to a cgroup tasks file: %w", err)
		}
	}
	return nil
}

// stageError wraps err as an *InitError of stage.
func stageError(stage string, err error) error {
	if err == nil {
		return nil
	}
	ie := &InitError{Stage: stage, Msg: err.Error()}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		ie.Errno = errno
	}
	return ie
}

func initContainer(sock *os.File) error {
	buf := make([]byte, maxMessage)
	n, err := sock.Read(buf)
	if err != nil {
		return stageError(stageConfig, err)
	}
	cfg, err := decodeConfig(buf[:n])
	if err != nil {
		return stageError(stageConfig, err)
	}
	spec := cfg.Spec
	if spec == nil || spec.Process == nil || spec.Root == nil {
		return stageError(stageConfig, ErrInvalidSpec)
	}
	linux := spec.Linux
	if linux == nil {
		linux = &specs.Linux{}
	}
	syscall.Umask(0)
	if err := joinCgroup(cfg.CgroupFiles); err != nil {
		return stageError(stageCgroup, err)
	}
	if cfg.CgroupNS {
		if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
			return stageError(stageSetup, fmt.Errorf("unshare cgroup namespace: %w", err))
		}
	}
	newNet := false
	newUTS := false
	for _, ns := range linux.Namespaces {
		newNet = newNet || ns.Type == specs.NetworkNamespace
		newUTS = newUTS || ns.Type == specs.UTSNamespace
	}

	// The rootfs, still seen from the host's tree.
	if err := prepareRootfs(spec, linux, cfg.UserNS); err != nil {
		return err
	}
	if err := pivotRoot(spec.Root.Path); err != nil {
		return stageError(stagePivot, err)
	}
	if spec.Process.Terminal {
		if err := setupTerminal(sock, spec.Process.ConsoleSize); err != nil {
			return stageError(stageTTY, err)
		}
	}
	if newUTS {
		if spec.Hostname != "" {
			if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
				return stageError(stageSetup, fmt.Errorf("sethostname: %w", err))
			}
		}
		if spec.Domainname != "" {
			if err := unix.Setdomainname([]byte(spec.Domainname)); err != nil {
				return stageError(stageSetup, fmt.Errorf("setdomainname: %w", err))
			}
		}
	}
	if newNet {
		if err := loopbackUp(); err != nil {
			return stageError(stageSetup, err)
		}
	}
	for k, v := range linux.Sysctl {
		p := "/proc/sys/" + strings.ReplaceAll(k, ".", "/")
		if strings.Contains(k, "/") || strings.Contains(k, "..") {
			return stageError(stageSetup, fmt.Errorf("%w: sysctl %q", ErrInvalidSpec, k))
		}
		if err := os.WriteFile(p, []byte(v), 0); err != nil {
			return stageError(stageSetup, fmt.Errorf("sysctl %s: %w", k, err))
		}
	}
	if err := maskPaths(linux.MaskedPaths); err != nil {
		return stageError(stageSetup, err)
	}
	if err := readonlyPaths(linux.ReadonlyPaths); err != nil {
		return stageError(stageSetup, err)
	}
	if spec.Root.Readonly {
		if err := remountReadonly("/"); err != nil {
			return stageError(stageSetup, err)
		}
	}
	if err := setProcessLimits(spec.Process); err != nil {
		return stageError(stageSetup, err)
	}
	return finish(spec.Process, cfg.Seccomp, execve)
}

// execve replaces the init with the container's process.
func execve(exe string, argv, env []string) error { return syscall.Exec(exe, argv, env) }

// prepareRootfs makes the mounts, devices and working directory under
// Root.Path, before pivot_root.
func prepareRootfs(spec *specs.Spec, linux *specs.Linux, userns bool) error {
	prop := uintptr(unix.MS_PRIVATE | unix.MS_REC)
	if p, ok := propagationOptions[linux.RootfsPropagation]; ok {
		prop = p
	}
	// Nothing done here may reach the host's mounts.
	if err := unix.Mount("", "/", "", prop, ""); err != nil {
		return stageError(stageMounts, fmt.Errorf("making / %s: %w", linux.RootfsPropagation, err))
	}
	rootfs := spec.Root.Path
	// pivot_root needs the new root to be a mount point.
	if err := unix.Mount(rootfs, rootfs, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return stageError(stageMounts, fmt.Errorf("binding the rootfs: %w", err))
	}
	devMounted := false
	for _, m := range spec.Mounts {
		if err := mountIn(rootfs, m, userns); err != nil {
			return stageError(stageMounts, err)
		}
		if path.Clean(m.Destination) == "/dev" && m.Type != "bind" && !strings.Contains(strings.Join(m.Options, ","), "bind") {
			devMounted = true
		}
	}
	if devMounted || len(linux.Devices) > 0 {
		if err := createDevices(rootfs, linux.Devices, userns); err != nil {
			return stageError(stageDevices, err)
		}
	}
	if cwd := spec.Process.Cwd; cwd != "" {
		if !path.IsAbs(cwd) {
			return stageError(stageMounts, fmt.Errorf("%w: cwd %q is not absolute", ErrInvalidSpec, cwd))
		}
		fd, err := openIn(rootfs, cwd, true, true)
		if err != nil {
			return stageError(stageMounts, fmt.Errorf("working directory %s: %w", cwd, err))
		}
		unix.Close(fd)
	}
	return nil
}

// setupTerminal creates a pty in the container's devpts, sends the master
// to the parent, binds the slave on /dev/console and makes it the
// controlling terminal and stdin, stdout and stderr.
func setupTerminal(sock *os.File, size *specs.Box) error {
	master, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening /dev/ptmx: %w", err)
	}
	defer unix.Close(master)
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		return fmt.Errorf("unlockpt: %w", err)
	}
	slave, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(master), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY)
	if errno != 0 {
		return fmt.Errorf("opening the pty peer: %w", errno)
	}
	if size != nil {
		unix.IoctlSetWinsize(master, unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(size.Height), Col: uint16(size.Width)})
	}
	if err := sendMessage(sock, initMessage{Type: "pty"}, master); err != nil {
		return fmt.Errorf("sending the pty: %w", err)
	}
	if fd, err := openIn("/", "/dev/console", true, false); err == nil {
		unix.Mount(procFD(int(slave)), procFD(fd), "", unix.MS_BIND, "")
		unix.Close(fd)
	}
	for i := 0; i < 3; i++ {
		if err := unix.Dup3(int(slave), i, 0); err != nil {
			return err
		}
	}
	unix.Close(int(slave))
	if err := unix.IoctlSetInt(0, unix.TIOCSCTTY, 0); err != nil {
		return fmt.Errorf("TIOCSCTTY: %w", err)
	}
	return nil
}

var rlimitNames = map[string]int{
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_CPU": unix.RLIMIT_CPU,
	"RLIMIT_DATA": unix.RLIMIT_DATA, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK, "RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE,
	"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO, "RLIMIT_RTTIME": unix.RLIMIT_RTTIME, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK": unix.RLIMIT_STACK,
}

// setProcessLimits applies rlimits and the OOM score adjustment.
func setProcessLimits(p *specs.Process) error {
	for _, rl := range p.Rlimits {
		r, ok := rlimitNames[rl.Type]
		if !ok {
			return fmt.Errorf("%w: rlimit %q", ErrInvalidSpec, rl.Type)
		}
		// syscall.Setrlimit, so that the Go runtime does not restore its
		// own RLIMIT_NOFILE at exec.
		lim := syscall.Rlimit{Cur: rl.Soft, Max: rl.Hard}
		err := syscall.Setrlimit(r, &lim)
		var cur syscall.Rlimit
		if errors.Is(err, syscall.EPERM) && syscall.Getrlimit(r, &cur) == nil && lim.Max > cur.Max {
			// Without CAP_SYS_RESOURCE (or in a user namespace) a hard
			// limit cannot be raised: clamp to the runtime's own.
			lim.Max = cur.Max
			lim.Cur = min(lim.Cur, cur.Max)
			err = syscall.Setrlimit(r, &lim)
		}
		if err != nil {
			return fmt.Errorf("setrlimit %s: %w", rl.Type, err)
		}
	}
	if p.OOMScoreAdj != nil {
		if err := os.WriteFile("/proc/self/oom_score_adj", []byte(fmt.Sprint(*p.OOMScoreAdj)), 0); err != nil {
			return fmt.Errorf("oom_score_adj: %w", err)
		}
	}
	return nil
}

// finish switches to the process's user and capabilities and runs it
// with run (execve for the container's init, a fork and exec for berth
// exec's, see exec.go), all on this (locked) thread, under filter when not
// nil. Whatever must hold for the process goes here, before run, so that
// both get it. As runc does, the filter is installed as late as possible,
// right before run, so that only that call runs under it; without
// no_new_privs, installing one takes CAP_SYS_ADMIN, which the process may
// not keep: then it goes in before the user and capabilities change (and
// must allow the calls that do it, as docker's default profile does).
func finish(p *specs.Process, filter *seccomp.Program, run func(exe string, argv, env []string) error) error {
	if filter != nil && !p.NoNewPrivileges {
		if err := filter.Install(); err != nil {
			return stageError(stageSeccomp, err)
		}
	}
	last := lastCap()
	var caps *capSets
	if p.Capabilities != nil {
		c, err := parseCaps(p.Capabilities, last)
		if err != nil {
			return stageError(stageCaps, err)
		}
		caps = &c
		if err := dropBounding(c.bounding, last); err != nil {
			return stageError(stageCaps, err)
		}
	}
	if p.Cwd != "" {
		if err := unix.Chdir(p.Cwd); err != nil {
			return stageError(stageSetup, fmt.Errorf("chdir %s: %w", p.Cwd, err))
		}
	}
	// Keep the permitted set across setuid, to set the spec's sets after.
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return stageError(stageUser, err)
	}
	// Credentials, like capabilities, are set on this thread only (the
	// one that execs): syscall.Setuid and its kin change every thread of
	// the process, signalling each, for no use here.
	groups := make([]int, len(p.User.AdditionalGids))
	for i, g := range p.User.AdditionalGids {
		groups[i] = int(g)
	}
	if err := unix.Setgroups(groups); err != nil { // per thread
		return stageError(stageUser, fmt.Errorf("setgroups: %w", err))
	}
	if err := threadSetres(unix.SYS_SETRESGID, p.User.GID); err != nil {
		return stageError(stageUser, fmt.Errorf("setgid %d: %w", p.User.GID, err))
	}
	if err := threadSetres(unix.SYS_SETRESUID, p.User.UID); err != nil {
		return stageError(stageUser, fmt.Errorf("setuid %d: %w", p.User.UID, err))
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 0, 0, 0, 0); err != nil {
		return stageError(stageUser, err)
	}
	// Changing credentials cleared the parent-death signal.
	unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)
	if p.Cwd != "" {
		unix.Chdir(p.Cwd) // again as the user, as it will see it
	}
	if caps != nil {
		if err := setCaps(*caps, last); err != nil {
			return stageError(stageCaps, err)
		}
	}
	if p.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return stageError(stageSetup, fmt.Errorf("no_new_privs: %w", err))
		}
	}
	umask := 0o022
	if p.User.Umask != nil {
		umask = int(*p.User.Umask)
	}
	syscall.Umask(umask)
	exe, err := lookPath(p.Args[0], p.Env)
	if err != nil {
		return stageError(stageExec, err)
	}
	if filter != nil && p.NoNewPrivileges {
		if err := filter.Install(); err != nil {
			return stageError(stageSeccomp, err)
		}
	}
	if err := run(exe, p.Args, p.Env); err != nil {
		return stageError(stageExec, fmt.Errorf("%s: %w", exe, err))
	}
	return nil
}

// threadSetres sets the real, effective and saved ids of the calling
// thread with setresuid or setresgid (trap).
func threadSetres(trap uintptr, id uint32) error {
	if _, _, errno := unix.RawSyscall(trap, uintptr(id), uintptr(id), uintptr(id)); errno != 0 {
		return errno
	}
	return nil
}

// defaultPath is searched when the process's environment has no PATH.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// lookPath finds name like execvp would: as is when it holds a slash,
// else in the PATH of env (inside the container's root).
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	pathVar := defaultPath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathVar = v
		}
	}
	var firstErr error
	for _, dir := range filepath.SplitList(pathVar) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		st, err := os.Stat(p)
		if err != nil || st.IsDir() {
			continue
		}
		if err := unix.Access(p, unix.X_OK); err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("%s: %w", p, err)
			}
			continue
		}
		return p, nil
	}
	if firstErr != nil {
		return "", firstErr
	}
	return "", fmt.Errorf("%q: executable file not found in $PATH: %w", name, unix.ENOENT)
}

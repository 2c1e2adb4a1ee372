package container

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// usernsArg is the argument (os.Args[1]) that makes a binary linking this
// package the short-lived holder of a user namespace (see UserNamespace).
const usernsArg = "__berth_userns_holder"

// UserNamespace makes a user namespace with the given mappings and returns
// it open (a /proc/PID/ns/user file; the caller closes it). It is for
// idmapped mounts of a container's layers made before the container
// exists: an idmapping follows a namespace's mappings, so the container's
// own namespace, made later with the same mappings, sees the same owners.
//
// The namespace is made by re-executing this binary in it (a process is
// the only way into a new user namespace for a multithreaded program); the
// process waits for its stdin to close, which happens as soon as its
// namespace is open, and is then reaped.
func UserNamespace(uids, gids []specs.LinuxIDMapping) (*os.File, error) {
	if len(uids) == 0 || len(gids) == 0 {
		return nil, fmt.Errorf("%w: a user namespace needs uid and gid mappings", ErrInvalidSpec)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("container: user namespace: %w", err)
	}
	defer w.Close()
	attr := &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER, Pdeathsig: syscall.SIGKILL,
		UidMappings: sysIDMaps(uids), GidMappings: sysIDMaps(gids)}
	cmd := &exec.Cmd{Path: "/proc/self/exe", Args: []string{"berth-userns", usernsArg}, Env: []string{}, Stdin: r, SysProcAttr: attr}
	err = cmd.Start()
	r.Close()
	if err != nil {
		return nil, fmt.Errorf("container: user namespace: %w", err)
	}
	// The mappings are written before Start returns.
	ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid))
	w.Close()
	cmd.Wait()
	if err != nil {
		return nil, fmt.Errorf("container: user namespace: %w", err)
	}
	return ns, nil
}

// sysIDMaps converts the spec's id mappings for os/exec.
func sysIDMaps(ms []specs.LinuxIDMapping) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(ms))
	for i, m := range ms {
		out[i] = syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)}
	}
	return out
}

// holdUserNS is the holder's whole life: wait for stdin to close, exit.
func holdUserNS() {
	io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

package container

import (
	"encoding/json"
	"fmt"
	"os"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-registry/berth/runner/seccomp"
)

// InitArg is the argument (os.Args[1]) that makes a binary linking this
// package the init of a container (see the package's init function).
const InitArg = "__berth_container_init"

// initFD is the init's end of the socketpair (ExtraFiles[0]).
const initFD = 3

// maxMessage bounds the config the parent sends; maxReply what the init
// sends back.
const (
	maxMessage = 1 << 20
	maxReply   = 64 << 10
)

// initConfig is what the parent sends the init (encodeConfig).
type initConfig struct {
	Spec *specs.Spec
	// CgroupNS asks the init to unshare a cgroup namespace.
	CgroupNS bool
	// UserNS says the init runs in a new user namespace (mknod is not
	// allowed there: devices are bound from the host).
	UserNS bool
	// CgroupFiles is how many cgroup v1 tasks files the parent passed,
	// open for writing, at the descriptors after the socket: the init
	// moves its own thread into the group through them (see joinCgroup).
	CgroupFiles int
	// Seccomp is the filter the init installs right before it execs the
	// process (nil: none).
	Seccomp *seccomp.Program
}

// initMessage is what the init sends back: a pty master (in the control
// data) or an error.
type initMessage struct {
	Type  string        `json:"type"` // "pty" or "error"
	Stage string        `json:"stage,omitempty"`
	Error string        `json:"error,omitempty"`
	Errno syscall.Errno `json:"errno,omitempty"`
}

// Stages of the init, as reported in InitError.Stage.
const (
	stageConfig  = "reading the config"
	stageCgroup  = "joining the cgroup"
	stageMounts  = "preparing the rootfs"
	stageDevices = "creating devices"
	stagePivot   = "pivot_root"
	stageSetup   = "setting up the container"
	stageTTY     = "creating the terminal"
	stageUser    = "switching user"
	stageCaps    = "setting capabilities"
	stageSeccomp = "installing the seccomp filter"
	stageExec    = "exec"
)

func sendMessage(sock *os.File, m initMessage, fd int) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	return unix.Sendmsg(int(sock.Fd()), b, oob, nil, 0)
}

// recvMessage reads one message; io.EOF-like end is reported as ok=false.
func recvMessage(sock *os.File) (m initMessage, fd int, ok bool, err error) {
	buf := make([]byte, maxReply)
	oob := make([]byte, unix.CmsgSpace(4))
	var n, oobn int
	for {
		n, oobn, _, _, err = unix.Recvmsg(int(sock.Fd()), buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return m, -1, false, err
	}
	if n == 0 && oobn == 0 {
		return m, -1, false, nil
	}
	fd = -1
	if oobn > 0 {
		scms, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err == nil && len(scms) > 0 {
			if fds, err := unix.ParseUnixRights(&scms[0]); err == nil && len(fds) > 0 {
				fd = fds[0]
				for _, extra := range fds[1:] {
					unix.Close(extra)
				}
			}
		}
	}
	if err := json.Unmarshal(buf[:n], &m); err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return m, -1, false, fmt.Errorf("container: bad message from init: %w", err)
	}
	return m, fd, true, nil
}

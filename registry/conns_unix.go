//go:build unix

package registry

import (
	"net"

	"golang.org/x/sys/unix"
)

// pending reports whether connections wait in ln's listen queue (its
// socket polls readable); true where that cannot be told.
func pending(ln net.Listener) bool {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return true
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return true
	}
	ready := true
	if err := rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		ready = err != nil || n > 0
	}); err != nil {
		return true
	}
	return ready
}

//go:build unix

package registry

import (
	"crypto/tls"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// pending reports whether connections wait in ln's listen queue (its
// socket polls readable); true where that cannot be told.
func pending(ln net.Listener) bool {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return true
	}
	return readable(sc, true)
}

// sending reports whether bytes from the client wait unread on the idle
// connection c: its next request is arriving, so c is not to be closed
// (a close with unread bytes resets the connection, and the client's
// request fails). False where that cannot be told.
func sending(c net.Conn) bool {
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn()
	}
	if l, ok := c.(*limitedConn); ok {
		c = l.Conn
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	return readable(sc, false)
}

// readable polls sc for input without waiting; unknown when it cannot.
func readable(sc syscall.Conn, unknown bool) bool {
	rc, err := sc.SyscallConn()
	if err != nil {
		return unknown
	}
	ready := unknown
	if err := rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		ready = err == nil && n > 0 || err != nil && unknown
	}); err != nil {
		return unknown
	}
	return ready
}

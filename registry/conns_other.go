//go:build !unix

package registry

import "net"

// pending reports whether connections wait in ln's listen queue: here it
// cannot be told, so always.
func pending(net.Listener) bool { return true }

// sending reports whether bytes from the client wait on the idle
// connection: here it cannot be told, so never.
func sending(net.Conn) bool { return false }

//go:build !unix

package registry

import "net"

// pending reports whether connections wait in ln's listen queue: here it
// cannot be told, so always.
func pending(net.Listener) bool { return true }

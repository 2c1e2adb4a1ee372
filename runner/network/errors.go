package network

import "errors"

// Errors of this package; the functions wrap them with what they concern.
var (
	// ErrInvalid is bad input: a port spec, a subnet, a network name.
	ErrInvalid = errors.New("network: invalid")
	// ErrNotFound is a network that does not exist.
	ErrNotFound = errors.New("network: no such network")
	// ErrExists is a network name or subnet already taken.
	ErrExists = errors.New("network: already exists")
	// ErrInUse is a network that containers are still attached to.
	ErrInUse = errors.New("network: in use")
	// ErrExhausted is a subnet with no free address left.
	ErrExhausted = errors.New("network: no free address")
	// ErrPortAllocated is a host port that another process (or container)
	// already has.
	ErrPortAllocated = errors.New("port is already allocated")
	// ErrUnsupported is a network the host cannot give: no CAP_NET_ADMIN,
	// no bridge or veth support, no nft.
	ErrUnsupported = errors.New("network: not supported on this host")
)

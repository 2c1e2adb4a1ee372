package network_test

import (
	"testing"

	"github.com/berth-registry/berth/internal/importfence"
)

// TestDependencyFence fails if runner/network imports anything beyond
// what its package doc allows: the standard library, golang.org/x/sys,
// the runtime-spec types and the netlink library. The container runtime
// and the stores stay out.
func TestDependencyFence(t *testing.T) {
	const mod = "github.com/berth-registry/berth"
	importfence.Check(t, mod+"/runner/network", importfence.Rule{
		Deny: []string{"..."},
		Except: []string{
			"std",
			mod + "/runner/network/...",
			"github.com/opencontainers/runtime-spec/",
			"github.com/vishvananda/netlink/...",
			"github.com/vishvananda/netns/...",
			"golang.org/x/sys/",
		},
	})
}

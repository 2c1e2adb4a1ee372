package seccomp_test

import (
	"testing"

	"github.com/berth-registry/berth/internal/importfence"
)

// TestDependencyFence fails if the compiler imports anything beyond its
// package doc's list: it is linked into the container init, which must
// stay light.
func TestDependencyFence(t *testing.T) {
	const mod = "github.com/berth-registry/berth"
	importfence.Check(t, mod+"/runner/seccomp", importfence.Rule{
		Deny: []string{"..."},
		Except: []string{
			"std",
			mod + "/runner/seccomp/...",
			"github.com/opencontainers/runtime-spec/",
			"golang.org/x/sys/",
			"golang.org/x/net/bpf",
		},
	})
}

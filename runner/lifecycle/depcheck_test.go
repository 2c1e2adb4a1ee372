package lifecycle_test

import (
	"testing"

	"github.com/berth-registry/berth/internal/importfence"
)

// TestDependencyFence fails if runner/lifecycle imports the registry
// server, storage or auth: it works on the local image, layer and
// container stores (runner/image brings the pull client's types).
func TestDependencyFence(t *testing.T) {
	const mod = "github.com/berth-registry/berth"
	importfence.Check(t, mod+"/runner/lifecycle", importfence.Rule{
		Deny: []string{mod + "/", "...aws...", "...gorilla...", "...prometheus..."},
		Except: []string{
			mod + "/runner/lifecycle/...", mod + "/runner/image/...", mod + "/runner/layers/...",
			mod + "/runner/container/...", mod + "/runner/spec/...", mod + "/runner/network/...", mod + "/runner/pull/...",
			mod + "/manifest/...", mod + "/runner/containerfs/...", mod + "/runner/seccomp/...",
		},
	})
}

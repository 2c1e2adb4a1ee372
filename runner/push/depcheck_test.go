package push_test

import (
	"testing"

	"github.com/berth-registry/berth/internal/importfence"
)

// TestDependencyFence fails if runner/push imports the registry server, storage,
// auth or the container runtime: it reads the local image store and talks to
// registries through the pull client, nothing more.
func TestDependencyFence(t *testing.T) {
	const mod = "github.com/berth-registry/berth"
	importfence.Check(t, mod+"/runner/push", importfence.Rule{
		Deny: []string{mod + "/", "...aws...", "...gorilla...", "...prometheus..."},
		Except: []string{
			mod + "/runner/push/...", mod + "/runner/image/...", mod + "/runner/pull/...",
			mod + "/runner/layers/...", mod + "/manifest/...",
		},
	})
}

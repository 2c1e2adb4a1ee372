package registrycache_test

import (
	"testing"

	"github.com/berth-registry/berth/internal/importfence"
)

// TestDependencyFence fails if runner/build/registrycache imports the
// registry server, storage or the container runtime.
func TestDependencyFence(t *testing.T) {
	const mod = "github.com/berth-registry/berth"
	importfence.Check(t, mod+"/runner/build/registrycache", importfence.Rule{
		Deny: []string{mod + "/", "...aws...", "...gorilla...", "...prometheus..."},
		Except: []string{
			mod + "/runner/build/...",
			mod + "/runner/push/...", mod + "/runner/image/...", mod + "/runner/pull/...",
			mod + "/runner/layers/...", mod + "/manifest/...", mod + "/runner/container/...", mod + "/runner/seccomp/...", mod + "/runner/spec/...",
		},
	})
}

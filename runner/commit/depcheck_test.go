package commit_test

import (
	"testing"

	"github.com/berth-registry/berth/internal/importfence"
)

// TestDependencyFence fails if runner/commit imports the registry server,
// storage or auth: it works on the local image, layer and container
// stores only.
func TestDependencyFence(t *testing.T) {
	const mod = "github.com/berth-registry/berth"
	importfence.Check(t, mod+"/runner/commit", importfence.Rule{
		Deny: []string{mod + "/", "...aws...", "...gorilla...", "...prometheus..."},
		Except: []string{
			mod + "/runner/commit/...", mod + "/runner/image/...", mod + "/runner/pull/...",
			mod + "/runner/layers/...", mod + "/runner/container/...", mod + "/runner/seccomp/...", mod + "/manifest/...",
			mod + "/runner/build/dockerfile/...",
		},
	})
}

package build_test

import (
	"testing"

	"github.com/berth-registry/berth/internal/importfence"
)

// TestDependencyFence fails if runner/build imports the registry server,
// storage or auth: it builds on the local image, layer and container
// packages only.
func TestDependencyFence(t *testing.T) {
	const mod = "github.com/berth-registry/berth"
	importfence.Check(t, mod+"/runner/build", importfence.Rule{
		Deny: []string{mod + "/", "...aws...", "...gorilla...", "...prometheus..."},
		Except: []string{
			mod + "/runner/build/...", mod + "/runner/image/...", mod + "/runner/pull/...",
			mod + "/runner/layers/...", mod + "/runner/container/...", mod + "/runner/seccomp/...", mod + "/runner/spec/...",
			mod + "/manifest/...",
		},
	})
}

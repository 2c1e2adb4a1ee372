package image_test

import (
	"testing"

	"github.com/berth-registry/berth/internal/importfence"
)

// TestDependencyFence fails if runner/image imports the registry server,
// storage, auth or the container runtime: it stores what the pull client
// fetched and hands layers to the layer store, nothing more.
func TestDependencyFence(t *testing.T) {
	const mod = "github.com/berth-registry/berth"
	importfence.Check(t, mod+"/runner/image", importfence.Rule{
		Deny: []string{mod + "/", "...aws...", "...gorilla...", "...prometheus..."},
		Except: []string{
			mod + "/runner/image/...", mod + "/runner/pull/...", mod + "/runner/layers/...", mod + "/manifest/...",
		},
	})
}

package archive_test

import (
	"testing"

	"github.com/berth-registry/berth/internal/importfence"
)

// TestDependencyFence fails if runner/archive imports the registry server,
// storage, auth or the container runtime: it moves images between a tar
// and the local image store, nothing more.
func TestDependencyFence(t *testing.T) {
	const mod = "github.com/berth-registry/berth"
	importfence.Check(t, mod+"/runner/archive", importfence.Rule{
		Deny: []string{mod + "/", "...aws...", "...gorilla...", "...prometheus..."},
		Except: []string{
			mod + "/runner/archive/...", mod + "/runner/image/...", mod + "/runner/pull/...",
			mod + "/runner/layers/...", mod + "/manifest/...",
		},
	})
}

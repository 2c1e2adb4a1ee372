package output_test

import (
	"testing"

	"github.com/berth-registry/berth/internal/importfence"
)

// TestDependencyFence fails if runner/build/output imports more than the
// local stores and the archive writer.
func TestDependencyFence(t *testing.T) {
	const mod = "github.com/berth-registry/berth"
	importfence.Check(t, mod+"/runner/build/output", importfence.Rule{
		Deny: []string{mod + "/", "...aws...", "...gorilla...", "...prometheus..."},
		Except: []string{
			mod + "/runner/build/output/...", mod + "/runner/archive/...", mod + "/runner/image/...",
			mod + "/runner/layers/...", mod + "/runner/pull/...", mod + "/manifest/...",
		},
	})
}

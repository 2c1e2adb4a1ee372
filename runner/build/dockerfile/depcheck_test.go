package dockerfile_test

import (
	"testing"

	"github.com/berth-registry/berth/internal/importfence"
)

// TestDependencyFence fails if runner/build/dockerfile imports any other
// berth package: it is the pure conversion of a Dockerfile into a plan.
func TestDependencyFence(t *testing.T) {
	const mod = "github.com/berth-registry/berth"
	importfence.Check(t, mod+"/runner/build/dockerfile", importfence.Rule{
		Deny:   []string{mod + "/", "...aws...", "...gorilla...", "...prometheus..."},
		Except: []string{mod + "/runner/build/dockerfile/..."},
	})
}

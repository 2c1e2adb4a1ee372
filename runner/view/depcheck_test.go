package view_test

import (
	"testing"

	"github.com/berth-registry/berth/internal/importfence"
)

// TestDependencyFence fails if runner/view imports the registry server,
// storage, auth or the CLI: it reads the local stores and shapes what it
// finds.
func TestDependencyFence(t *testing.T) {
	const mod = "github.com/berth-registry/berth"
	importfence.Check(t, mod+"/runner/view", importfence.Rule{
		Deny: []string{mod + "/", "...aws...", "...gorilla...", "...prometheus...", "github.com/spf13/..."},
		Except: []string{
			mod + "/runner/view/...", mod + "/runner/image/...", mod + "/runner/container/...", mod + "/runner/spec/...",
			mod + "/runner/format/...", mod + "/runner/pull/...", mod + "/runner/seccomp/...", mod + "/runner/layers/...", mod + "/manifest/...",
		},
	})
}

package format_test

import (
	"testing"

	"github.com/berth-registry/berth/internal/importfence"
)

// TestDependencyFence fails if runner/format imports anything but the
// standard library: it formats values, whatever they describe.
func TestDependencyFence(t *testing.T) {
	const mod = "github.com/berth-registry/berth"
	importfence.Check(t, mod+"/runner/format", importfence.Rule{
		Deny:   []string{"..."},
		Except: []string{"std", mod + "/runner/format/..."},
	})
}

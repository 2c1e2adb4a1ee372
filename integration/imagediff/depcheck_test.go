package imagediff_test

import (
	"testing"

	"github.com/berth-registry/berth/internal/importfence"
)

// TestDependencyFence fails if the comparator starts importing Berth: an
// oracle that shared berth build's code would agree with its bugs.
func TestDependencyFence(t *testing.T) {
	const mod = "github.com/berth-registry/berth"
	importfence.Check(t, mod+"/integration/imagediff", importfence.Rule{
		Deny:   []string{"..."},
		Except: []string{"std", "github.com/klauspost/compress/..."},
	})
}

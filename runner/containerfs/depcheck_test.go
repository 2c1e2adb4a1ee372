package containerfs_test

import (
	"testing"

	"github.com/berth-registry/berth/internal/importfence"
)

// TestDependencyFence fails if containerfs imports more than the standard
// library and x/sys: it works on a directory its caller opened.
func TestDependencyFence(t *testing.T) {
	importfence.Check(t, "github.com/berth-registry/berth/runner/containerfs", importfence.Rule{
		Deny:   []string{"..."},
		Except: []string{"std", "github.com/berth-registry/berth/runner/containerfs/...", "golang.org/x/sys/"},
	})
}

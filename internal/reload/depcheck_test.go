package reload_test

import (
	"testing"

	"github.com/berth-registry/berth/internal/importfence"
)

// TestDependencyFence fails if package reload imports anything but the
// standard library: cmd/berth uses it for TLS, users and policy.
func TestDependencyFence(t *testing.T) {
	importfence.Check(t, "github.com/berth-registry/berth/internal/reload", importfence.Rule{
		Deny:   []string{"..."},
		Except: []string{"std"},
	})
}

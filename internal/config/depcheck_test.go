package config_test

import (
	"testing"

	"github.com/berth-registry/berth/internal/importfence"
)

// TestDependencyFence fails if package config imports anything but the
// standard library and yaml.v3: the configuration describes the other
// packages, it does not depend on them.
func TestDependencyFence(t *testing.T) {
	importfence.Check(t, "github.com/berth-registry/berth/internal/config", importfence.Rule{
		Deny:   []string{"..."},
		Except: []string{"std", "gopkg.in/yaml.v3"},
	})
}

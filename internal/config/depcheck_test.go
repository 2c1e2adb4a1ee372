package config_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyFence fails if package config imports anything but the
// standard library and yaml.v3: the configuration describes the other
// packages, it does not depend on them.
func TestDependencyFence(t *testing.T) {
	const pkg = "github.com/berth-registry/berth/internal/config"
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep != pkg && dep != "gopkg.in/yaml.v3" {
			t.Errorf("%s depends on %s; it may import only the standard library and gopkg.in/yaml.v3", pkg, dep)
		}
	}
}

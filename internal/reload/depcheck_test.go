package reload_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyFence fails if package reload imports anything but the
// standard library: cmd/berth uses it for TLS, users and policy.
func TestDependencyFence(t *testing.T) {
	const pkg = "github.com/berth-registry/berth/internal/reload"
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep != pkg {
			t.Errorf("%s depends on %s; it may import only the standard library", pkg, dep)
		}
	}
}

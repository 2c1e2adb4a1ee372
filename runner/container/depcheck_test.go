package container_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyFence fails if the runtime starts importing the registry,
// the pull client or the layer store: it runs a spec over a rootfs its
// caller assembled.
func TestDependencyFence(t *testing.T) {
	const pkg = "github.com/berth-registry/berth/runner/container"
	forbidden := []string{
		"net/http", "github.com/aws/", "github.com/gorilla/", "github.com/spf13/",
		"github.com/berth-registry/berth/registry", "github.com/berth-registry/berth/storage",
		"github.com/berth-registry/berth/runner/pull", "github.com/berth-registry/berth/runner/layers",
		"github.com/berth-registry/berth/runner/image", "github.com/berth-registry/berth/runner/spec",
	}
	out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if dep == f || strings.HasSuffix(f, "/") && strings.HasPrefix(dep, f) || strings.HasPrefix(dep, f+"/") {
				t.Errorf("%s depends on %s (forbidden: %s)", pkg, dep, f)
			}
		}
	}
}

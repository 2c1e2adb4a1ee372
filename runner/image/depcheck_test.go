package image_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyFence fails if runner/image imports the registry server,
// storage, auth or the container runtime: it stores what the pull client
// fetched and hands layers to the layer store, nothing more.
func TestDependencyFence(t *testing.T) {
	const pkg = "github.com/berth-registry/berth/runner/image"
	const mod = "github.com/berth-registry/berth/"
	allowedOwn := []string{"runner/image", "runner/pull", "runner/layers", "manifest"}
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		own, ok := strings.CutPrefix(dep, mod)
		if !ok {
			if strings.Contains(dep, "aws") || strings.Contains(dep, "gorilla") || strings.Contains(dep, "prometheus") {
				t.Errorf("%s depends on %s", pkg, dep)
			}
			continue
		}
		allowed := false
		for _, a := range allowedOwn {
			if own == a || strings.HasPrefix(own, a+"/") {
				allowed = true
			}
		}
		if !allowed {
			t.Errorf("%s depends on %s, which its package doc does not allow", pkg, dep)
		}
	}
}

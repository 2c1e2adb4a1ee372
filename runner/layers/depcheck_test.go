package layers_test

import (
	"strings"
	"testing"
)

// TestDependencyFence fails if the layer store starts importing the
// network, the registry side or the pull client: it unpacks streams it is
// handed and nothing more.
func TestDependencyFence(t *testing.T) {
	const pkg = "github.com/berth-registry/berth/runner/layers"
	forbidden := []string{
		"net/http", "github.com/aws/", "github.com/gorilla/",
		"github.com/berth-registry/berth/registry", "github.com/berth-registry/berth/storage",
		"github.com/berth-registry/berth/runner/pull", "github.com/berth-registry/berth/manifest",
	}
	out, err := goCmd("list", "-deps", pkg)
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

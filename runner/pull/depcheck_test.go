package pull_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyFence fails if runner/pull imports anything beyond what its package doc
// allows: the standard library, manifest, distribution/reference, go-digest, image-spec
// and golang.org/x/term (with its golang.org/x/sys). In particular the registry server,
// storage, auth and runner/layers stay out.
func TestDependencyFence(t *testing.T) {
	const pkg = "github.com/berth-registry/berth/runner/pull"
	allowed := []string{
		pkg,
		"github.com/berth-registry/berth/manifest",
		"github.com/distribution/reference",
		"github.com/opencontainers/go-digest",
		"github.com/opencontainers/image-spec/",
		"golang.org/x/term",
		"golang.org/x/sys/",
	}
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		ok := false
		for _, a := range allowed {
			if dep == a || strings.HasSuffix(a, "/") && strings.HasPrefix(dep, a) || strings.HasPrefix(dep, a+"/") {
				ok = true
			}
		}
		if !ok {
			t.Errorf("%s depends on %s, which its package doc does not allow", pkg, dep)
		}
	}
}

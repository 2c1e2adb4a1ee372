package spec_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyFence fails if runner/spec imports anything beyond what its
// package doc allows: the standard library, golang.org/x/sys, image-spec,
// go-digest (through image-spec) and runtime-spec. The pull client, the
// layer store and the container runtime stay out: Generate is a pure
// conversion.
func TestDependencyFence(t *testing.T) {
	const pkg = "github.com/berth-registry/berth/runner/spec"
	allowed := []string{
		pkg,
		"github.com/opencontainers/image-spec/",
		"github.com/opencontainers/go-digest",
		"github.com/opencontainers/runtime-spec/",
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

package issuer_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyFence fails if the issuer imports Berth packages beyond auth
// and manifest (the repository name grammar), or the HTTP router, the AWS
// SDK or the Prometheus client: the registry, the store and the drivers stay
// out, and metrics are the throttle's counters, wired by cmd/berth.
func TestDependencyFence(t *testing.T) {
	const pkg = "github.com/berth-registry/berth/auth/issuer"
	const mod = "github.com/berth-registry/berth/"
	allowedOwn := []string{"auth", "auth/issuer", "manifest"}
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
			if own == a {
				allowed = true
			}
		}
		if !allowed {
			t.Errorf("%s depends on %s, which its package doc does not allow", pkg, dep)
		}
	}
}

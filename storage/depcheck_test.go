package storage_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyFence fails if the driver interface package, the manifest
// package or the auth package starts importing the HTTP layer, the AWS SDK or
// any other package that does not belong to it.
func TestDependencyFence(t *testing.T) {
	for pkg, forbidden := range map[string][]string{
		"github.com/berth-registry/berth/storage": {
			"net/http", "github.com/aws/", "github.com/gorilla/", "github.com/berth-registry/berth/registry",
			"github.com/berth-registry/berth/manifest",
		},
		"github.com/berth-registry/berth/auth": {
			"github.com/aws/", "github.com/gorilla/", "github.com/berth-registry/berth/registry",
			"github.com/berth-registry/berth/storage", "github.com/berth-registry/berth/manifest",
		},
		"github.com/berth-registry/berth/manifest": {
			"net/http", "github.com/aws/", "github.com/gorilla/", "github.com/berth-registry/berth/registry",
			"github.com/berth-registry/berth/storage",
		},
	} {
		out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range forbidden {
				if dep == f || strings.HasPrefix(dep, f) && strings.HasSuffix(f, "/") || strings.HasPrefix(dep, f+"/") {
					t.Errorf("%s depends on %s (forbidden: %s)", pkg, dep, f)
				}
			}
		}
	}
}

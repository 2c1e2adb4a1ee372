package pull_test

import (
	"testing"

	"github.com/berth-registry/berth/internal/importfence"
)

// TestDependencyFence fails if runner/pull imports anything beyond what its package doc
// allows: the standard library, manifest, distribution/reference, go-digest, image-spec
// golang.org/x/term (with its golang.org/x/sys) and golang.org/x/sync. In particular the registry server,
// storage, auth and runner/layers stay out.
func TestDependencyFence(t *testing.T) {
	const mod = "github.com/berth-registry/berth"
	importfence.Check(t, mod+"/runner/pull", importfence.Rule{
		Deny: []string{"..."},
		Except: []string{
			"std",
			mod + "/runner/pull/...",
			mod + "/manifest/...",
			"github.com/distribution/reference/...",
			"github.com/opencontainers/go-digest/...",
			"github.com/opencontainers/image-spec/",
			"golang.org/x/term/...",
			"golang.org/x/sys/",
			"golang.org/x/sync/...",
		},
	})
}

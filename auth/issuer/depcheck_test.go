package issuer_test

import (
	"testing"

	"github.com/berth-registry/berth/internal/importfence"
)

// TestDependencyFence fails if the issuer imports Berth packages beyond auth
// and manifest (the repository name grammar), or the HTTP router, the AWS
// SDK or the Prometheus client: the registry, the store and the drivers stay
// out, and metrics are the throttle's counters, wired by cmd/berth.
func TestDependencyFence(t *testing.T) {
	const mod = "github.com/berth-registry/berth"
	importfence.Check(t, mod+"/auth/issuer", importfence.Rule{
		Deny:   []string{mod + "/", "...aws...", "...gorilla...", "...prometheus..."},
		Except: []string{mod + "/auth", mod + "/manifest"},
	})
}

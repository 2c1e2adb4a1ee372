package layers_test

import (
	"testing"

	"github.com/berth-registry/berth/internal/importfence"
)

// TestDependencyFence fails if the layer store starts importing the
// network, the registry side or the pull client: it unpacks streams it is
// handed and nothing more.
func TestDependencyFence(t *testing.T) {
	const mod = "github.com/berth-registry/berth"
	importfence.Check(t, mod+"/runner/layers", importfence.Rule{Deny: []string{
		"net/http/...", "github.com/aws/", "github.com/gorilla/",
		mod + "/registry/...", mod + "/storage/...", mod + "/runner/pull/...", mod + "/manifest/...",
	}})
}

package container_test

import (
	"testing"

	"github.com/berth-registry/berth/internal/importfence"
)

// TestDependencyFence fails if the runtime starts importing the registry,
// the pull client or the layer store: it runs a spec over a rootfs its
// caller assembled.
func TestDependencyFence(t *testing.T) {
	const mod = "github.com/berth-registry/berth"
	importfence.Check(t, mod+"/runner/container", importfence.Rule{Deny: []string{
		"net/http/...", "github.com/aws/", "github.com/gorilla/", "github.com/spf13/",
		mod + "/registry/...", mod + "/storage/...",
		mod + "/runner/pull/...", mod + "/runner/layers/...", mod + "/runner/image/...", mod + "/runner/spec/...",
	}})
}

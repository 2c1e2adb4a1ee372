package spec_test

import (
	"testing"

	"github.com/berth-registry/berth/internal/importfence"
)

// TestDependencyFence fails if runner/spec imports anything beyond what its
// package doc allows: the standard library, golang.org/x/sys, image-spec,
// go-digest (through image-spec), runtime-spec and docker's seccomp
// profiles. The pull client, the
// layer store and the container runtime stay out: Generate is a pure
// conversion.
func TestDependencyFence(t *testing.T) {
	const mod = "github.com/berth-registry/berth"
	importfence.Check(t, mod+"/runner/spec", importfence.Rule{
		Deny: []string{"..."},
		Except: []string{
			"std",
			mod + "/runner/spec/...",
			"github.com/opencontainers/image-spec/",
			"github.com/opencontainers/go-digest/...",
			"github.com/opencontainers/runtime-spec/",
			"golang.org/x/sys/",
			"github.com/moby/profiles/seccomp",
		},
	})
}

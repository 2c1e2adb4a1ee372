package storage_test

import (
	"testing"

	"github.com/berth-registry/berth/internal/importfence"
)

// TestDependencyFence fails if the driver interface package, the manifest
// package or the auth package starts importing the HTTP layer, the AWS SDK or
// any other package that does not belong to it.
func TestDependencyFence(t *testing.T) {
	const mod = "github.com/berth-registry/berth"
	importfence.Check(t, mod+"/storage", importfence.Rule{Deny: []string{
		"net/http/...", "github.com/aws/", "github.com/gorilla/", mod + "/registry/...",
		mod + "/manifest/...",
	}})
	importfence.Check(t, mod+"/auth", importfence.Rule{Deny: []string{
		"github.com/aws/", "github.com/gorilla/", mod + "/registry/...",
		mod + "/storage/...", mod + "/manifest/...",
	}})
	importfence.Check(t, mod+"/manifest", importfence.Rule{Deny: []string{
		"net/http/...", "github.com/aws/", "github.com/gorilla/", mod + "/registry/...",
		mod + "/storage/...",
	}})
}

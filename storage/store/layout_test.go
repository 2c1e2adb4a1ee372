package store

import (
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestFlatPathsAgree: the paths built in one concatenation for speed are
// those the layout's nested paths give.
func TestFlatPathsAgree(t *testing.T) {
	d := digest.FromString("x")
	for _, repo := range []string{"a", "library/debian"} {
		for _, c := range []struct{ got, want string }{
			{revisionLinkPath(repo, d), revisionDirPath(repo, d) + "/link"},
			{tagCurrentLinkPath(repo, "v1"), tagPath(repo, "v1") + "/current/link"},
			{layerLinkPath(repo, d), repoPath(repo) + "/_layers/sha256/" + d.Encoded() + "/link"},
			{revisionLinkPath(repo, d), "/docker/registry/v2/repositories/" + repo + "/_manifests/revisions/sha256/" + d.Encoded() + "/link"},
		} {
			if c.got != c.want {
				t.Errorf("got %s, want %s", c.got, c.want)
			}
		}
	}
}

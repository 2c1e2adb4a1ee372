package config

import (
	"strings"
	"testing"
)

// TestSecretsTagged: a key whose name says it holds a credential must be
// tagged secret:"true", so that Redacted (berth config show) masks it. A new
// key such as auth.token.signingSecret fails here until it is.
func TestSecretsTagged(t *testing.T) {
	var secrets int
	for _, l := range leaves() {
		name := strings.ToLower(l.path[len(l.path)-1])
		looksSecret := strings.Contains(name, "secret") || strings.Contains(name, "password") || strings.Contains(name, "token")
		if looksSecret && !l.secret {
			t.Errorf("%s looks like a credential but is not tagged secret:\"true\"", l.key())
		}
		if l.secret {
			secrets++
		}
	}
	if secrets == 0 {
		t.Error("no key is tagged secret; storage.s3.secretKey should be")
	}
}

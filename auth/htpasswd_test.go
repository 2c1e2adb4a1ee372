package auth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func bcryptHash(t testing.TB, password, prefix string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return prefix + string(h[4:]) // same algorithm; $2y$/$2b$ differ from $2a$ only in name
}

func writeHtpasswd(t testing.TB, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHtpasswd(t *testing.T) {
	p := writeHtpasswd(t, "# users\n\nalice:"+bcryptHash(t, "secret", "$2y$")+"\r\n"+
		"bob:"+bcryptHash(t, "hunter2", "$2b$")+"\ncarol:"+bcryptHash(t, "pw", "$2a$")+"\n")
	h, err := LoadHtpasswd(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user, password string
		want           bool
	}{
		{"alice", "secret", true},
		{"bob", "hunter2", true},
		{"carol", "pw", true},
		{"alice", "hunter2", false},
		{"alice", "", false},
		{"dave", "secret", false},
		{"", "", false},
	} {
		if got := h.Check(tc.user, tc.password); got != tc.want {
			t.Errorf("Check(%q, %q) = %v, want %v", tc.user, tc.password, got, tc.want)
		}
	}
	if c, err := bcrypt.Cost(h.dummy); err != nil || c != bcrypt.MinCost {
		t.Errorf("dummy hash cost = %d, %v; want the entries' cost %d", c, err, bcrypt.MinCost)
	}
}

func TestLoadHtpasswdRejects(t *testing.T) {
	good := "alice:" + bcryptHash(t, "secret", "$2y$") + "\n"
	for _, tc := range []struct {
		name, content, line, secret string
	}{
		{"SHA1", good + "bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n", "line 2", "W6ph5Mm5Pz8GgiULbPgzG37mj9g="},
		{"MD5", "# c\nbob:$apr1$abc$Ms8zCsBZ3N6nHDwx6lWmS1\n", "line 2", "Ms8zCsBZ3N6nHDwx6lWmS1"},
		{"crypt", good + "\nbob:rqXexS6ZhobKA\n", "line 3", "rqXexS6ZhobKA"},
		{"truncated bcrypt", "bob:$2y$05$abc\n", "line 1", "$2y$05$abc"},
		{"no colon", good + "bob\n", "line 2", ""},
		{"empty user", ":" + bcryptHash(t, "x", "$2a$") + "\n", "line 1", ""},
		{"duplicate", good + good, "line 2", ""},
	} {
		_, err := LoadHtpasswd(writeHtpasswd(t, tc.content))
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.line) {
			t.Errorf("%s: error %q does not name %s", tc.name, err, tc.line)
		}
		if tc.secret != "" && strings.Contains(err.Error(), tc.secret) {
			t.Errorf("%s: error %q contains the hash", tc.name, err)
		}
	}
	if _, err := LoadHtpasswd(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing file accepted")
	}
}

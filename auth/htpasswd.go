package auth

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// Htpasswd is a set of users with bcrypt password hashes, read from an htpasswd file.
// It is safe for concurrent use.
type Htpasswd struct {
	users map[string][]byte
	dummy []byte // compared against for unknown users, so they take as long as known ones
}

// LoadHtpasswd reads an htpasswd file of "user:hash" lines. Blank lines and lines
// starting with '#' are skipped. Only bcrypt hashes ($2y$, $2a$, $2b$, as written by
// "htpasswd -B") are accepted; any other format, a line without a colon, an empty user
// or a duplicate user is an error naming the line (never the hash).
func LoadHtpasswd(path string) (*Htpasswd, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: htpasswd: %w", err)
	}
	h := &Htpasswd{users: make(map[string][]byte)}
	maxCost := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("auth: htpasswd %s line %d: not user:hash", path, n)
		}
		if _, dup := h.users[user]; dup {
			return nil, fmt.Errorf("auth: htpasswd %s line %d: user %q appears twice", path, n, user)
		}
		if !isBcrypt(hash) {
			return nil, fmt.Errorf("auth: htpasswd %s line %d: user %q: unsupported hash format, only bcrypt ($2y$, $2a$, $2b$) is accepted", path, n, user)
		}
		cost, err := bcrypt.Cost([]byte(hash))
		if err != nil {
			return nil, fmt.Errorf("auth: htpasswd %s line %d: user %q: malformed bcrypt hash", path, n, user)
		}
		maxCost = max(maxCost, cost)
		h.users[user] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("auth: htpasswd %s: %w", path, err)
	}
	// The dummy hash costs as much as the most expensive real one, so a miss is not faster.
	if maxCost == 0 {
		maxCost = bcrypt.DefaultCost
	}
	h.dummy, err = bcrypt.GenerateFromPassword([]byte("berth-dummy-password"), maxCost)
	if err != nil {
		return nil, fmt.Errorf("auth: htpasswd: %w", err)
	}
	return h, nil
}

func isBcrypt(hash string) bool {
	return len(hash) == 60 &&
		(strings.HasPrefix(hash, "$2y$") || strings.HasPrefix(hash, "$2a$") || strings.HasPrefix(hash, "$2b$"))
}

// Check reports whether password is user's. An unknown user still costs one bcrypt
// comparison, against a dummy hash, so timing does not tell which users exist. A nil
// *Htpasswd has no users.
func (h *Htpasswd) Check(user, password string) bool {
	if h == nil {
		return false
	}
	hash, ok := h.users[user]
	if !ok {
		hash = h.dummy
	}
	err := bcrypt.CompareHashAndPassword(hash, []byte(password))
	return ok && err == nil
}

// Len returns the number of users.
func (h *Htpasswd) Len() int {
	if h == nil {
		return 0
	}
	return len(h.users)
}

// Fingerprint returns a short digest of user's entry, name and bcrypt hash, or
// false if there is no such user. It changes when the password does (a new
// hash has a new salt), so the issuer binds refresh tokens to it: removing a
// user or changing the password ends them. It reveals nothing usable about
// the hash: the digest covers the hash's random 128-bit salt, so no password
// can be tried against it without the file.
func (h *Htpasswd) Fingerprint(user string) (string, bool) {
	if h == nil {
		return "", false
	}
	hash, ok := h.users[user]
	if !ok {
		return "", false
	}
	d := sha256.New()
	d.Write([]byte("berth htpasswd entry\x00" + user + "\x00"))
	d.Write(hash)
	return base64.RawURLEncoding.EncodeToString(d.Sum(nil)[:16]), true
}

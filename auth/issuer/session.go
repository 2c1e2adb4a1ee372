package issuer

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"net/http"

	"github.com/berth-registry/berth/auth"
)

// ErrBadCredentials: SignIn was given an unknown user or a wrong password.
var ErrBadCredentials = errors.New("wrong user name or password")

// SignIn checks user's password as the token endpoint checks Basic
// credentials, with the same login throttle, and returns the fingerprint
// of the user's htpasswd entry (it changes with the password, so a session
// bound to it ends then; see Fingerprint). It returns ErrBadCredentials or
// the throttle's *auth.ThrottledError.
func (i *Issuer) SignIn(r *http.Request, user, password string) (string, error) {
	users := i.users()
	client := i.cfg.Proxies.ClientAddr(r)
	if err := i.cfg.Throttle.Check(user, client); err != nil {
		return "", err
	}
	if !checkPassword(users, user, password) {
		_ = i.failed(r, user, true, "bad password or unknown user (web UI)")
		return "", ErrBadCredentials
	}
	i.cfg.Throttle.Succeeded(user, client)
	fp, _ := users.Fingerprint(user)
	return fp, nil
}

// Fingerprint returns the fingerprint of user's htpasswd entry now, false
// if the user is gone.
func (i *Issuer) Fingerprint(user string) (string, bool) {
	return i.users().Fingerprint(user)
}

// Grant returns the part of want that subject ("" for anonymous) may
// perform under the current policy, as a token for it would grant.
func (i *Issuer) Grant(subject string, want auth.Access) auth.Access {
	return i.cfg.Policy().Allowed(subject, want)
}

// DeriveKey returns a 32-byte secret derived from the signing key for
// label (the web UI's session cookies are signed with it): the same in
// every process that signs with the same key, and useless for anything
// but its label.
func (i *Issuer) DeriveKey(label string) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(i.cfg.Key)
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, der)
	m.Write([]byte("berth derived key\x00" + label))
	return m.Sum(nil), nil
}

package auth

import (
	"errors"
	"net/http"
	"strings"
)

// MaxAuthorizationSize caps the Authorization header, checked before any parsing: a
// larger header is a plain 401, whatever it holds.
const MaxAuthorizationSize = 16 << 10

// Causes carried by Challenge.Cause; they never contain credentials.
var (
	errNoCredentials     = errors.New("no credentials")
	errHeaderTooLarge    = errors.New("authorization header too large")
	errBadCredentials    = errors.New("wrong user name or password")
	errInsufficientScope = errors.New("token does not grant the access the request needs")
)

// Identity is who a request was authenticated as, and what it may do.
type Identity struct {
	Subject string   // the token's sub, or the htpasswd user
	Access  []Access // what the token grants; nil in htpasswd mode, where everything is granted
	all     bool     // htpasswd mode: every access is granted
}

// Allowed reports whether the identity may perform need. The registry uses it for
// checks beyond the route's own needs (the source of a cross-repository mount); use it
// rather than Allowed(id.Access, need), which does not know about htpasswd mode.
func (id *Identity) Allowed(need Access) bool {
	return id != nil && (id.all || Allowed(id.Access, need))
}

// Authorizer decides whether a request may perform the access it needs (see Required).
// It returns the identity, or a *Challenge error, or a *ThrottledError for credentials
// refused unchecked after repeated failures.
type Authorizer interface {
	Authorize(r *http.Request, need []Access) (*Identity, error)
}

// authorization returns the Authorization header, or ok=false when its total size
// (all values) exceeds MaxAuthorizationSize; nothing of it is parsed before that check.
func authorization(r *http.Request) (string, bool) {
	vals := r.Header.Values("Authorization")
	n := 0
	for _, v := range vals {
		n += len(v)
	}
	if n > MaxAuthorizationSize || len(vals) > 1 {
		return "", false
	}
	if len(vals) == 0 {
		return "", true
	}
	return vals[0], true
}

// TokenAuthorizer accepts Bearer tokens checked by a Verifier.
type TokenAuthorizer struct {
	v              *Verifier
	realm, service string
}

// NewTokenAuthorizer returns an Authorizer for Bearer tokens; realm is the token
// endpoint's URL and service the name tokens are issued for.
//
// A request without a Bearer token gets a 401 challenge naming the needed scope; a bad,
// oversized or expired token gets the same with error="invalid_token". A valid token
// that lacks the needed access gets 401 error="insufficient_scope" too, not 403: that is
// what the Docker token specification does, and it makes clients fetch a new token for
// the scope in the challenge (a 403 would end the request for them).
func NewTokenAuthorizer(v *Verifier, realm, service string) *TokenAuthorizer {
	return &TokenAuthorizer{v: v, realm: realm, service: service}
}

// Authorize implements Authorizer.
func (a *TokenAuthorizer) Authorize(r *http.Request, need []Access) (*Identity, error) {
	challenge := func(code string, cause error) *Challenge {
		return &Challenge{Scheme: "Bearer", Realm: a.realm, Service: a.service, Scope: need,
			Code: code, Status: http.StatusUnauthorized, Cause: cause}
	}
	h, ok := authorization(r)
	if !ok {
		return nil, challenge(ErrorInvalidToken, errHeaderTooLarge)
	}
	scheme, token, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return nil, challenge("", errNoCredentials) // no token (absent, or another scheme)
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return nil, challenge(ErrorInvalidToken, ErrInvalidToken)
	}
	claims, err := a.v.Verify(token)
	if err != nil {
		return nil, challenge(ErrorInvalidToken, err)
	}
	if refused := missing(claims.Access, need); len(refused) > 0 {
		ch := challenge(ErrorInsufficientScope, errInsufficientScope)
		ch.Subject, ch.Refused = claims.Subject, refused
		return nil, ch
	}
	return &Identity{Subject: claims.Subject, Access: claims.Access}, nil
}

// missing returns what of need granted does not cover: each needed resource with the
// actions not granted, in need's order.
func missing(granted, need []Access) []Access {
	var out []Access
	for _, n := range need {
		m := Access{Type: n.Type, Name: n.Name}
		for _, act := range n.Actions {
			if !grants(granted, n.Type, n.Name, act) {
				m.Actions = append(m.Actions, act)
			}
		}
		// As Allowed: every action granted, and a need without actions never.
		if len(m.Actions) > 0 || len(n.Actions) == 0 {
			out = append(out, m)
		}
	}
	return out
}

// BasicAuthorizer accepts htpasswd users over HTTP Basic authentication.
type BasicAuthorizer struct {
	cfg BasicConfig
}

// BasicConfig configures a BasicAuthorizer.
type BasicConfig struct {
	// Users returns the current users, asked on every request: the htpasswd
	// file is read again when it changes (cmd/berth wires internal/reload).
	// Required; a nil *Htpasswd admits nobody.
	Users func() *Htpasswd
	// Realm is the protection space named in the Basic challenge.
	Realm string
	// Throttle slows down password guessing; nil: no throttling.
	Throttle *Throttle
	// Proxies say whose X-Forwarded-For gives the client address the
	// throttle counts by; nil: the TCP peer is the client.
	Proxies *TrustedProxies
}

// NewBasicAuthorizer returns an Authorizer for htpasswd mode: any authenticated user is
// granted every access; anyone else gets a 401 Basic challenge. With a Throttle,
// credentials from a user or client address that failed too often are refused with a
// *ThrottledError (429) before they are checked.
func NewBasicAuthorizer(cfg BasicConfig) *BasicAuthorizer {
	return &BasicAuthorizer{cfg: cfg}
}

// Authorize implements Authorizer; need is not consulted, everything is granted.
func (a *BasicAuthorizer) Authorize(r *http.Request, need []Access) (*Identity, error) {
	challenge := func(cause error) *Challenge {
		return &Challenge{Scheme: "Basic", Realm: a.cfg.Realm, Status: http.StatusUnauthorized, Cause: cause}
	}
	if _, ok := authorization(r); !ok {
		return nil, challenge(errHeaderTooLarge)
	}
	user, password, ok := r.BasicAuth()
	if !ok {
		return nil, challenge(errNoCredentials)
	}
	client := a.cfg.Proxies.ClientAddr(r)
	if err := a.cfg.Throttle.Check(user, client); err != nil {
		return nil, err
	}
	if users := a.cfg.Users(); users == nil || !users.Check(user, password) {
		a.cfg.Throttle.Failed(user, client)
		return nil, challenge(errBadCredentials)
	}
	a.cfg.Throttle.Succeeded(user, client)
	return &Identity{Subject: user, all: true}, nil
}

package auth

import (
	"errors"
	"net/http"
	"strings"
)

// Sentinels a *Challenge matches with errors.Is, by its Status: ErrUnauthorized for 401
// (OCI error code UNAUTHORIZED), ErrDenied for 403 (OCI error code DENIED).
var (
	ErrUnauthorized = errors.New("auth: authentication required")
	ErrDenied       = errors.New("auth: access denied")
)

// Values of Challenge.Code (RFC 6750 section 3.1, Docker token spec).
const (
	ErrorInvalidToken      = "invalid_token"
	ErrorInsufficientScope = "insufficient_scope"
)

// Challenge is the error an Authorizer returns when a request is not allowed. It knows
// the HTTP status to answer with and how to render the WWW-Authenticate header that
// tells the client where to get credentials.
type Challenge struct {
	Scheme  string   // "Bearer" or "Basic"
	Realm   string   // the token endpoint for Bearer, the protection space for Basic
	Service string   // Bearer only: the audience the token must be issued for
	Scope   []Access // Bearer only: the access the request needs
	// Code is the Bearer "error" parameter: "", ErrorInvalidToken or ErrorInsufficientScope.
	// (Named Code, not Error: a field cannot share its name with the Error method.)
	Code   string
	Status int   // http.StatusUnauthorized, or http.StatusForbidden for DENIED
	Cause  error // why, for logs; never carries token or password material
}

// Error describes the challenge; it never contains credentials.
func (c *Challenge) Error() string {
	msg := ErrUnauthorized.Error()
	if c.Status == http.StatusForbidden {
		msg = ErrDenied.Error()
	}
	if c.Code != "" {
		msg += " (" + c.Code + ")"
	}
	if c.Cause != nil {
		msg += ": " + c.Cause.Error()
	}
	return msg
}

// Unwrap returns the cause, so errors.Is(err, ErrInvalidToken) sees through a challenge.
func (c *Challenge) Unwrap() error { return c.Cause }

// Is matches ErrUnauthorized when Status is 401 and ErrDenied when it is 403.
func (c *Challenge) Is(target error) bool {
	switch target {
	case ErrUnauthorized:
		return c.Status == http.StatusUnauthorized
	case ErrDenied:
		return c.Status == http.StatusForbidden
	}
	return false
}

// Header renders the WWW-Authenticate value, for example
//
//	Bearer realm="https://h/auth/token",service="berth",scope="repository:a/b:pull,push",error="insufficient_scope"
//
// Empty parameters are left out; several scopes are space-separated in one scope
// parameter; quotes and backslashes are escaped and control characters dropped.
func (c *Challenge) Header() string {
	var b strings.Builder
	b.WriteString(c.Scheme)
	sep := " "
	param := func(name, value string) {
		if value == "" {
			return
		}
		b.WriteString(sep)
		sep = ","
		b.WriteString(name)
		b.WriteString(`="`)
		for _, r := range value {
			switch {
			case r == '"' || r == '\\':
				b.WriteByte('\\')
				b.WriteRune(r)
			case r < 0x20 || r == 0x7f:
				// dropped: a header value cannot carry control characters
			default:
				b.WriteRune(r)
			}
		}
		b.WriteByte('"')
	}
	param("realm", c.Realm)
	param("service", c.Service)
	scopes := make([]string, 0, len(c.Scope))
	for _, a := range c.Scope {
		scopes = append(scopes, a.String())
	}
	param("scope", strings.Join(scopes, " "))
	param("error", c.Code)
	return b.String()
}

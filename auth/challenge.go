package auth

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Sentinels a *Challenge matches with errors.Is, by its Status: ErrUnauthorized for 401
// (OCI error code UNAUTHORIZED), ErrDenied for 403 (OCI error code DENIED). A 401 that
// refuses an authenticated identity the access it asked for matches
// ErrInsufficientScope as well (OCI error code DENIED: logging in again cannot help).
var (
	ErrUnauthorized      = errors.New("auth: authentication required")
	ErrDenied            = errors.New("auth: access denied")
	ErrInsufficientScope = errors.New("auth: the authenticated identity lacks the access the request needs")
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
	// Subject is who the request was authenticated as when it was refused
	// for want of access (Code ErrorInsufficientScope): a token's sub.
	// Empty when the request carried no valid credentials.
	Subject string
	// Refused is the part of Scope that Subject's credentials do not grant,
	// each entry with just the missing actions.
	Refused []Access
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

// Is matches ErrUnauthorized when Status is 401 and ErrDenied when it is 403, and
// ErrInsufficientScope when it refuses a known Subject the access in Refused.
func (c *Challenge) Is(target error) bool {
	switch target {
	case ErrUnauthorized:
		return c.Status == http.StatusUnauthorized
	case ErrDenied:
		return c.Status == http.StatusForbidden
	case ErrInsufficientScope:
		return c.Code == ErrorInsufficientScope && c.Subject != "" && len(c.Refused) > 0
	}
	return false
}

// Message is what the person behind the client is told, in the error body: who was
// refused what, or that they must log in (clients print it after the code's own
// text, "unauthorized: " or "denied: "). It never carries credentials.
func (c *Challenge) Message() string {
	switch {
	case errors.Is(c, ErrInsufficientScope):
		parts := make([]string, 0, len(c.Refused))
		for _, a := range c.Refused {
			parts = append(parts, a.Phrase())
		}
		return fmt.Sprintf("user %q may not %s", c.Subject, strings.Join(parts, ", nor "))
	case errors.Is(c.Cause, errBadCredentials):
		return "wrong user name or password"
	case errors.Is(c.Cause, errHeaderTooLarge):
		return "authorization header too large"
	case c.Code == ErrorInvalidToken:
		return "the token is not valid here (expired, or issued for another registry): log in again"
	case c.Code == ErrorInsufficientScope:
		return "the token does not grant " + phrases(c.Scope) + ": log in as a user who may"
	case len(c.Scope) > 0:
		return "log in to " + phrases(c.Scope)
	}
	return "authentication required: log in"
}

// phrases joins the Phrase of each access.
func phrases(as []Access) string {
	parts := make([]string, 0, len(as))
	for _, a := range as {
		parts = append(parts, a.Phrase())
	}
	return strings.Join(parts, " and ")
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

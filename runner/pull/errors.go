package pull

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Sentinel errors. Errors this package returns wrap one of them (sometimes also an error of
// the manifest package) with %w and a message naming what failed; test with errors.Is.
var (
	// ErrInvalidReference: the image reference does not parse, or names no registry and
	// no default registry is configured.
	ErrInvalidReference = errors.New("invalid image reference")
	// ErrInvalidPlatform: a platform string is not os/architecture[/variant].
	ErrInvalidPlatform = errors.New("invalid platform")
	// ErrNotFound: the registry does not know the manifest or blob (HTTP 404).
	ErrNotFound = errors.New("not found")
	// ErrUnauthorized: the registry or its token server refused the credentials, or
	// asked for authentication that could not be provided (HTTP 401).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrDenied: the credentials were accepted but do not allow the request (HTTP 403).
	ErrDenied = errors.New("access denied")
	// ErrDigestMismatch: content the registry served does not match the digest or size
	// it was asked for (or, for a manifest fetched by tag, its Docker-Content-Digest).
	ErrDigestMismatch = errors.New("content does not match its digest")
	// ErrNoMatchingPlatform: an index has no manifest for the requested platform, or a
	// single-platform image is for another platform than the one explicitly requested.
	ErrNoMatchingPlatform = errors.New("no manifest for the requested platform")
	// ErrUnsupported: a media type (manifest, config or layer) this package cannot pull.
	ErrUnsupported = errors.New("unsupported")
	// ErrInvalidImage: the manifest or config is malformed or inconsistent, for example
	// when the number of config diff_ids differs from the number of layers.
	ErrInvalidImage = errors.New("invalid image")
	// ErrCredentialHelper: the docker config delegates the registry's credentials to a
	// credential helper (credsStore or credHelpers), which Berth does not run.
	ErrCredentialHelper = errors.New("credential helpers are not supported")
	// ErrInsecure: credentials would travel over plain HTTP to a host that is neither
	// loopback nor allowed with the Insecure option.
	ErrInsecure = errors.New("refusing to send credentials over plain HTTP")
	// ErrDockerConfig: the docker config.json file is not valid JSON of the expected shape,
	// or credentials cannot be stored in it (a user name holding ':').
	ErrDockerConfig = errors.New("invalid docker config")
	// ErrNotLoggedIn: Logout found no credentials for the registry.
	ErrNotLoggedIn = errors.New("not logged in")
	// ErrBadResponse: the server answered in a way the protocol does not allow (a
	// Content-Range for another offset, a token response without a token, ...).
	ErrBadResponse = errors.New("unexpected response")
)

// ResponseError is an HTTP response with an unexpected status from a registry, its token
// server or a foreign-layer URL. It matches ErrUnauthorized (401), ErrDenied (403) and
// ErrNotFound (404) with errors.Is.
type ResponseError struct {
	Method string
	// URL is the request URL without its query, which may hold a presigned signature.
	URL    string
	Status int
	// Codes are the OCI error codes of the body ("MANIFEST_UNKNOWN", ...), if it had any.
	Codes []string
	// Message is the first OCI error message, or the start of a non-JSON body.
	Message string
}

// Error describes the response; it never includes credentials or a URL query.
func (e *ResponseError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %d %s", e.Method, e.URL, e.Status, http.StatusText(e.Status))
	if len(e.Codes) > 0 {
		b.WriteString(" (" + strings.Join(e.Codes, ", ") + ")")
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	return b.String()
}

// Is matches ErrUnauthorized, ErrDenied or ErrNotFound by status.
func (e *ResponseError) Is(target error) bool {
	switch target {
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized
	case ErrDenied:
		return e.Status == http.StatusForbidden
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	}
	return false
}

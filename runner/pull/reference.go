package pull

import (
	// Registering the hashes with crypto is what makes go-digest accept sha256 and
	// sha512 digests (digest.Algorithm.Available).
	_ "crypto/sha256"
	_ "crypto/sha512"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// DefaultTag is the tag of a reference that names neither a tag nor a digest.
const DefaultTag = "latest"

// Reference names an image in a registry.
type Reference struct {
	// Registry is host[:port] as written, or the default registry.
	Registry string
	// Repository is the name within the registry, such as "team/app".
	Repository string
	// Tag is the tag; DefaultTag when the reference named neither a tag nor a digest.
	// It may be set together with Digest, in which case the digest alone is resolved.
	Tag string
	// Digest pins the manifest (or index) when set.
	Digest digest.Digest
}

// ParseReference parses host[:port]/name[:tag][@digest], the grammar of the OCI
// distribution spec as the distribution/reference package implements it.
//
// The first path component is the registry when it contains a '.' or a ':' or is
// "localhost" (the convention docker and podman follow); otherwise the whole string is a
// repository name in defaultRegistry (host[:port]), which must then be non-empty (Berth
// has no built-in default registry) and itself follow that convention, so that the
// String of the reference parses back to it. The tag defaults to DefaultTag unless a digest is
// given. Errors wrap ErrInvalidReference.
func ParseReference(s, defaultRegistry string) (Reference, error) {
	if s == "" {
		return Reference{}, fmt.Errorf("%w: empty reference", ErrInvalidReference)
	}
	host, rest := "", s
	if i := strings.IndexByte(s, '/'); i > 0 {
		if first := s[:i]; looksLikeRegistry(first) {
			host, rest = first, s[i+1:]
		}
	}
	if host == "" {
		if defaultRegistry == "" {
			return Reference{}, fmt.Errorf("%w: %q names no registry (host[:port]/name) and no default registry is configured", ErrInvalidReference, s)
		}
		var err error
		if host, err = NormalizeRegistry(defaultRegistry); err != nil {
			return Reference{}, fmt.Errorf("default registry: %w", err)
		}
		if !looksLikeRegistry(host) {
			// host/name would read back as a repository of the default
			// registry, as every stored and printed name of it is read.
			return Reference{}, fmt.Errorf("%w: default registry %q is neither localhost nor holds a '.' or a ':port', so names in it would not read back as naming it",
				ErrInvalidReference, defaultRegistry)
		}
	}
	parsed, err := reference.Parse(host + "/" + rest)
	if err != nil {
		return Reference{}, fmt.Errorf("%w: %q: %v", ErrInvalidReference, s, err)
	}
	named, ok := parsed.(reference.Named)
	if !ok { // cannot happen: the string has a name
		return Reference{}, fmt.Errorf("%w: %q has no repository name", ErrInvalidReference, s)
	}
	ref := Reference{Registry: reference.Domain(named), Repository: reference.Path(named)}
	if ref.Registry != host {
		// host/rest was split differently by the grammar, e.g. a host that is not one.
		return Reference{}, fmt.Errorf("%w: %q: %q is not a registry host", ErrInvalidReference, s, host)
	}
	if t, ok := parsed.(reference.Tagged); ok {
		ref.Tag = t.Tag()
	}
	if d, ok := parsed.(reference.Digested); ok {
		ref.Digest = d.Digest()
	}
	if ref.Tag == "" && ref.Digest == "" {
		ref.Tag = DefaultTag
	}
	return ref, nil
}

// looksLikeRegistry reports whether the first path component of a reference
// names a registry rather than the start of a repository name: it holds a
// '.' or a ':' or is "localhost", the convention docker and podman follow.
func looksLikeRegistry(first string) bool {
	return strings.ContainsAny(first, ".:") || first == "localhost"
}

// String returns host/name[:tag][@digest].
func (r Reference) String() string {
	s := r.Registry + "/" + r.Repository
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest.String()
	}
	return s
}

// Name returns host/name, without tag or digest.
func (r Reference) Name() string { return r.Registry + "/" + r.Repository }

// manifestRef is the <reference> of the manifest URL: the digest if there is one, else
// the tag.
func (r Reference) manifestRef() string {
	if r.Digest != "" {
		return r.Digest.String()
	}
	return r.Tag
}

// errBadRegistry is wrapped by NormalizeRegistry's errors together with ErrInvalidReference.
var errBadRegistry = errors.New("not a registry host[:port]")

// NormalizeRegistry turns what a user may type for a registry ("host:5000",
// "https://host:5000/", "http://host") into host[:port], the form references, the token
// cache and the docker config keys use. Errors wrap ErrInvalidReference.
func NormalizeRegistry(s string) (string, error) {
	h := s
	for _, scheme := range []string{"https://", "http://"} {
		if len(h) >= len(scheme) && strings.EqualFold(h[:len(scheme)], scheme) {
			h = h[len(scheme):]
			break
		}
	}
	if i := strings.IndexByte(h, '/'); i >= 0 {
		h = h[:i]
	}
	// The grammar's domain rule, applied by parsing a reference in a dummy repository.
	if h != "" {
		if parsed, err := reference.Parse(h + "/x"); err == nil {
			if named, ok := parsed.(reference.Named); ok && reference.Domain(named) == h {
				return h, nil
			}
		}
	}
	return "", fmt.Errorf("%w: %q: %w", ErrInvalidReference, s, errBadRegistry)
}

// isLoopback reports whether host[:port] is localhost, an address in 127.0.0.0/8 or ::1,
// which are reached over plain HTTP.
func isLoopback(hostport string) bool {
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

package manifest

import (
	// The hash implementations register themselves with crypto, which is what makes
	// digest.SHA256.Available and digest.SHA512.Available report true.
	_ "crypto/sha256"
	_ "crypto/sha512"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
)

const (
	// maxNameLength is the longest repository name accepted. The distribution spec only
	// warns that clients limit host plus name to 255 characters; Berth limits the name.
	maxNameLength = 255
	// maxTagLength is the longest tag the distribution-spec grammar allows.
	maxTagLength = 128
)

// ValidateName reports whether name is a repository name under the distribution-spec grammar
//
//	[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
//
// of at most 255 characters. The error wraps ErrNameInvalid and says what is wrong.
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: name is empty", ErrNameInvalid)
	}
	if len(name) > maxNameLength {
		return fmt.Errorf("%w: %s is %d characters long, at most %d are allowed",
			ErrNameInvalid, quoteShort(name), len(name), maxNameLength)
	}
	// Component by component without splitting: this runs on every request.
	for i, rest := 0, name; ; i++ {
		c, after, more := strings.Cut(rest, "/")
		if c == "" {
			switch {
			case i == 0:
				return fmt.Errorf("%w: %q starts with '/'", ErrNameInvalid, name)
			case !more:
				return fmt.Errorf("%w: %q ends with '/'", ErrNameInvalid, name)
			default:
				return fmt.Errorf("%w: %q has an empty path component (\"//\")", ErrNameInvalid, name)
			}
		}
		if p := nameComponentProblem(c); p != "" {
			return fmt.Errorf("%w: %q: path component %q %s", ErrNameInvalid, name, c, p)
		}
		if !more {
			return nil
		}
		rest = after
	}
}

// nameComponentProblem says what is wrong with one path component of a repository name,
// or returns "" if it matches [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*.
func nameComponentProblem(c string) string {
	for i := 0; i < len(c); i++ {
		switch b := c[i]; {
		case isLowerAlnum(b) || isNameSeparator(b):
		case 'A' <= b && b <= 'Z':
			return fmt.Sprintf("contains uppercase %q; names must be lowercase", b)
		case b >= 0x80:
			return "contains a non-ASCII character; only a-z, 0-9, '.', '_' and '-' are allowed"
		default:
			return fmt.Sprintf("contains %q; only a-z, 0-9, '.', '_' and '-' are allowed", b)
		}
	}
	if isNameSeparator(c[0]) {
		return fmt.Sprintf("starts with %q; components must start with a letter or digit", c[0])
	}
	if isNameSeparator(c[len(c)-1]) {
		return fmt.Sprintf("ends with %q; components must end with a letter or digit", c[len(c)-1])
	}
	for i := 0; i < len(c); {
		if isLowerAlnum(c[i]) {
			i++
			continue
		}
		j := i
		for j < len(c) && isNameSeparator(c[j]) {
			j++
		}
		if sep := c[i:j]; sep != "." && sep != "_" && sep != "__" && strings.Trim(sep, "-") != "" {
			return fmt.Sprintf("contains separator %q; letters and digits may be separated only by '.', '_', '__' or a run of '-'", sep)
		}
		i = j
	}
	return ""
}

func isLowerAlnum(b byte) bool    { return 'a' <= b && b <= 'z' || '0' <= b && b <= '9' }
func isNameSeparator(b byte) bool { return b == '.' || b == '_' || b == '-' }

// ValidateTag reports whether tag matches the distribution-spec tag grammar
// [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}. The error wraps ErrTagInvalid and says what is wrong.
func ValidateTag(tag string) error {
	if tag == "" {
		return fmt.Errorf("%w: tag is empty", ErrTagInvalid)
	}
	if len(tag) > maxTagLength {
		return fmt.Errorf("%w: %s is %d characters long, at most %d are allowed",
			ErrTagInvalid, quoteShort(tag), len(tag), maxTagLength)
	}
	for i := 0; i < len(tag); i++ {
		b := tag[i]
		ok := 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '_'
		if i == 0 && !ok {
			return fmt.Errorf("%w: %q must start with a letter, a digit or '_'", ErrTagInvalid, tag)
		}
		if !ok && b != '.' && b != '-' {
			return fmt.Errorf("%w: %q has %q at offset %d; only letters, digits, '_', '.' and '-' are allowed",
				ErrTagInvalid, tag, b, i)
		}
	}
	return nil
}

// ParseDigest parses s as a digest Berth can verify: "sha256:" followed by 64 lowercase hex
// characters, or "sha512:" followed by 128. Other algorithms, even registered ones such as
// sha384, are refused. The error wraps ErrDigestInvalid and says what is wrong.
func ParseDigest(s string) (digest.Digest, error) {
	if p := digestProblem(s); p != "" {
		return "", fmt.Errorf("%w: %s", ErrDigestInvalid, p)
	}
	return digest.Digest(s), nil
}

// digestProblem says what keeps s from being a sha256 or sha512 digest, or returns "".
func digestProblem(s string) string {
	if s == "" {
		return "digest is empty"
	}
	alg, encoded, ok := strings.Cut(s, ":")
	if !ok {
		return fmt.Sprintf("%s has no algorithm prefix; want sha256:<hex> or sha512:<hex>", quoteShort(s))
	}
	var want int
	switch digest.Algorithm(alg) {
	case digest.SHA256:
		want = 64
	case digest.SHA512:
		want = 128
	default:
		if !validAlgorithmSyntax(alg) {
			return fmt.Sprintf("%s: %s is not a digest algorithm", quoteShort(s), quoteShort(alg))
		}
		return fmt.Sprintf("%s: algorithm %q is not supported; only sha256 and sha512 are", quoteShort(s), alg)
	}
	if encoded == "" {
		return fmt.Sprintf("%q has an empty %s hex part", s, alg)
	}
	for i := 0; i < len(encoded); i++ {
		switch b := encoded[i]; {
		case '0' <= b && b <= '9' || 'a' <= b && b <= 'f':
		case 'A' <= b && b <= 'F':
			return fmt.Sprintf("%s: hex must be lowercase, found %q at offset %d", quoteShort(s), b, len(alg)+1+i)
		default:
			return fmt.Sprintf("%s: %q at offset %d is not a hex digit", quoteShort(s), b, len(alg)+1+i)
		}
	}
	if len(encoded) != want {
		return fmt.Sprintf("%s: %s needs %d hex characters, found %d", quoteShort(s), alg, want, len(encoded))
	}
	// Defence in depth: go-digest must agree (this also checks the hash is linked in).
	if err := digest.Digest(s).Validate(); err != nil {
		return fmt.Sprintf("%s: %v", quoteShort(s), err)
	}
	return ""
}

// validAlgorithmSyntax reports whether alg matches the OCI algorithm grammar
// [a-z0-9]+([+._-][a-z0-9]+)*.
func validAlgorithmSyntax(alg string) bool {
	if alg == "" {
		return false
	}
	prevSep := true // a separator may not come first
	for i := 0; i < len(alg); i++ {
		switch b := alg[i]; {
		case isLowerAlnum(b):
			prevSep = false
		case b == '+' || b == '.' || b == '_' || b == '-':
			if prevSep {
				return false
			}
			prevSep = true
		default:
			return false
		}
	}
	return !prevSep
}

// quoteShort quotes s for an error message, cutting it short so that a hostile
// multi-megabyte value does not end up in logs whole.
func quoteShort(s string) string {
	const limit = 160
	if len(s) <= limit {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q...", s[:limit])
}

// clip cuts s short for an error message without quoting it, for values that are
// already JSON text.
func clip(s string) string {
	const limit = 160
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}

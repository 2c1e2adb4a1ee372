package pull

import (
	"net/http"
	"strings"
)

// challenge is one challenge of a WWW-Authenticate header (RFC 7235 section 4.1), such as
//
//	Bearer realm="https://h/auth/token",service="h",scope="repository:a:pull"
type challenge struct {
	// scheme is lower-cased: "bearer", "basic", ...
	scheme string
	// params has lower-cased names: "realm", "service", "scope", "error", ...
	params map[string]string
}

// parseChallenges parses every challenge of every WWW-Authenticate header of h, in order.
// Malformed parts are skipped rather than failing the whole header.
func parseChallenges(h http.Header) []challenge {
	var out []challenge
	for _, v := range h.Values("WWW-Authenticate") {
		out = append(out, parseChallengeList(v)...)
	}
	return out
}

// parseChallengeList parses a comma-separated list of challenges, each a scheme followed
// by auth-params: name=token or name="quoted string".
func parseChallengeList(s string) []challenge {
	var out []challenge
	p := 0
	skip := func(chars string) {
		for p < len(s) && strings.IndexByte(chars, s[p]) >= 0 {
			p++
		}
	}
	for p < len(s) {
		skip(" \t,")
		scheme := readToken(s, &p)
		if scheme == "" {
			p++ // not a token character: skip it
			continue
		}
		c := challenge{scheme: strings.ToLower(scheme), params: map[string]string{}}
		for {
			skip(" \t")
			start := p
			name := readToken(s, &p)
			skip(" \t")
			if name == "" || p >= len(s) || s[p] != '=' {
				p = start // a new challenge's scheme, or the end
				break
			}
			p++ // '='
			skip(" \t")
			var value string
			if p < len(s) && s[p] == '"' {
				value = readQuoted(s, &p)
			} else {
				value = readToken(s, &p)
			}
			c.params[strings.ToLower(name)] = value
			skip(" \t")
			if p < len(s) && s[p] == ',' {
				p++
			}
		}
		out = append(out, c)
	}
	return out
}

// isTokenChar reports whether b may appear in an RFC 7230 token.
func isTokenChar(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~/:", b) >= 0 // '/' and ':' for lenient realms
}

// readToken reads the token at *p, possibly empty, and moves *p past it.
func readToken(s string, p *int) string {
	start := *p
	for *p < len(s) && isTokenChar(s[*p]) {
		*p++
	}
	return s[start:*p]
}

// readQuoted reads a quoted-string starting at the opening quote and returns its
// unescaped contents. An unterminated string runs to the end.
func readQuoted(s string, p *int) string {
	var b strings.Builder
	*p++ // opening quote
	for *p < len(s) {
		c := s[*p]
		*p++
		switch {
		case c == '"':
			return b.String()
		case c == '\\' && *p < len(s):
			b.WriteByte(s[*p])
			*p++
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// pick returns the challenge to answer: Bearer if offered, else Basic; ok is false when
// neither is.
func pick(cs []challenge) (challenge, bool) {
	for _, want := range []string{"bearer", "basic"} {
		for _, c := range cs {
			if c.scheme == want {
				return c, true
			}
		}
	}
	return challenge{}, false
}

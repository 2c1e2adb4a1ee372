package manifest

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// objectKind tells what part of the manifest schema a JSON object or array is, which decides
// how checkDuplicateKeys compares its keys.
type objectKind int

const (
	kindOther          objectKind = iota // annotations, unknown extensions: keys compared exactly
	kindTop                              // the manifest itself
	kindDescriptor                       // config, subject, an entry of layers or manifests
	kindDescriptorList                   // layers, manifests
	kindPlatform                         // a descriptor's platform
)

// checkDuplicateKeys walks body, which must already be known to be valid JSON (json.Unmarshal
// accepted it, which also bounds its nesting depth), and fails if an object has the same key
// twice. In the objects encoding/json decodes into structs (the manifest, its descriptors and
// their platforms), keys are compared with the case folding encoding/json uses to match
// struct fields, since {"size":1,"Size":2} means one thing to Go clients and another to the
// rest; in annotations and unknown extension objects they are compared exactly. The walk is
// linear in the size of the body and allocates little more than the keys.
func checkDuplicateKeys(body []byte) error {
	s := keyScanner{data: body}
	return s.value(kindTop, "")
}

// keyScanner walks JSON text already known to be valid, looking only at object keys.
type keyScanner struct {
	data []byte
	pos  int
}

func (s *keyScanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\r', '\n':
			s.pos++
		default:
			return
		}
	}
}

// value walks the value at s.pos, of the given kind, found at path.
func (s *keyScanner) value(kind objectKind, path string) error {
	s.skipSpace()
	switch s.data[s.pos] {
	case '{':
		return s.object(kind, path)
	case '[':
		return s.array(kind, path)
	case '"':
		s.str()
	default: // number, true, false, null
		for s.pos < len(s.data) && !strings.ContainsRune(",}] \t\r\n", rune(s.data[s.pos])) {
			s.pos++
		}
	}
	return nil
}

func (s *keyScanner) object(kind objectKind, path string) error {
	s.pos++ // '{'
	var seen map[string]struct{}
	for {
		s.skipSpace()
		if s.data[s.pos] == '}' {
			s.pos++
			return nil
		}
		if s.data[s.pos] == ',' {
			s.pos++
			s.skipSpace()
		}
		key := s.str()
		norm := key
		if kind != kindOther {
			norm = foldKey(key)
		}
		if _, dup := seen[norm]; dup {
			where, how := path, ""
			if where == "" {
				where = "the top-level object"
			}
			if kind != kindOther {
				how = " (keys are matched case-insensitively)"
			}
			return fmt.Errorf("%w: key %s appears more than once in %s%s", ErrInvalid, quoteShort(key), where, how)
		}
		if seen == nil {
			seen = make(map[string]struct{})
		}
		seen[norm] = struct{}{}
		s.skipSpace()
		s.pos++ // ':'
		s.skipSpace()
		childPath := "" // only containers need a path, and building one per key costs
		if first := s.data[s.pos]; first == '{' || first == '[' {
			childPath = joinPath(path, key)
		}
		if err := s.value(childKind(kind, key, s.data[s.pos]), childPath); err != nil {
			return err
		}
	}
}

func (s *keyScanner) array(kind objectKind, path string) error {
	s.pos++ // '['
	elem, elemPath := kindOther, path+"[]"
	if kind == kindDescriptorList {
		elem = kindDescriptor
	}
	for {
		s.skipSpace()
		switch s.data[s.pos] {
		case ']':
			s.pos++
			return nil
		case ',':
			s.pos++
		}
		if err := s.value(elem, elemPath); err != nil {
			return err
		}
	}
}

// str reads the string at s.pos and returns its decoded value.
func (s *keyScanner) str() string {
	start := s.pos
	escaped := false
	for s.pos++; s.data[s.pos] != '"'; s.pos++ {
		if s.data[s.pos] == '\\' {
			escaped = true
			s.pos++ // skip the escaped character; \uXXXX needs no special care
		}
	}
	s.pos++ // closing quote
	raw := s.data[start:s.pos]
	if !escaped {
		return string(raw[1 : len(raw)-1])
	}
	var v string
	_ = json.Unmarshal(raw, &v) // valid JSON text, so this cannot fail
	return v
}

// childKind is the kind of the value of key, starting with byte first, in an object of kind
// parent. Only the objects and arrays encoding/json decodes into structs get a kind other
// than kindOther.
func childKind(parent objectKind, key string, first byte) objectKind {
	if parent == kindOther {
		return kindOther
	}
	object := first == '{'
	if !object && first != '[' {
		return kindOther
	}
	k := foldKey(key)
	switch {
	case parent == kindTop && object && (k == "CONFIG" || k == "SUBJECT"):
		return kindDescriptor
	case parent == kindTop && !object && (k == "LAYERS" || k == "MANIFESTS"):
		return kindDescriptorList
	case parent == kindDescriptor && object && k == "PLATFORM":
		return kindPlatform
	}
	return kindOther
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// foldKey maps key to a representative of its case-folding class, so that two keys are
// equal after foldKey exactly when bytes.EqualFold, and thus encoding/json, matches them.
// ASCII letters map to upper case.
func foldKey(key string) string {
	ascii := true
	for i := 0; i < len(key); i++ {
		if key[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		b := []byte(key)
		for i, c := range b {
			if 'a' <= c && c <= 'z' {
				b[i] = c - ('a' - 'A')
			}
		}
		return string(b)
	}
	out := make([]rune, 0, len(key))
	for _, r := range key {
		// The smallest rune of the orbit under unicode.SimpleFold stands for the orbit;
		// for ASCII letters that is the upper-case letter, as above.
		low := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			low = min(low, f)
		}
		out = append(out, low)
	}
	return string(out)
}

package manifest

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strings"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// maxRestrictedName is the longest type or subtype name RFC 6838 section 4.2 allows.
const maxRestrictedName = 127

// decodeDescriptors decodes a JSON array of descriptors found at path. A missing or null
// array decodes to nil.
func decodeDescriptors(path string, raw json.RawMessage) ([]v1.Descriptor, error) {
	if !present(raw) {
		return nil, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, jsonProblem(path, err))
	}
	ds := make([]v1.Descriptor, len(items))
	for i, item := range items {
		d, err := decodeDescriptor(fmt.Sprintf("%s[%d]", path, i), item)
		if err != nil {
			return nil, err
		}
		ds[i] = d
	}
	return ds, nil
}

// decodeDescriptor decodes and validates the descriptor found at path.
func decodeDescriptor(path string, raw json.RawMessage) (v1.Descriptor, error) {
	var d v1.Descriptor
	if err := json.Unmarshal(raw, &d); err != nil {
		return d, fmt.Errorf("%w: %s", ErrInvalid, jsonProblem(path, err))
	}
	if p := descriptorProblem(&d); p != "" {
		return d, fmt.Errorf("%w: %s%s", ErrInvalid, path, p)
	}
	return d, nil
}

// descriptorProblem says what is wrong with d, starting with the offending field
// (".digest: ..."), or returns "".
//
// A descriptor needs a media type of RFC 6838 syntax, a sha256 or sha512 digest (so that
// Berth can verify the content) and a size >= 0. Optional fields are checked when present:
// urls must parse, embedded data must match size and digest, artifactType must be a media
// type, and a platform needs architecture and os.
func descriptorProblem(d *v1.Descriptor) string {
	if d.MediaType == "" {
		return ".mediaType: missing"
	}
	if p := mediaTypeProblem(d.MediaType); p != "" {
		return ".mediaType: " + p
	}
	if d.Digest == "" {
		return ".digest: missing"
	}
	if p := digestProblem(string(d.Digest)); p != "" {
		return ".digest: " + p
	}
	if d.Size < 0 {
		return fmt.Sprintf(".size: %d is negative", d.Size)
	}
	for i, u := range d.URLs {
		if u == "" {
			return fmt.Sprintf(".urls[%d]: empty URL", i)
		}
		if _, err := url.Parse(u); err != nil {
			return fmt.Sprintf(".urls[%d]: %s is not a URL: %v", i, quoteShort(u), err)
		}
	}
	if d.Data != nil {
		if int64(len(d.Data)) != d.Size {
			return fmt.Sprintf(".data: embedded content is %d bytes but size is %d", len(d.Data), d.Size)
		}
		if got := d.Digest.Algorithm().FromBytes(d.Data); got != d.Digest {
			return fmt.Sprintf(".data: embedded content has digest %s, not %s", got, d.Digest)
		}
	}
	if d.ArtifactType != "" {
		if p := mediaTypeProblem(d.ArtifactType); p != "" {
			return ".artifactType: " + p
		}
	}
	if d.Platform != nil {
		if d.Platform.Architecture == "" {
			return ".platform.architecture: missing"
		}
		if d.Platform.OS == "" {
			return ".platform.os: missing"
		}
	}
	return ""
}

// mediaTypeProblem says why mt is not a media type of the form type/subtype under RFC 6838
// section 4.2, without parameters (the image-spec descriptor schema), or returns "".
func mediaTypeProblem(mt string) string {
	if mt == "" {
		return "media type is empty"
	}
	typ, sub, ok := strings.Cut(mt, "/")
	if !ok {
		return fmt.Sprintf("%s is not a media type: no '/' between type and subtype", quoteShort(mt))
	}
	if p := restrictedNameProblem(typ); p != "" {
		return fmt.Sprintf("%s is not a media type: type %s", quoteShort(mt), p)
	}
	if p := restrictedNameProblem(sub); p != "" {
		return fmt.Sprintf("%s is not a media type: subtype %s", quoteShort(mt), p)
	}
	return ""
}

// restrictedNameProblem checks one side of a media type against RFC 6838's
// restricted-name = restricted-name-first *126restricted-name-chars.
func restrictedNameProblem(s string) string {
	if s == "" {
		return "is empty"
	}
	if len(s) > maxRestrictedName {
		return fmt.Sprintf("is %d characters long, at most %d are allowed", len(s), maxRestrictedName)
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		alnum := 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9'
		if i == 0 && !alnum {
			return "must start with a letter or digit"
		}
		if !alnum && !strings.ContainsRune("!#$&-^_.+", rune(b)) {
			return fmt.Sprintf("contains %q, which RFC 6838 does not allow", b)
		}
	}
	return ""
}

// jsonProblem turns an encoding/json decoding error for the value at path into a message
// that names the field and what was wrong with it.
func jsonProblem(path string, err error) string {
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	var b64Err base64.CorruptInputError
	switch {
	case errors.As(err, &syntaxErr):
		return fmt.Sprintf("body is not valid JSON: %v (at byte offset %d)", syntaxErr, syntaxErr.Offset)
	case errors.As(err, &typeErr):
		field := path
		if typeErr.Field != "" {
			if field != "" {
				field += "."
			}
			field += typeErr.Field
		}
		if field == "" {
			field = "body"
		}
		return fmt.Sprintf("%s: JSON %s where %s is expected", field, clip(typeErr.Value), jsonKind(typeErr.Type))
	case errors.As(err, &b64Err):
		// []byte is the only base64 field a descriptor has.
		return fmt.Sprintf("%s.data: not valid base64 (at byte %d)", path, int64(b64Err))
	}
	return fmt.Sprintf("%s: %v", path, err)
}

// jsonKind names the JSON value a Go type decodes from.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "another value"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return "a base64 string"
		}
		return "an array"
	case reflect.Map, reflect.Struct, reflect.Pointer:
		return "an object"
	}
	return "another value"
}

package registrycache

import (
	"fmt"
	"strings"

	"github.com/berth-registry/berth/runner/build"
)

// ParseSpec parses a --cache-to or --cache-from value:
// "type=registry,ref=REF[,mode=min|max]", or a bare REF. The mode is
// CacheMin unless mode=max.
func ParseSpec(s string) (ref string, mode build.CacheMode, err error) {
	if !strings.Contains(s, "=") {
		if s == "" {
			return "", 0, fmt.Errorf("%w: an empty cache reference", ErrInvalid)
		}
		return s, build.CacheMin, nil
	}
	typ := ""
	for _, f := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "type":
			typ = v
		case "ref":
			ref = v
		case "mode":
			switch v {
			case "min":
				mode = build.CacheMin
			case "max":
				mode = build.CacheMax
			default:
				return "", 0, fmt.Errorf("%w: %q: mode %q: want min or max", ErrInvalid, s, v)
			}
		case "ignore-error", "oci-mediatypes", "image-manifest", "compression":
			// buildx's options of the same cache: the format is fixed.
		default:
			return "", 0, fmt.Errorf("%w: %q: unknown field %q", ErrInvalid, s, k)
		}
	}
	if typ != "registry" {
		return "", 0, fmt.Errorf("%w: %q: type %q: only type=registry is supported", ErrInvalid, s, typ)
	}
	if ref == "" {
		return "", 0, fmt.Errorf("%w: %q: no ref=", ErrInvalid, s)
	}
	return ref, mode, nil
}

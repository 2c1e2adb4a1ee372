package build

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// maxSecretSize bounds a secret's value, as BuildKit bounds it.
const maxSecretSize = 500 << 10

// ParseSecret parses a --secret value, as docker buildx does:
// id=ID[,src=FILE|,env=VAR][,type=file|env]. Without src and env, the
// environment variable ID is read if set, else the file ID. It returns
// the ID and the value, read from the file or the environment (lookup,
// os.LookupEnv when nil). Errors wrap ErrInvalid or ErrNotFound.
func ParseSecret(s string, lookup func(string) (string, bool)) (string, []byte, error) {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	var typ, id, src, env string
	for _, field := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(field, "=")
		if !ok {
			return "", nil, fmt.Errorf("%w: --secret %q: field %q must be a key=value pair", ErrInvalid, s, field)
		}
		switch strings.ToLower(k) {
		case "type":
			if v != "file" && v != "env" {
				return "", nil, fmt.Errorf("%w: --secret %q: unsupported secret type %q", ErrInvalid, s, v)
			}
			typ = v
		case "id":
			id = v
		case "src", "source":
			src = v
		case "env":
			env = v
		default:
			return "", nil, fmt.Errorf("%w: --secret %q: unexpected key %q", ErrInvalid, s, k)
		}
	}
	if typ == "env" && env == "" {
		env, src = src, ""
	}
	if id == "" {
		switch {
		case src != "":
			id = src[strings.LastIndexByte(src, '/')+1:]
		case env != "":
			id = env
		default:
			return "", nil, fmt.Errorf("%w: --secret %q: no id", ErrInvalid, s)
		}
	}
	if src == "" && env == "" {
		if _, ok := lookup(id); ok {
			env = id
		} else {
			src = id
		}
	}
	if env != "" {
		v, ok := lookup(env)
		if !ok {
			return "", nil, fmt.Errorf("%w: --secret %q: environment variable %s is not set", ErrNotFound, s, env)
		}
		return id, []byte(v), nil
	}
	f, err := os.Open(src)
	if err != nil {
		return "", nil, fmt.Errorf("%w: --secret %q: %v", ErrNotFound, s, err)
	}
	defer f.Close()
	buf := make([]byte, maxSecretSize+1)
	n, err := io.ReadFull(f, buf)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return "", nil, fmt.Errorf("--secret %q: reading %s: %w", s, src, err)
	}
	if n > maxSecretSize {
		return "", nil, fmt.Errorf("%w: --secret %q: %s is larger than %d bytes", ErrInvalid, s, src, maxSecretSize)
	}
	return id, buf[:n], nil
}

package build

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/moby/patternmatcher/ignorefile"
)

// LoadDockerfile fills opts' Dockerfile, DockerfileName, ContextDir and
// Ignore as `docker build` finds them: contextDir "-" (or file "-") reads
// the Dockerfile from stdin and builds without a context; else file
// (default contextDir/Dockerfile) is read, and the ignore patterns come
// from file.dockerignore beside it when there is one, else from
// contextDir/.dockerignore. Errors about the arguments wrap ErrInvalid.
func LoadDockerfile(contextDir, file string, stdin io.Reader, opts *Options) error {
	if contextDir == "-" || file == "-" {
		if contextDir != "-" || (file != "" && file != "-") {
			return fmt.Errorf("%w: a Dockerfile from stdin goes with CONTEXT -, and without -f FILE", ErrInvalid)
		}
		df, err := io.ReadAll(stdin)
		if err != nil {
			return fmt.Errorf("reading the Dockerfile from stdin: %w", err)
		}
		opts.Dockerfile, opts.DockerfileName = df, "Dockerfile"
		return nil
	}
	st, err := os.Stat(contextDir)
	if err != nil {
		return fmt.Errorf("%w: build context: %w", ErrInvalid, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("%w: build context %s is not a directory", ErrInvalid, contextDir)
	}
	opts.ContextDir = contextDir
	if file == "" {
		file = filepath.Join(contextDir, "Dockerfile")
	}
	df, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("%w: reading the Dockerfile: %w", ErrInvalid, err)
	}
	opts.Dockerfile, opts.DockerfileName = df, filepath.Base(file)
	ignore := file + ".dockerignore"
	if _, err := os.Stat(ignore); err != nil {
		ignore = filepath.Join(contextDir, ".dockerignore")
	}
	f, err := os.Open(ignore)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if opts.Ignore, err = ignorefile.ReadAll(f); err != nil {
		return fmt.Errorf("%s: %w", ignore, err)
	}
	return nil
}

// SourceDateEpoch is the time of a reproducible build: the
// SOURCE_DATE_EPOCH build arg, else the environment's (lookupEnv), which
// is then also set as the build arg, as docker buildx does; nil without
// either. A value that is not seconds since 1970 wraps ErrInvalid.
func SourceDateEpoch(args map[string]string, lookupEnv func(string) (string, bool)) (*time.Time, error) {
	v, ok := args[SourceDateEpochArg]
	if !ok {
		if v, ok = lookupEnv(SourceDateEpochArg); !ok || v == "" {
			return nil, nil
		}
		args[SourceDateEpochArg] = v
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("%w: %s=%q: want seconds since 1970", ErrInvalid, SourceDateEpochArg, v)
	}
	t := time.Unix(n, 0).UTC()
	return &t, nil
}

// KeyValues parses the K=V values of a flag (--build-arg, --label); with
// lookupEnv, a lone K takes the environment's value (and is left out when
// unset), else the empty value. An empty K wraps ErrInvalid.
func KeyValues(flag string, kvs []string, lookupEnv func(string) (string, bool)) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if k == "" {
			return nil, fmt.Errorf("%w: %s %q: want K=V", ErrInvalid, flag, kv)
		}
		if !ok && lookupEnv != nil {
			if v, ok = lookupEnv(k); !ok {
				continue
			}
		}
		out[k] = v
	}
	return out, nil
}

package dockerfile_test

import (
	"errors"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/runner/build/dockerfile"
)

// errNoImage is what the fuzz resolver answers for an image it does not have.
var errNoImage = errors.New("no such image")

// FuzzConvert checks what berth build adds around BuildKit's parser: a
// Dockerfile is refused with ErrSyntax, ErrInvalid, ErrUnsupported or the
// resolver's error, or converted into a plan whose paths are absolute and
// clean (COPY destinations, working directories, mount targets), whose
// mount sources stay inside their roots, whose --chmod and mount modes are
// permission bits and whose stage references point back, never forward.
func FuzzConvert(f *testing.F) {
	// The integration suite's Dockerfiles, which BuildKit's results are compared with.
	files, _ := filepath.Glob(filepath.Join("..", "..", "..", "integration", "testdata", "build", "*", "Dockerfile"))
	if len(files) < 10 {
		f.Fatalf("seed Dockerfiles: %q", files)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, "")
	}
	for _, s := range []string{
		"FROM base:1\nRUN --mount=type=cache,target=../../x,mode=0100000000644,uid=4294967296 true",
		"FROM base:1\nRUN --mount=type=bind,source=../../../etc,target=/x true",
		"FROM base:1\nRUN --mount=type=secret,id=../../x,target=rel true\nRUN --mount=type=secret,env=TOK true",
		"FROM base:1\nRUN --mount=type=tmpfs,target=/t,size=-5 true",
		"FROM base:1\nCOPY --chmod=17777 a b\nCOPY --chmod=-1 a b\nCOPY --chown=a:b:c a ../../x",
		"FROM base:1\nRUN <<../../etc/passwd\n#!/bin/sh\necho\n../../etc/passwd\n",
		"FROM base:1 AS a\nCOPY --from=b x y\nFROM base:1 AS b\nRUN --mount=from=a,target=/m true",
		"ARG X=$(boom)\nFROM ${X:-base:1}\nWORKDIR ../../..\nCOPY . .",
		"FROM scratch\nSTOPSIGNAL 99\nEXPOSE 80-70/tcp",
	} {
		f.Add([]byte(s), "")
	}
	resolve := func(ref string) (dockerfile.Image, error) {
		if ref == "base:1" {
			return dockerfile.Image{ID: digest.FromString(ref)}, nil
		}
		return dockerfile.Image{}, errNoImage
	}
	f.Fuzz(func(t *testing.T, df []byte, target string) {
		p, err := dockerfile.Convert(df, dockerfile.Options{Target: target, BuildArgs: map[string]string{"X": "base:1"}}, resolve)
		if err != nil {
			for _, e := range []error{dockerfile.ErrSyntax, dockerfile.ErrInvalid, dockerfile.ErrUnsupported, errNoImage} {
				if errors.Is(err, e) {
					return
				}
			}
			t.Fatalf("Convert: %v wraps none of its errors", err)
		}
		clean := func(what, p string) {
			if !path.IsAbs(p) || path.Clean(p) != strings.TrimSuffix(p, "/") && p != "/" {
				t.Fatalf("%s %q is not absolute and clean", what, p)
			}
		}
		inside := func(what, p string) {
			if p != "." && (path.IsAbs(p) || path.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../")) {
				t.Fatalf("%s %q leaves its root", what, p)
			}
		}
		for i, s := range p.Stages {
			if s.BaseStage >= i {
				t.Fatalf("stage %d builds on stage %d", i, s.BaseStage)
			}
			for _, st := range s.Steps {
				if st.Kind == dockerfile.Workdir || st.Kind == dockerfile.Run && st.Dir != "" { // "" runs in "/"
					clean("working directory", st.Dir)
				}
				if c := st.Copy; c != nil {
					clean("COPY destination", c.Dest)
					if c.Chmod > 0o7777 || c.FromStage >= i {
						t.Fatalf("COPY --chmod %o --from stage %d in stage %d", c.Chmod, c.FromStage, i)
					}
				}
				for _, m := range st.Mounts {
					if m.Target != "" || m.Type != dockerfile.MountSecret {
						clean("mount target", m.Target)
						if m.Target == "/" {
							t.Fatalf("a mount over the root: %+v", m)
						}
					}
					if m.Type == dockerfile.MountFile && !strings.HasPrefix(m.Target, "/dev/pipes/") {
						t.Fatalf("a heredoc script mounted at %q", m.Target)
					}
					if m.Type == dockerfile.MountBind || m.Type == dockerfile.MountCache {
						inside("mount source", m.Source)
					}
					if m.Mode > 0o7777 || m.UID < 0 || m.GID < 0 || int64(m.UID) > 1<<32-2 || int64(m.GID) > 1<<32-2 || m.FromStage >= i || m.Size < 0 {
						t.Fatalf("mount %+v in stage %d", m, i)
					}
				}
			}
		}
	})
}

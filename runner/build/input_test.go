package build_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berth-registry/berth/runner/build"
)

func TestLoadDockerfile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("Dockerfile", "FROM scratch\n")
	write(".dockerignore", "*.log\n")
	write("ci.Dockerfile", "FROM scratch\nLABEL ci=1\n")
	write("ci.Dockerfile.dockerignore", "secret\n!keep\n")

	var o build.Options
	if err := build.LoadDockerfile(dir, "", nil, &o); err != nil {
		t.Fatal(err)
	}
	if string(o.Dockerfile) != "FROM scratch\n" || o.DockerfileName != "Dockerfile" || o.ContextDir != dir ||
		!slices.Equal(o.Ignore, []string{"*.log"}) {
		t.Errorf("default Dockerfile: %+v", o)
	}
	o = build.Options{}
	if err := build.LoadDockerfile(dir, filepath.Join(dir, "ci.Dockerfile"), nil, &o); err != nil {
		t.Fatal(err)
	}
	if o.DockerfileName != "ci.Dockerfile" || !slices.Equal(o.Ignore, []string{"secret", "!keep"}) {
		t.Errorf("-f ci.Dockerfile: name %q, ignore %q; want its own .dockerignore", o.DockerfileName, o.Ignore)
	}
	o = build.Options{}
	if err := build.LoadDockerfile("-", "", strings.NewReader("FROM scratch\nENV A=1\n"), &o); err != nil {
		t.Fatal(err)
	}
	if string(o.Dockerfile) != "FROM scratch\nENV A=1\n" || o.ContextDir != "" {
		t.Errorf("stdin: %+v", o)
	}
	for _, c := range []struct{ ctx, file string }{
		{"-", "ci.Dockerfile"},
		{filepath.Join(dir, "absent"), ""},
		{filepath.Join(dir, "Dockerfile"), ""},
		{dir, filepath.Join(dir, "absent.Dockerfile")},
	} {
		if err := build.LoadDockerfile(c.ctx, c.file, strings.NewReader(""), &build.Options{}); !errors.Is(err, build.ErrInvalid) {
			t.Errorf("LoadDockerfile(%q, %q): %v, want ErrInvalid", c.ctx, c.file, err)
		}
	}
}

func TestSourceDateEpochAndKeyValues(t *testing.T) {
	env := map[string]string{"SOURCE_DATE_EPOCH": "1700000000", "FROM_ENV": "e"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }

	args, err := build.KeyValues("--build-arg", []string{"A=1", "FROM_ENV", "UNSET", "B="}, lookup)
	if err != nil || len(args) != 3 || args["A"] != "1" || args["FROM_ENV"] != "e" || args["B"] != "" {
		t.Fatalf("build args = %v, %v", args, err)
	}
	if labels, err := build.KeyValues("--label", []string{"x"}, nil); err != nil || labels["x"] != "" || len(labels) != 1 {
		t.Errorf("a lone label = %v, %v; want it empty", labels, err)
	}
	if _, err := build.KeyValues("--label", []string{"=v"}, nil); !errors.Is(err, build.ErrInvalid) {
		t.Errorf("an empty key: %v, want ErrInvalid", err)
	}

	epoch, err := build.SourceDateEpoch(args, lookup)
	if err != nil || epoch == nil || epoch.Unix() != 1700000000 || args["SOURCE_DATE_EPOCH"] != "1700000000" {
		t.Errorf("from the environment: %v, %v, args %v", epoch, err, args)
	}
	args["SOURCE_DATE_EPOCH"] = "5"
	if epoch, err := build.SourceDateEpoch(args, lookup); err != nil || epoch.Unix() != 5 {
		t.Errorf("the build arg wins: %v, %v", epoch, err)
	}
	if epoch, err := build.SourceDateEpoch(map[string]string{}, func(string) (string, bool) { return "", false }); epoch != nil || err != nil {
		t.Errorf("neither: %v, %v", epoch, err)
	}
	if _, err := build.SourceDateEpoch(map[string]string{"SOURCE_DATE_EPOCH": "yesterday"}, lookup); !errors.Is(err, build.ErrInvalid) {
		t.Errorf("a bad epoch: %v, want ErrInvalid", err)
	}
}

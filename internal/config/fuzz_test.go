package config_test

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/config"
)

// FuzzLoad checks the strict YAML config reader: a file is refused with an
// error on one line, or loaded into a config that,
// written back with WriteYAML, loads as the same config.
func FuzzLoad(f *testing.F) {
	// The shipped configs (registry, S3, in-memory, token auth, pull-through
	// proxy) and the golden tests' inputs.
	seeds, _ := filepath.Glob(filepath.Join("..", "..", "configs", "*.yaml"))
	golden, _ := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	seeds = append(seeds, golden...)
	if len(seeds) < 5 {
		f.Fatalf("seed configs: %q", seeds)
	}
	for _, name := range seeds {
		if filepath.Base(name) == "policy.yaml" {
			continue // the token issuer's, not a config
		}
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{"http: {addr: ':5000'}\nhttp: {}", "http:\n  adr: x", "---\n---", "[]", "http: [1]",
		"storage: {filesystem: {rootdirectory: /x}}", "gc: {interval: 5}", "proxy: {upstreams: [{url: 'http://[::1'}]}",
		"a: &a [*a, *a]", "log: {level: ~}", "\t", "http: {addr: !!binary aGk=}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "berth.yaml")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := config.Load(path, nil)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error on more than one line: %q", err)
			}
			return
		}
		_ = c.Redacted()
		var out bytes.Buffer
		if err := c.WriteYAML(&out); err != nil {
			t.Fatalf("WriteYAML of a loaded config: %v", err)
		}
		again := filepath.Join(dir, "again.yaml")
		if err := os.WriteFile(again, out.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		c2, err := config.Load(again, nil)
		if err != nil {
			t.Fatalf("the config written back does not load: %v\n%s", err, out.Bytes())
		}
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("config changed on the way through WriteYAML:\n%+v\n%+v\n%s", c, c2, out.Bytes())
		}
	})
}

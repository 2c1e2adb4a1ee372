package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestPushCommands runs pull, tag and push in-process against a registry.
func TestPushCommands(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the pulled image goes into the layer store")
	}
	host, pushImage := imageRegistry(t)
	pushImage("team/tool", "1.0", map[string]string{"app/": "", "app/hello.txt": "hello\n"}, ocispec.ImageConfig{Cmd: []string{"true"}})
	state := t.TempDir()
	env := map[string]string{"BERTH_DEFAULT_REGISTRY": host, "DOCKER_CONFIG": t.TempDir()}
	berth := func(cmd string, args ...string) (string, string, int) {
		ta := newTestApp(env)
		code := ta.run(append([]string{cmd, "--state", state}, args...))
		return ta.stdout.String(), ta.stderr.String(), code
	}
	if _, errOut, code := berth("pull", "-q", "team/tool:1.0"); code != exitOK {
		t.Fatalf("pull: exit %d, %s", code, errOut)
	}
	for _, tag := range []string{"team/copy:a", "team/copy:b"} {
		if _, errOut, code := berth("tag", "team/tool:1.0", tag); code != exitOK {
			t.Fatalf("tag %s: exit %d, %s", tag, code, errOut)
		}
	}
	digestFile := filepath.Join(t.TempDir(), "digest")
	out, errOut, code := berth("push", "--digestfile", digestFile, "team/copy:a")
	m := regexp.MustCompile(`^a: digest: (sha256:[0-9a-f]{64}) size: \d+\n$`).FindStringSubmatch(out)
	if code != exitOK || m == nil {
		t.Fatalf("push: exit %d\nstdout %q\nstderr %s", code, out, errOut)
	}
	if !strings.Contains(errOut, "The push refers to repository ["+host+"/team/copy]") || !strings.Contains(errOut, "Mounted from team/tool") {
		t.Errorf("push progress: %q", errOut)
	}
	if b, err := os.ReadFile(digestFile); err != nil || string(b) != m[1] {
		t.Errorf("--digestfile holds %q, %v; want %s", b, err, m[1])
	}
	out, errOut, code = berth("push", "-q", "--all-tags", "team/copy")
	if code != exitOK || out != host+"/team/copy:a\n"+host+"/team/copy:b\n" || errOut != "" {
		t.Errorf("push -q --all-tags: exit %d\nstdout %q\nstderr %q", code, out, errOut)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"push"}, exitUsage, "accepts 1 arg"},
		{[]string{"push", "UPPER/case"}, exitUsage, "invalid image reference"},
		{[]string{"push", "--all-tags", "team/copy:a"}, exitUsage, "without a tag"},
		{[]string{"push", "--all-tags", "--digestfile", "f", "team/copy"}, exitUsage, "--digestfile"},
		{[]string{"push", "team/none:1"}, exitFailure, "no such image"},
		{[]string{"tag", "team/tool:1.0"}, exitUsage, "accepts 2 arg"},
		{[]string{"tag", "team/none:1", "team/x:1"}, exitFailure, "no such image"},
		{[]string{"tag", "team/tool:1.0", "team/x@sha256:" + strings.Repeat("0", 64)}, exitUsage, "digest"},
	} {
		if _, errOut, code := berth(tc.args[0], tc.args[1:]...); code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("berth %q: exit %d, stderr %q; want %d and %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
}

package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/berth-registry/berth/runner/container"
)

// TestContainerInitRunsEarly: berth re-executed as a container's init
// runs the init while the runtime initializes packages, before the
// registry's dependencies are initialized (they cost a container start
// about 2 ms). Without a parent (no socket on fd 3) the init fails at once,
// which is enough to see the order.
func TestContainerInitRunsEarly(t *testing.T) {
	cmd := exec.Command(os.Args[0], container.InitArg)
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	out, err := cmd.CombinedOutput()
	if ee := (*exec.ExitError)(nil); err == nil || !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("init without a parent: %v, want exit status 1; output:\n%s", err, out)
	}
	trace := string(out)
	if !strings.Contains(trace, "init runtime @") {
		t.Fatalf("no init trace in the output (GODEBUG=inittrace=1):\n%s", trace)
	}
	if !strings.Contains(trace, "reading the config") {
		t.Fatalf("the init did not run (no error about its config):\n%s", trace)
	}
	for _, pkg := range []string{
		"github.com/distribution/reference",
		"github.com/prometheus/client_golang/prometheus",
		"github.com/aws/aws-sdk-go-v2/service/s3/internal/endpoints",
		"github.com/klauspost/compress/zstd",
	} {
		if strings.Contains(trace, "init "+pkg+" @") {
			t.Errorf("%s was initialized before the container init ran", pkg)
		}
	}
}

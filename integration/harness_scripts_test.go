package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	conformanceSummary     = regexp.MustCompile(`^conformance: (\d+) passed, (\d+) failed$`)
	conformanceNextSummary = regexp.MustCompile(`^conformance-next: (\d+) passed, (\d+) failed, (\d+) skipped$`)
	clientsSummary         = regexp.MustCompile(`^clients: (\d+) passed, (\d+) failed$`)
)

// TestConformance runs the OCI distribution-spec conformance suites (the
// pinned one, all four categories, automatic cross-mount expected; and the
// newest runner with every opt-in) against each storage driver.
func TestConformance(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	for _, driver := range []string{Filesystem, InMemory} {
		t.Run(driver, func(t *testing.T) {
			root := ""
			if driver == Filesystem {
				root = t.TempDir()
			}
			srv := startServer(t, underTest(), driver, root)
			runConformance(t, srv.URL)
		})
	}
}

// TestClients runs push/pull round trips with crane, oras, regctl, skopeo and
// podman (the harness's clients.sh).
func TestClients(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	srv := startServer(t, underTest(), Filesystem, t.TempDir())
	runClients(t, srv.URL)
}

// runConformance runs both conformance suites against the registry at url:
// the pinned one (conformance.sh, automatic cross-mount expected) and the
// newest runner with every opt-in (conformance-next.sh). Each must pass
// everything it runs.
func runConformance(t *testing.T, url string) {
	t.Helper()
	runConformanceEnv(t, url, append(os.Environ(), "OCI_AUTOMATIC_CROSSMOUNT=1"))
}

// runConformanceRedirected is runConformance for berth on S3 with blob GETs
// redirected to presigned URLs: the bucket answers those GETs, and no S3
// object can carry a Docker-Content-Digest header, so the newest runner's
// digest-header opt-in for blobs is off there (HEADs and every other
// response of berth's still carry it). Everything else must pass.
func runConformanceRedirected(t *testing.T, url string) {
	t.Helper()
	runConformanceEnv(t, url, append(os.Environ(), "OCI_AUTOMATIC_CROSSMOUNT=1", "CONFORMANCE_NEXT_OFF=BLOBS_DIGEST_HEADER"))
}

// runConformanceEnv is runConformance with the scripts' environment.
func runConformanceEnv(t *testing.T, url string, env []string) {
	t.Helper()
	runPinnedConformance(t, url, env)
	runConformanceNext(t, url, env, nil)
}

// runConformanceNext runs conformance-next.sh against url and fails t
// unless it ends with "N passed, 0 failed, 0 skipped": every category is on,
// the opt-ins included, and Berth implements them all, so a skip means a
// feature went missing. A skipped test whose name contains one of
// allowSkip is tolerated (and logged).
func runConformanceNext(t *testing.T, url string, env []string, allowSkip []string) {
	t.Helper()
	report := t.TempDir()
	env = append(env[:len(env):len(env)], "CONFORMANCE_REPORT_DIR="+report)
	n, last, err := runSummarized(t, env, 10*time.Minute, "conformance-next.sh", url, conformanceNextSummary)
	passed, failed, skipped := n[0], n[1], n[2]
	switch {
	case failed != 0 || passed == 0:
		t.Errorf("%s (the failing tests are listed above)", last)
	case skipped != 0:
		out, rerr := os.ReadFile(filepath.Join(report, "out.txt"))
		if rerr != nil {
			t.Fatalf("%s, and its report is unreadable: %v", last, rerr)
		}
		var unexpected []string
		for line := range strings.Lines(string(out)) {
			name, ok := strings.CutSuffix(strings.TrimSpace(line), ": Skip")
			if !ok || !strings.HasPrefix(name, "OCI Conformance Test/") {
				continue
			}
			if slices.ContainsFunc(allowSkip, func(s string) bool { return strings.Contains(name, s) }) {
				t.Logf("skipped, as expected here: %s", name)
			} else {
				unexpected = append(unexpected, name)
			}
		}
		if len(unexpected) > 0 || err != nil {
			t.Errorf("%s: a skip is a feature the runner found missing: %q (%v)", last, unexpected, err)
		}
	case err != nil:
		t.Errorf("conformance-next.sh: %v after %q", err, last)
	}
}

// runPinnedConformance runs conformance.sh against url and fails t unless it
// ends with "N passed, 0 failed".
func runPinnedConformance(t *testing.T, url string, env []string) {
	t.Helper()
	n, last, err := runSummarized(t, env, 15*time.Minute, "conformance.sh", url, conformanceSummary)
	passed, failed := n[0], n[1]
	if failed != 0 || passed == 0 {
		t.Errorf("%s (the failing specs are listed above)", last)
	} else if err != nil {
		t.Errorf("conformance.sh: %v after %q", err, last)
	}
}

// runSummarized runs the harness script against url with env and returns
// the numbers of its last line, which summary must match (t fails at once
// otherwise), the line, and the script's error.
func runSummarized(t *testing.T, env []string, timeout time.Duration, script, url string, summary *regexp.Regexp) ([]int, string, error) {
	t.Helper()
	lines, err := runLogged(t, env, timeout, filepath.Join(harnessDir(t), script), url)
	last := lastLine(lines)
	m := summary.FindStringSubmatch(last)
	if m == nil {
		t.Fatalf("%s did not end with its summary line (%v); last line: %q", script, err, last)
	}
	n := make([]int, len(m)-1)
	for i, s := range m[1:] {
		n[i], _ = strconv.Atoi(s)
	}
	return n, last, err
}

// runClients runs clients.sh against the registry at url and fails t unless
// all five clients pass.
func runClients(t *testing.T, url string) {
	t.Helper()
	runClientsEnv(t, url, os.Environ())
}

// runClientsEnv is runClients with the script's environment.
func runClientsEnv(t *testing.T, url string, env []string) {
	t.Helper()
	last, err := clientsSummaryLine(t, url, env)
	if last != "clients: 5 passed, 0 failed" {
		if clientsSummary.MatchString(last) {
			t.Fatalf("want %q, got %q (FAIL/skip lines above say which client and step)", "clients: 5 passed, 0 failed", last)
		}
		t.Fatalf("clients.sh did not end with its summary line (%v); last line: %q", err, last)
	}
	if err != nil {
		t.Errorf("clients.sh: %v after %q", err, last)
	}
}

// clientsSummaryLine runs clients.sh against url with env and returns its last line.
func clientsSummaryLine(t *testing.T, url string, env []string) (string, error) {
	t.Helper()
	lines, err := runLogged(t, env, 10*time.Minute, filepath.Join(harnessDir(t), "clients.sh"), url)
	return lastLine(lines), err
}

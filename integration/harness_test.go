package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// integrationMode: BERTH_INTEGRATION=1 runs the tests and turns missing
// prerequisites into failures.
var integrationMode = os.Getenv("BERTH_INTEGRATION") == "1"

var buildDir string // removed by TestMain

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// needIntegration skips t unless BERTH_INTEGRATION=1.
func needIntegration(t *testing.T) {
	t.Helper()
	if !integrationMode {
		t.Skip("integration test: needs the built berth binary and external clients; run with BERTH_INTEGRATION=1 (make test does)")
	}
}

// prerequisite fails t, with a recognisable prefix, unless ok. Tests call it
// only after needIntegration: a missing prerequisite fails, never skips.
func prerequisite(t *testing.T, ok bool, format string, args ...any) {
	t.Helper()
	if !ok {
		t.Fatalf("missing prerequisite: "+format, args...)
	}
}

// harnessDir is the shared harness (BERTH_HARNESS, default ../../shared/harness).
func harnessDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("BERTH_HARNESS")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "harness")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = os.Stat(filepath.Join(abs, "conformance.sh"))
	prerequisite(t, err == nil, "harness scripts not found in %s (set BERTH_HARNESS): %v", abs, err)
	return abs
}

var (
	binDirOnce sync.Once
	binDir     string
	binDirErr  error
)

// toolEnv is the environment for client commands: the harness's bin dir
// (crane, regctl, oras) first on PATH, and private client configs so the
// user's credentials and settings stay out of the tests.
func toolEnv(t *testing.T) []string {
	t.Helper()
	h := harnessDir(t)
	binDirOnce.Do(func() {
		out, err := exec.Command(filepath.Join(h, "install-clients.sh"), "--bin-dir").Output()
		binDir, binDirErr = strings.TrimSpace(string(out)), err
	})
	if binDirErr != nil {
		t.Fatalf("install-clients.sh --bin-dir: %v", binDirErr)
	}
	cfg := t.TempDir()
	if err := os.WriteFile(filepath.Join(cfg, "auth.json"), []byte(`{"auths":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	return append(os.Environ(),
		"PATH="+binDir+":"+os.Getenv("PATH")+":/usr/local/go/bin",
		"DOCKER_CONFIG="+cfg,
		"REGISTRY_AUTH_FILE="+filepath.Join(cfg, "auth.json"),
		"REGCTL_CONFIG="+filepath.Join(cfg, "regctl.json"),
	)
}

// needTools fails t unless every command is on the tool PATH.
func needTools(t *testing.T, env []string, names ...string) {
	t.Helper()
	for _, name := range names {
		_, err := lookPathIn(env, name)
		prerequisite(t, err == nil, "%v (make test installs it: install-clients.sh all docker-registry)", err)
	}
}

// lookPathIn finds name on the PATH of env (exec.Command would use ours).
func lookPathIn(env []string, name string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	path := os.Getenv("PATH")
	for _, kv := range env {
		if p, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = p
		}
	}
	for _, dir := range filepath.SplitList(path) {
		f := filepath.Join(dir, name)
		if fi, err := os.Stat(f); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return f, nil
		}
	}
	return "", fmt.Errorf("%s not found on PATH", name)
}

// underTest is the registry the tests are about (BERTH_TEST_REGISTRY).
func underTest() string {
	if k := os.Getenv("BERTH_TEST_REGISTRY"); k != "" {
		return k
	}
	return Berth
}

var (
	berthOnce sync.Once
	berthBin  string
	berthErr  error
)

// berthBinary builds ./cmd/berth once per test run (or uses BERTH_BINARY).
func berthBinary(t *testing.T) string {
	t.Helper()
	berthOnce.Do(func() {
		if b := os.Getenv("BERTH_BINARY"); b != "" {
			berthBin, berthErr = filepath.Abs(b)
			return
		}
		buildDir, berthErr = os.MkdirTemp("", "berth-integration-bin-")
		if berthErr != nil {
			return
		}
		start := time.Now()
		berthBin, berthErr = BuildBerth(context.Background(), "..", buildDir)
		if berthErr == nil {
			fmt.Fprintf(os.Stderr, "integration: built berth in %.1fs\n", time.Since(start).Seconds())
		}
	})
	if berthErr != nil {
		t.Fatalf("cannot build berth: %v", berthErr)
	}
	return berthBin
}

// startServer starts a registry of the given kind and stops it at cleanup,
// printing its log if t failed. root may be "" for InMemory.
func startServer(t *testing.T, kind, driver, root string) *Server {
	t.Helper()
	return startServerWith(t, Options{Kind: kind, Driver: driver, Root: root})
}

// startServerWith is startServer with all the Options; Dir and Binary are
// filled in.
func startServerWith(t *testing.T, o Options) *Server {
	t.Helper()
	kind := o.Kind
	o.Dir = t.TempDir()
	switch kind {
	case Berth:
		o.Binary = berthBinary(t)
	case DockerRegistry:
		_, err := exec.LookPath("docker-registry")
		prerequisite(t, err == nil, "docker-registry not installed (install-clients.sh docker-registry)")
	default:
		t.Fatalf("unknown registry %q (BERTH_TEST_REGISTRY: berth or docker-registry)", kind)
	}
	s, err := Start(t.Context(), o)
	if err != nil {
		t.Fatalf("starting %s: %v", kind, err)
	}
	t.Logf("%s (%s storage) listening on %s, log %s", kind, o.Driver, s.URL, s.LogPath)
	t.Cleanup(func() {
		if !s.stopping.Load() {
			stopServer(t, s)
		}
		if t.Failed() {
			t.Logf("%s log (%s):\n%s", s.Kind, s.LogPath, s.LogTail(60))
		}
	})
	return s
}

// stopServer stops s with SIGTERM and reports a server that needed SIGKILL
// or had exited on its own before.
func stopServer(t *testing.T, s *Server) {
	t.Helper()
	wasRunning := !s.Exited()
	status, err := s.Stop()
	switch {
	case err != nil:
		t.Errorf("stopping %s: %v", s.Kind, err)
	case !wasRunning:
		t.Errorf("%s had exited before the test stopped it (%s)", s.Kind, status)
	default:
		t.Logf("%s on %s stopped (%s)", s.Kind, s.Host, status)
	}
}

// lineLogger writes each complete line to the test log and keeps them all.
type lineLogger struct {
	t      *testing.T
	prefix string
	mu     sync.Mutex
	buf    bytes.Buffer
	lines  []string
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	for {
		i := bytes.IndexByte(l.buf.Bytes(), '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(l.buf.Next(i + 1))
		line = strings.TrimRight(line, "\r\n")
		l.lines = append(l.lines, line)
		l.t.Log(l.prefix + line)
	}
}

func (l *lineLogger) flush() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len() > 0 {
		line := l.buf.String()
		l.buf.Reset()
		l.lines = append(l.lines, line)
		l.t.Log(l.prefix + line)
	}
	return l.lines
}

// runLogged runs a command in its own process group, streams its output to
// the test log line by line, and returns the lines. The whole group is
// terminated if the test's context ends or the timeout passes.
func runLogged(t *testing.T, env []string, timeout time.Duration, name string, args ...string) ([]string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	ll := &lineLogger{t: t, prefix: "| "}
	cmd.Stdout, cmd.Stderr = ll, ll
	t.Logf("$ %s %s", filepath.Base(name), strings.Join(args, " "))
	err := cmd.Run()
	lines := ll.flush()
	if ctx.Err() == context.DeadlineExceeded {
		err = fmt.Errorf("timed out after %v: %w", timeout, err)
	}
	// The group may still hold children that ignored the pipe closing.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	return lines, err
}

// lastLine is the last non-empty line.
func lastLine(lines []string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		if s := strings.TrimSpace(lines[i]); s != "" {
			return s
		}
	}
	return ""
}

// run runs a client command quietly and returns its stdout; on failure the
// error carries the command line and its stderr.
func run(ctx context.Context, env []string, stdout io.Writer, name string, args ...string) error {
	bin, err := lookPathIn(env, name)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, tail(stderr.String(), 15))
	}
	return nil
}

// output runs a client command and returns its trimmed stdout.
func output(ctx context.Context, env []string, name string, args ...string) (string, error) {
	var out bytes.Buffer
	err := run(ctx, env, &out, name, args...)
	return strings.TrimSpace(out.String()), err
}

// readLines returns the non-empty lines of s.
func readLines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out
}

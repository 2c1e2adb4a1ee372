package versitygw

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// startTimeout bounds how long Start waits for the server to answer.
const startTimeout = 20 * time.Second

// Server is a running versitygw, serving one bucket over a temporary
// directory with the posix backend.
type Server struct {
	Endpoint  string // base URL, "http://127.0.0.1:PORT"; address buckets path-style
	AccessKey string // the root account's credentials
	SecretKey string
	Bucket    string // created, empty
	Dir       string // the posix root: the bucket is the directory Dir/Bucket
}

// Require reports whether tests must fail, rather than skip, when versitygw
// is missing: the environment sets BERTH_REQUIRE_S3=1 (as `make test` does).
func Require() bool {
	return os.Getenv("BERTH_REQUIRE_S3") == "1"
}

// Binary returns the versitygw executable to run: $VERSITYGW if set, else
// versitygw on PATH, else $HOME/.cache/berth-tools/versitygw (where `make
// prereqs` installs it). It returns an error saying where it looked if none
// is there.
func Binary() (string, error) {
	if p := os.Getenv("VERSITYGW"); p != "" {
		if err := executable(p); err != nil {
			return "", fmt.Errorf("versitygw: $VERSITYGW: %w", err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("versitygw: not on PATH and no home directory: %w", err)
	}
	p := filepath.Join(home, ".cache", "berth-tools", "versitygw")
	if err := executable(p); err != nil {
		return "", fmt.Errorf("versitygw: not in $VERSITYGW, not on PATH, and %w (install it with `make versitygw`)", err)
	}
	return p, nil
}

func executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", p)
	}
	return nil
}

// Start runs versitygw on a free loopback port over a new temporary
// directory, waits until it answers, creates bucket, and stops the server
// (its whole process group) when t's test ends. If versitygw is missing it
// skips t, or fails it when Require says so.
func Start(t testing.TB, bucket string) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		if Require() {
			t.Fatalf("%v (BERTH_REQUIRE_S3=1: the S3 tests may not skip)", err)
		}
		t.Skipf("skipping the S3 tests: %v", err)
	}
	if !validBucket(bucket) {
		t.Fatalf("versitygw: %q is not a bucket name S3 accepts (3 to 63 lower-case letters, digits, '-' and '.')", bucket)
	}
	dir := t.TempDir()
	// The posix backend serves every directory under its root as a bucket,
	// so creating the directory creates the bucket, with no signed request.
	if err := os.Mkdir(filepath.Join(dir, bucket), 0o755); err != nil {
		t.Fatalf("versitygw: creating bucket %s: %v", bucket, err)
	}
	s := &Server{AccessKey: "berth" + rand.Text()[:12], SecretKey: rand.Text(), Bucket: bucket, Dir: dir}

	// A free port can be taken by someone else between our probe and the
	// server's listen; then the server exits at once and we try another.
	var lastErr error
	for range 3 {
		p, err := s.start(t, bin)
		if err == nil {
			t.Cleanup(p.stop)
			return s
		}
		lastErr = err
	}
	t.Fatalf("versitygw: %v", lastErr)
	return nil
}

// validBucket reports whether name follows S3's rules for bucket names
// (those that matter here: versitygw serves any directory, but answers
// requests for a badly named bucket with 400 Bad Request).
func validBucket(name string) bool {
	if len(name) < 3 || len(name) > 63 || strings.Contains(name, "..") {
		return false
	}
	for i, c := range name {
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case (c == '-' || c == '.') && i > 0 && i < len(name)-1:
		default:
			return false
		}
	}
	return true
}

// process is a started versitygw.
type process struct {
	cmd    *exec.Cmd
	output *syncBuffer
	exited chan struct{} // closed when the process has exited
	err    error         // from Wait, once exited is closed
}

func (s *Server) start(t testing.TB, bin string) (*process, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(bin,
		"--access", s.AccessKey, "--secret", s.SecretKey,
		"--port", addr,
		"--quiet",      // no per-request log lines
		"--keep-alive", // without it every response closes its connection
		"posix", s.Dir)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	newProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, output: out, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	endpoint := "http://" + addr
	if err := p.waitReady(endpoint); err != nil {
		p.stop()
		return nil, fmt.Errorf("%w; output:\n%s", err, out.String())
	}
	s.Endpoint = endpoint
	return p, nil
}

// waitReady polls endpoint until the server answers any HTTP request (an
// anonymous one is denied, which is fine) or exits, or startTimeout passes.
func (p *process) waitReady(endpoint string) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(startTimeout)
	for {
		resp, err := client.Get(endpoint + "/")
		if err == nil {
			resp.Body.Close()
			if resp.Header.Get("Server") != "VERSITYGW" {
				return fmt.Errorf("something other than versitygw answers at %s (Server: %q)", endpoint, resp.Header.Get("Server"))
			}
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("versitygw exited before answering: %v", p.err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("versitygw did not answer at %s within %s: %v", endpoint, startTimeout, err)
		}
	}
}

// stopGrace is how long the server may take to exit on SIGTERM. It exits
// at once unless clients hold idle keep-alive connections (an SDK's pool),
// which its graceful shutdown would wait out for seconds; a test server
// over a temporary directory has nothing to save, so it is killed then.
const stopGrace = 200 * time.Millisecond

// stop ends the process group: SIGTERM, then SIGKILL if it lingers.
func (p *process) stop() {
	signalGroup(p.cmd, false)
	select {
	case <-p.exited:
		return
	case <-time.After(stopGrace):
	}
	signalGroup(p.cmd, true)
	<-p.exited
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	addr, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		return 0, errors.New("listener has no TCP address")
	}
	return addr.Port, nil
}

// syncBuffer collects the server's output; the process writes it from
// goroutines of os/exec while a failing Start reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.TrimSpace(b.buf.String())
}

package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Registry implementations that Start knows how to run.
const (
	Berth          = "berth"
	DockerRegistry = "docker-registry" // Debian's docker-registry (distribution 2.8.2)
	// DistributionV3 is CNCF Distribution v3 (cmd/registry), for bench/:
	// Options.Binary is required. It runs as its container image does,
	// with OpenTelemetry trace export off.
	DistributionV3 = "distribution-v3"
	// VersityGW is not a registry but the S3 server Berth's s3 driver is
	// tested on (github.com/versity/versitygw, posix backend over Root),
	// for bench/; tests use internal/versitygw. Options.S3 gives the bucket
	// (created as the directory Root/Bucket) and the root account's keys;
	// Server.URL is the S3 endpoint.
	VersityGW = "versitygw"
)

// Storage drivers.
const (
	Filesystem = "filesystem"
	InMemory   = "inmemory"
	S3         = "s3" // Berth only; Options.S3 says where
)

// Options describe one registry process.
type Options struct {
	Kind   string    // Berth, DockerRegistry, DistributionV3 or VersityGW
	Binary string    // the executable; default "docker-registry" for DockerRegistry
	Driver string    // Filesystem (default), InMemory or S3
	Root   string    // storage root for Filesystem; required with it
	S3     S3Options // the bucket for S3; Endpoint and Bucket required with it
	// Dir receives the generated config and the server's log (required).
	Dir string
	// Quiet turns the access log off and logs warnings only (for benchmarks).
	Quiet bool
	// Args are extra arguments for Berth's serve command (a hidden
	// profiling flag, for benchmarks).
	Args []string
	// Auth is Berth's auth section, YAML without the "auth:" line, indented
	// by two spaces ("  mode: token\n..."); "" for none.
	Auth string
	// Extra is YAML appended to the config of Berth, docker-registry or
	// Distribution v3: whole top-level sections the other options do not
	// write ("gc:\n  interval: 1s\n", "proxy:\n  remoteurl: ...\n"); ""
	// for none.
	Extra string
	// HTTP and Storage are YAML lines added to Berth's http and storage
	// sections, indented by two spaces ("  maxConnections: 100\n"); "" for
	// none.
	HTTP, Storage string
}

// S3Options point Berth's s3 driver at a bucket of an S3-compatible server,
// addressed path-style.
type S3Options struct {
	Endpoint  string // http://127.0.0.1:PORT
	Bucket    string
	Prefix    string // storage.s3.prefix
	AccessKey string // passed in the environment, not in the config file
	SecretKey string
	// Redirect answers blob GETs with 307 to a presigned URL.
	Redirect bool
}

// Server is a running registry process, in its own process group.
type Server struct {
	Kind    string
	Host    string // 127.0.0.1:PORT
	URL     string // http://127.0.0.1:PORT
	LogPath string // the server's stdout and stderr
	// ConfigPath is the config file written for the server ("" if none),
	// which "berth gc --config" can read to work on the same storage.
	ConfigPath string

	cmd      *exec.Cmd
	exited   chan struct{}
	err      error       // set when exited is closed
	stopping atomic.Bool // Stop was called
}

// Start writes a config for o, starts the registry on a free loopback port and
// returns once GET /v2/ answers (any status below 500). It retries with a new
// port if the process exits before answering, which covers a lost port race.
func Start(ctx context.Context, o Options) (*Server, error) {
	if o.Driver == "" {
		o.Driver = Filesystem
	}
	if o.Driver == Filesystem && o.Root == "" {
		return nil, errors.New("filesystem storage needs a root directory")
	}
	if o.Driver == S3 && (o.Kind != Berth || o.S3.Endpoint == "" || o.S3.Bucket == "") {
		return nil, errors.New("s3 storage needs berth, an endpoint and a bucket")
	}
	if o.Kind == VersityGW {
		if o.Binary == "" || o.Root == "" || o.S3.Bucket == "" || o.S3.AccessKey == "" || o.S3.SecretKey == "" {
			return nil, errors.New("versitygw needs its binary, a root directory, a bucket and keys")
		}
		// The posix backend serves each directory under its root as a bucket.
		if err := os.MkdirAll(filepath.Join(o.Root, o.S3.Bucket), 0o755); err != nil {
			return nil, err
		}
	}
	if o.Dir == "" {
		return nil, errors.New("Options.Dir is required")
	}
	if o.Kind == DistributionV3 && o.Binary == "" {
		return nil, errors.New("distribution v3 needs its binary")
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var s *Server
		s, err = start(ctx, o)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, errExitedEarly) {
			return nil, err
		}
	}
	return nil, err
}

var errExitedEarly = errors.New("registry exited before answering")

func start(ctx context.Context, o Options) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	host := fmt.Sprintf("127.0.0.1:%d", port)
	cfgPath := filepath.Join(o.Dir, o.Kind+"-config.yml")
	bin, args, config := command(o, host, cfgPath)
	if strings.Contains(bin, "/") { // the process runs in o.Dir
		if bin, err = filepath.Abs(bin); err != nil {
			return nil, err
		}
	}
	if config != "" {
		if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
			return nil, err
		}
	}
	logPath := filepath.Join(o.Dir, o.Kind+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(logf, "=== %s %s (%s)\n", bin, strings.Join(args, " "), time.Now().Format(time.RFC3339))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if o.Kind == DistributionV3 {
		// As its container image sets it: without it, every request's
		// trace is sent to an OTLP collector that is not there.
		cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none")
	}
	if o.Driver == S3 {
		// Credentials through the environment, as a deployment would keep
		// them out of its config file.
		cmd.Env = append(os.Environ(),
			"BERTH_STORAGE_S3_ACCESSKEY="+o.S3.AccessKey, "BERTH_STORAGE_S3_SECRETKEY="+o.S3.SecretKey)
	}
	cmd.Dir = o.Dir
	// Own process group, so that Stop reaches any children; killed if the
	// test binary dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	s := &Server{Kind: o.Kind, Host: host, URL: "http://" + host, LogPath: logPath, cmd: cmd, exited: make(chan struct{})}
	if config != "" {
		s.ConfigPath = cfgPath
	}
	go func() {
		s.err = cmd.Wait()
		logf.Close()
		close(s.exited)
	}()
	if err := s.waitReady(ctx, 30*time.Second); err != nil {
		s.Stop()
		return nil, fmt.Errorf("%s on %s: %w\n%s", o.Kind, host, err, s.LogTail(40))
	}
	return s, nil
}

// command returns the executable, its arguments, and the contents of the
// config file to write at cfgPath ("" for none).
func command(o Options, host, cfgPath string) (bin string, args []string, config string) {
	switch o.Kind {
	case VersityGW:
		return o.Binary, []string{"--access", o.S3.AccessKey, "--secret", o.S3.SecretKey, "--port", host,
			"--quiet", "--keep-alive", "posix", o.Root}, ""
	case DockerRegistry, DistributionV3:
		bin = o.Binary
		if bin == "" {
			bin = "docker-registry"
		}
		var b strings.Builder
		b.WriteString("version: 0.1\nlog:\n")
		if o.Quiet {
			b.WriteString("  level: warn\n  accesslog:\n    disabled: true\n")
		} else {
			b.WriteString("  level: info\n")
		}
		b.WriteString("storage:\n")
		if o.Driver == InMemory {
			b.WriteString("  inmemory: {}\n")
		} else {
			fmt.Fprintf(&b, "  filesystem:\n    rootdirectory: %q\n", o.Root)
		}
		// As in Debian's /etc/docker/registry/config.yml and in the
		// config of Distribution v3's container image.
		b.WriteString("  cache:\n    blobdescriptor: inmemory\n  delete:\n    enabled: true\n")
		fmt.Fprintf(&b, "http:\n  addr: %s\n", host)
		b.WriteString(o.Extra)
		return bin, []string{"serve", cfgPath}, b.String()
	default: // Berth; keys as in configs/berth.yaml
		var b strings.Builder
		if o.Quiet {
			b.WriteString("log:\n  level: warn\n  accessLog: false\n")
		} else {
			b.WriteString("log:\n  level: info\n  accessLog: true\n")
		}
		// A quick stop: tests and benchmarks leave no uploads behind.
		b.WriteString("http:\n  drainTimeout: 5s\n" + o.HTTP)
		fmt.Fprintf(&b, "storage:\n  driver: %s\n", o.Driver)
		b.WriteString(o.Storage)
		switch o.Driver {
		case Filesystem:
			fmt.Fprintf(&b, "  filesystem:\n    root: %q\n", o.Root)
		case S3:
			fmt.Fprintf(&b, "  s3:\n    endpoint: %q\n    pathStyle: true\n    region: us-east-1\n", o.S3.Endpoint)
			fmt.Fprintf(&b, "    bucket: %q\n    prefix: %q\n    redirect: %t\n", o.S3.Bucket, o.S3.Prefix, o.S3.Redirect)
		}
		b.WriteString("  delete:\n    enabled: true\n")
		if o.Auth != "" {
			b.WriteString("auth:\n" + o.Auth)
		}
		b.WriteString(o.Extra)
		args = []string{"serve", "--config", cfgPath, "--addr", host}
		if o.Driver == Filesystem {
			args = append(args, "--root", o.Root)
		}
		args = append(args, o.Args...)
		return o.Binary, args, b.String()
	}
}

// freePort asks the kernel for an unused loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) waitReady(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/v2/", nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return nil
			}
		}
		select {
		case <-s.exited:
			return fmt.Errorf("%w (%v)", errExitedEarly, s.err)
		case <-ctx.Done():
			return fmt.Errorf("GET /v2/ did not answer within %v", limit)
		case <-tick.C:
		}
	}
}

// Stop sends SIGTERM to the server's process group and waits up to 15 s, then
// kills it. It reports how the process ended; "killed" only if SIGTERM was not
// enough. Safe to call more than once.
func (s *Server) Stop() (status string, err error) {
	s.stopping.Store(true)
	select {
	case <-s.exited:
		return exitStatus(s.err), nil
	default:
	}
	pgid := s.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-s.exited:
		return exitStatus(s.err), nil
	case <-time.After(15 * time.Second):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-s.exited
	return exitStatus(s.err), fmt.Errorf("%s did not exit within 15s of SIGTERM; killed", s.Kind)
}

func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// PID is the process id of the registry (its /proc/PID has its open files
// and memory; prlimit and cgroups take it).
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (s *Server) Exited() bool {
	select {
	case <-s.exited:
		return true
	default:
		return false
	}
}

// logMarkAgent is the User-Agent of the requests ReadLog marks the log with.
const logMarkAgent = "berth-integration-log-mark"

// logMarks numbers ReadLog's marks.
var logMarks atomic.Int64

// ReadLog returns the server's log with the lines of every request
// answered before the call. Berth writes its log off the requests' path, so
// the line of a request just answered may not be in the file yet: for a
// running Berth, ReadLog makes a request of its own (GET /v2/ with a
// numbered User-Agent) and waits until its line is there, since the log
// keeps its order; the lines of such marks are left out of what it
// returns. Other servers' logs, and a stopped server's, are read as they
// are.
func (s *Server) ReadLog(ctx context.Context) ([]byte, error) {
	if s.Kind != Berth || s.Exited() {
		return os.ReadFile(s.LogPath)
	}
	mark := fmt.Sprintf("%s/%d", logMarkAgent, logMarks.Add(1))
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/v2/", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", mark)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("marking the log: %w", err)
	}
	resp.Body.Close()
	marked := regexp.MustCompile(regexp.QuoteMeta(mark) + `["\s]`) // not mark/10 for mark/1
	for {
		b, err := os.ReadFile(s.LogPath)
		if err != nil {
			return nil, err
		}
		if marked.Match(b) {
			var out bytes.Buffer
			for line := range bytes.Lines(b) {
				if !bytes.Contains(line, []byte(logMarkAgent)) {
					out.Write(line)
				}
			}
			return out.Bytes(), nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("the log of %s never showed the request marking it (%s): is its access log off?", s.Host, mark)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// LogTail returns the last n lines of the server's log.
func (s *Server) LogTail(n int) string {
	b, err := os.ReadFile(s.LogPath)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d earlier lines)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// BuildBerth builds ./cmd/berth of the module at repoRoot into dir and
// returns the binary's path.
func BuildBerth(ctx context.Context, repoRoot, dir string) (string, error) {
	goBin := "go"
	if _, err := exec.LookPath(goBin); err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	out := filepath.Join(dir, "berth")
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", out, "./cmd/berth")
	cmd.Dir = repoRoot
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/berth: %v\n%s", err, b)
	}
	return out, nil
}

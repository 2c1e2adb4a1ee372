package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/versitygw"
)

// testApp runs berth in-process with env as its whole environment. Signals
// for `berth serve` are sent on the channel that signals yields.
type testApp struct {
	app
	stdout  bytes.Buffer
	stderr  syncBuffer
	signals chan chan<- os.Signal
}

func newTestApp(env map[string]string) *testApp {
	ta := &testApp{signals: make(chan chan<- os.Signal, 1)}
	var environ []string
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	ta.app = app{
		stdout:    &ta.stdout,
		stderr:    &ta.stderr,
		lookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		environ:   environ,
		notify: func(c chan<- os.Signal) func() {
			ta.signals <- c
			return func() {}
		},
	}
	return ta
}

// syncBuffer is a bytes.Buffer safe for the server's logger and the test.
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
	return b.buf.String()
}

func TestHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"serve", "version", "config"}},
		{nil, []string{"serve", "version"}},
		{[]string{"serve", "--help"}, []string{
			"--config FILE", "--addr HOST:PORT", "--root DIR",
			"BERTH_HTTP_DRAINTIMEOUT", "berth config env", "drainTimeout",
		}},
		{[]string{"config", "--help"}, []string{"env", "show"}},
	} {
		ta := newTestApp(nil)
		if code := ta.run(tc.args); code != exitOK {
			t.Errorf("berth %q: exit %d, stderr %s", tc.args, code, ta.stderr.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(ta.stdout.String(), w) {
				t.Errorf("berth %q: output lacks %q:\n%s", tc.args, w, ta.stdout.String())
			}
		}
	}
}

func TestVersion(t *testing.T) {
	ta := newTestApp(nil)
	if code := ta.run([]string{"version"}); code != exitOK {
		t.Fatalf("exit %d: %s", code, ta.stderr.String())
	}
	if out := ta.stdout.String(); !strings.HasPrefix(out, "berth ") || strings.Count(out, "\n") != 1 {
		t.Errorf("version printed %q", out)
	}
	ta = newTestApp(nil)
	if code := ta.run([]string{"--version"}); code != exitOK || !strings.HasPrefix(ta.stdout.String(), "berth ") {
		t.Errorf("--version: exit %d, printed %q", code, ta.stdout.String())
	}
}

// TestUsageErrors: a bad command line or configuration exits 2 with one
// line on stderr that names the problem, before anything is started.
func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	badKey := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badKey, []byte("http:\n  addr: :5000\n  adr: :6000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown key", []string{"serve", "--config", badKey}, nil, badKey + `:3: unknown key "http.adr"`},
		{"unknown key, config show", []string{"config", "show", "--config", badKey}, nil, `unknown key "http.adr"`},
		{"missing file", []string{"serve", "--config", filepath.Join(dir, "none.yaml")}, nil, "none.yaml"},
		{"bad env", []string{"serve"}, map[string]string{"BERTH_HTTP_IDLETIMEOUT": "soon"}, `BERTH_HTTP_IDLETIMEOUT="soon"`},
		{"bad flag value", []string{"serve", "--addr", "nohost"}, nil, `http.addr: "nohost" is not host:port`},
		{"unknown flag", []string{"serve", "--adr", ":1"}, nil, "unknown flag: --adr"},
		{"unknown command", []string{"srve"}, nil, `unknown command "srve"`},
		{"extra argument", []string{"serve", "now"}, nil, `unknown command "now"`},
		{"missing TLS files", []string{"serve"}, map[string]string{
			"BERTH_HTTP_TLS_CERTIFICATE": filepath.Join(dir, "c.pem"), "BERTH_HTTP_TLS_KEY": filepath.Join(dir, "k.pem"),
		}, "http.tls: open " + filepath.Join(dir, "c.pem")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ta := newTestApp(tc.env)
			code := ta.run(tc.args)
			stderr := ta.stderr.String()
			if code != exitUsage {
				t.Errorf("exit %d, want %d; stderr: %s", code, exitUsage, stderr)
			}
			if !strings.HasPrefix(stderr, "berth: ") || strings.Count(stderr, "\n") != 1 {
				t.Errorf("stderr is not one line starting berth: %q", stderr)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q does not contain %q", stderr, tc.want)
			}
		})
	}
}

func TestConfigEnv(t *testing.T) {
	ta := newTestApp(nil)
	if code := ta.run([]string{"config", "env"}); code != exitOK {
		t.Fatalf("exit %d: %s", code, ta.stderr.String())
	}
	for _, w := range []string{"BERTH_HTTP_ADDR", "http.addr", "127.0.0.1:5000", "BERTH_STORAGE_DELETE_ENABLED", "BERTH_HTTP_DRAINTIMEOUT"} {
		if !strings.Contains(ta.stdout.String(), w) {
			t.Errorf("config env lacks %q:\n%s", w, ta.stdout.String())
		}
	}
}

func TestConfigShow(t *testing.T) {
	ta := newTestApp(map[string]string{"BERTH_STORAGE_DRIVER": "inmemory"})
	if code := ta.run([]string{"config", "show", "--config", "../../configs/berth.yaml"}); code != exitOK {
		t.Fatalf("exit %d: %s", code, ta.stderr.String())
	}
	if out := ta.stdout.String(); !strings.Contains(out, "driver: inmemory") || !strings.Contains(out, "drainTimeout: 5m0s") {
		t.Errorf("config show printed:\n%s", out)
	}
}

// TestConfigShowMasksSecrets: config show prints whether a secret key is
// set, never its value, from a file or from the environment.
func TestConfigShowMasksSecrets(t *testing.T) {
	const secret = "wJalrXUtnFEMI-do-not-print"
	file := filepath.Join(t.TempDir(), "s3.yaml")
	body := "storage:\n  driver: s3\n  s3:\n    bucket: b\n    accessKey: AKIAFILE\n    secretKey: " + secret + "\n"
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, env := range map[string]map[string]string{
		"file":        nil,
		"environment": {"BERTH_STORAGE_S3_ACCESSKEY": "AKIAENV", "BERTH_STORAGE_S3_SECRETKEY": secret + "-env"},
	} {
		ta := newTestApp(env)
		if code := ta.run([]string{"config", "show", "--config", file}); code != exitOK {
			t.Fatalf("%s: exit %d: %s", name, code, ta.stderr.String())
		}
		out := ta.stdout.String()
		if strings.Contains(out, secret) {
			t.Errorf("%s: config show prints the secret key:\n%s", name, out)
		}
		if !strings.Contains(out, "secretKey: <redacted>") || !strings.Contains(out, "bucket: b") {
			t.Errorf("%s: config show printed:\n%s", name, out)
		}
	}
	// Unset, it shows as empty.
	ta := newTestApp(nil)
	if code := ta.run([]string{"config", "show"}); code != exitOK {
		t.Fatalf("exit %d: %s", code, ta.stderr.String())
	}
	if !strings.Contains(ta.stdout.String(), `secretKey: ""`) {
		t.Errorf("config show, no secret:\n%s", ta.stdout.String())
	}
}

// startServe runs `berth serve` with args and env until it logs that it
// listens, and returns the base URL, the signal channel and the exit code
// to come.
func startServe(t *testing.T, env map[string]string, args ...string) (*testApp, string, chan<- os.Signal, <-chan int) {
	t.Helper()
	if env == nil {
		env = map[string]string{}
	}
	env["BERTH_LOG_FORMAT"] = "json"
	ta := newTestApp(env)
	exit := make(chan int, 1)
	go func() { exit <- ta.run(append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)) }()
	var sigc chan<- os.Signal
	select {
	case sigc = <-ta.signals:
	case code := <-exit:
		t.Fatalf("serve exited %d: %s", code, ta.stderr.String())
	}
	t.Cleanup(func() {
		select {
		case sigc <- syscall.SIGTERM:
		default:
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		sc := bufio.NewScanner(strings.NewReader(ta.stderr.String()))
		for sc.Scan() {
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
				return ta, "http://" + line.Addr, sigc, exit
			}
		}
		select {
		case code := <-exit:
			t.Fatalf("serve exited %d: %s", code, ta.stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("serve did not log listening: %s", ta.stderr.String())
	return nil, "", nil, nil
}

func waitExit(t *testing.T, exit <-chan int, within time.Duration) int {
	t.Helper()
	select {
	case code := <-exit:
		return code
	case <-time.After(within):
		t.Fatalf("serve did not exit within %s", within)
		return -1
	}
}

// TestServeStopsOnSignal starts the server on a free port with in-memory
// storage, checks it answers, and stops it with SIGTERM: exit 0.
func TestServeStopsOnSignal(t *testing.T) {
	ta, base, sigc, exit := startServe(t, map[string]string{"BERTH_STORAGE_DRIVER": "inmemory", "BERTH_TYPO": "x"})
	for _, path := range []string{"/healthz", "/v2/"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %s", path, resp.Status)
		}
	}
	sigc <- syscall.SIGTERM
	if code := waitExit(t, exit, 10*time.Second); code != exitOK {
		t.Errorf("exit %d after SIGTERM: %s", code, ta.stderr.String())
	}
	logs := ta.stderr.String()
	for _, w := range []string{`"storage":"inmemory"`, `"msg":"shutting down`, `"msg":"stopped"`, `"name":"BERTH_TYPO"`} {
		if !strings.Contains(logs, w) {
			t.Errorf("logs lack %s:\n%s", w, logs)
		}
	}
}

// TestServeFilesystem: --root overrides storage.filesystem.root, and the
// root is logged.
func TestServeFilesystem(t *testing.T) {
	root := filepath.Join(t.TempDir(), "data")
	ta, _, sigc, exit := startServe(t, map[string]string{"BERTH_STORAGE_FILESYSTEM_ROOT": "/nonexistent/ignored"}, "--root", root)
	if want := `"root":"` + root + `"`; !strings.Contains(ta.stderr.String(), want) {
		t.Errorf("logs lack %s: %s", want, ta.stderr.String())
	}
	sigc <- syscall.SIGTERM
	if code := waitExit(t, exit, 10*time.Second); code != exitOK {
		t.Errorf("exit %d: %s", code, ta.stderr.String())
	}
}

// startUpload opens a blob upload and starts a PATCH whose body the test
// writes, sending the first 32 MiB; the PATCH's status arrives on the
// returned channel.
func startUpload(t *testing.T, base string) (*io.PipeWriter, <-chan int) {
	t.Helper()
	resp, err := http.Post(base+"/v2/drain/test/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST upload: %s", resp.Status)
	}
	loc, err := resp.Location()
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	req, err := http.NewRequest(http.MethodPatch, loc.String(), pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	status := make(chan int, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			status <- -1
			return
		}
		resp.Body.Close()
		status <- resp.StatusCode
	}()
	// Writes return once the client has sent them. Past what socket buffers
	// hold, that means the server's handler is reading: the request is in
	// flight on the server's side too.
	chunk := make([]byte, 1<<20)
	for range 32 {
		if _, err := pw.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	return pw, status
}

// TestServeDrainsUploads: after SIGTERM an upload in flight may finish
// (within http.drainTimeout) and the server then exits 0.
func TestServeDrainsUploads(t *testing.T) {
	ta, base, sigc, exit := startServe(t, map[string]string{"BERTH_STORAGE_DRIVER": "inmemory", "BERTH_HTTP_DRAINTIMEOUT": "1m"})
	pw, status := startUpload(t, base)
	sigc <- syscall.SIGTERM
	select {
	case code := <-exit:
		t.Fatalf("serve exited %d with an upload in flight: %s", code, ta.stderr.String())
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := pw.Write([]byte("last chunk")); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if got := <-status; got != http.StatusAccepted {
		t.Errorf("PATCH during drain: status %d, want 202", got)
	}
	if code := waitExit(t, exit, 10*time.Second); code != exitOK {
		t.Errorf("exit %d: %s", code, ta.stderr.String())
	}
}

// TestServeSecondSignal: a second signal stops at once, exit 1.
func TestServeSecondSignal(t *testing.T) {
	ta, base, sigc, exit := startServe(t, map[string]string{"BERTH_STORAGE_DRIVER": "inmemory", "BERTH_HTTP_DRAINTIMEOUT": "1h"})
	pw, status := startUpload(t, base)
	sigc <- syscall.SIGTERM
	time.Sleep(100 * time.Millisecond)
	sigc <- syscall.SIGINT
	if code := waitExit(t, exit, 10*time.Second); code != exitFailure {
		t.Errorf("exit %d after a second signal, want %d: %s", code, exitFailure, ta.stderr.String())
	}
	// The client only notices the closed connection once its body ends.
	pw.CloseWithError(io.ErrUnexpectedEOF)
	if got := <-status; got == http.StatusAccepted {
		t.Errorf("the interrupted upload succeeded")
	}
}

// TestServeDrainTimeout: when http.drainTimeout runs out, the requests left
// are cut and the server still exits 0.
func TestServeDrainTimeout(t *testing.T) {
	ta, base, sigc, exit := startServe(t, map[string]string{"BERTH_STORAGE_DRIVER": "inmemory", "BERTH_HTTP_DRAINTIMEOUT": "200ms"})
	pw, status := startUpload(t, base)
	sigc <- syscall.SIGTERM
	if code := waitExit(t, exit, 10*time.Second); code != exitOK {
		t.Errorf("exit %d, want 0: %s", code, ta.stderr.String())
	}
	pw.CloseWithError(io.ErrUnexpectedEOF)
	<-status
	if !strings.Contains(ta.stderr.String(), "drain timeout expired") {
		t.Errorf("logs do not say the drain timed out: %s", ta.stderr.String())
	}
}

// TestServeTLS: with http.tls set, berth serves HTTPS.
func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	pool := writeSelfSigned(t, certFile, keyFile)
	ta, base, sigc, exit := startServe(t, map[string]string{
		"BERTH_STORAGE_DRIVER":       "inmemory",
		"BERTH_HTTP_TLS_CERTIFICATE": certFile,
		"BERTH_HTTP_TLS_KEY":         keyFile,
	})
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get(strings.Replace(base, "http://", "https://", 1) + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil {
		t.Errorf("GET /healthz over TLS: %s", resp.Status)
	}
	if !strings.Contains(ta.stderr.String(), `"tls":true`) {
		t.Errorf("logs do not say tls: %s", ta.stderr.String())
	}
	sigc <- syscall.SIGTERM
	if code := waitExit(t, exit, 10*time.Second); code != exitOK {
		t.Errorf("exit %d: %s", code, ta.stderr.String())
	}
}

// writeSelfSigned writes a certificate for 127.0.0.1 and its key as PEM
// files, and returns a pool that trusts the certificate.
func writeSelfSigned(t *testing.T, certFile, keyFile string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "berth test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

// TestServeS3: with storage.driver s3, berth serves from the bucket, logs
// where (bucket, prefix, endpoint) but never the secret key, and redirects
// blob GETs to the bucket unless told not to.
func TestServeS3(t *testing.T) {
	gw := versitygw.Start(t, "berth")
	for _, redirect := range []bool{true, false} {
		t.Run(fmt.Sprintf("redirect=%t", redirect), func(t *testing.T) {
			ta, base, sigc, exit := startServe(t, map[string]string{
				"BERTH_STORAGE_DRIVER":       "s3",
				"BERTH_STORAGE_S3_BUCKET":    gw.Bucket,
				"BERTH_STORAGE_S3_ENDPOINT":  gw.Endpoint,
				"BERTH_STORAGE_S3_PATHSTYLE": "true",
				"BERTH_STORAGE_S3_REGION":    "us-east-1",
				"BERTH_STORAGE_S3_ACCESSKEY": gw.AccessKey,
				"BERTH_STORAGE_S3_SECRETKEY": gw.SecretKey,
				"BERTH_STORAGE_S3_PREFIX":    "cmd/" + strconv.FormatBool(redirect),
				"BERTH_STORAGE_S3_REDIRECT":  strconv.FormatBool(redirect),
			})
			blob := []byte("berth on s3")
			sum := sha256.Sum256(blob)
			dgst := "sha256:" + hex.EncodeToString(sum[:])
			resp, err := http.Post(base+"/v2/s3/test/blobs/uploads/", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("POST upload: %s", resp.Status)
			}
			req, _ := http.NewRequest(http.MethodPut, base+resp.Header.Get("Location")+"?digest="+dgst, bytes.NewReader(blob))
			if resp, err = http.DefaultClient.Do(req); err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("PUT upload: %s", resp.Status)
			}
			noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			if resp, err = noFollow.Get(base + "/v2/s3/test/blobs/" + dgst); err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			want := http.StatusOK
			if redirect {
				want = http.StatusTemporaryRedirect
				if loc := resp.Header.Get("Location"); !strings.HasPrefix(loc, gw.Endpoint+"/") {
					t.Errorf("redirect to %q, want a URL on %s", loc, gw.Endpoint)
				}
			}
			if resp.StatusCode != want {
				t.Errorf("GET blob: %s, want %d", resp.Status, want)
			}
			if resp, err = http.Get(base + "/v2/s3/test/blobs/" + dgst); err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !bytes.Equal(got, blob) {
				t.Errorf("GET blob (redirects followed): %s %q, want %q", resp.Status, got, blob)
			}

			sigc <- syscall.SIGTERM
			if code := waitExit(t, exit, 10*time.Second); code != exitOK {
				t.Errorf("exit %d: %s", code, ta.stderr.String())
			}
			logs := ta.stderr.String()
			for _, w := range []string{`"storage":"s3"`, `"bucket":"berth"`, `"prefix":"cmd/` + strconv.FormatBool(redirect) + `"`,
				`"endpoint":"` + gw.Endpoint + `"`, `"credentials":"static"`, `"redirect":` + strconv.FormatBool(redirect)} {
				if !strings.Contains(logs, w) {
					t.Errorf("logs lack %s:\n%s", w, logs)
				}
			}
			if strings.Contains(logs, gw.SecretKey) {
				t.Errorf("logs hold the secret key:\n%s", logs)
			}
		})
	}
}

// TestServeS3Unreachable: berth on S3 whose endpoint answers nothing fails
// to start with one line naming the storage, and does not print the secret.
func TestServeS3Unreachable(t *testing.T) {
	t.Parallel() // the driver retries for about 10 s before it gives up
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + l.Addr().String()
	l.Close() // nothing listens there now
	const secret = "unreachable-secret-do-not-print"
	ta := newTestApp(map[string]string{
		"BERTH_STORAGE_DRIVER":       "s3",
		"BERTH_STORAGE_S3_BUCKET":    "berth",
		"BERTH_STORAGE_S3_ENDPOINT":  endpoint,
		"BERTH_STORAGE_S3_PATHSTYLE": "true",
		"BERTH_STORAGE_S3_REGION":    "us-east-1",
		"BERTH_STORAGE_S3_ACCESSKEY": "AKIA",
		"BERTH_STORAGE_S3_SECRETKEY": secret,
	})
	exit := make(chan int, 1)
	go func() { exit <- ta.run([]string{"serve", "--addr", "127.0.0.1:0"}) }()
	select {
	case <-ta.signals:
	case code := <-exit:
		t.Fatalf("exit %d before relaying signals: %s", code, ta.stderr.String())
	}
	code := waitExit(t, exit, 2*driverStartTimeout)
	stderr := ta.stderr.String()
	if code != exitFailure || !strings.Contains(stderr, "berth: storage: s3: ") {
		t.Errorf("exit %d, stderr %q; want %d and a line naming the s3 storage", code, stderr, exitFailure)
	}
	if strings.Contains(stderr, secret) {
		t.Errorf("stderr holds the secret key: %s", stderr)
	}
}

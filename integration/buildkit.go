package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// BuildKitVersion is the BuildKit that berth build is compared with (the
// one of Docker 28); `make buildkit` installs its buildkitd and buildctl.
const BuildKitVersion = "v0.22.0"

// BuildKitOptions describe one private buildkitd.
type BuildKitOptions struct {
	Buildkitd, Buildctl string // the binaries (required)
	Runc                string // the OCI runtime; default runc on PATH (Debian's)
	// Dir holds its state (root/), socket, config and log (required; a
	// short path: the socket's must fit in 108 bytes).
	Dir string
	// HTTPRegistries are registry hosts ("127.0.0.1:PORT") pulled from and
	// pushed to over plain http.
	HTTPRegistries []string
	// MaxParallelism caps the steps run at once (0: buildkitd's default,
	// the CPU count).
	MaxParallelism int
}

// BuildKit is a running buildkitd: the oci worker with runc and the
// overlayfs snapshotter, no containerd worker, host networking for RUN
// unless a build cuts it, and the network.host entitlement allowed.
type BuildKit struct {
	Addr     string // unix://DIR/buildkitd.sock
	Root     string // its state directory
	LogPath  string
	buildctl string
	runc     string
	cmd      *exec.Cmd
	exited   chan struct{}
	err      error
}

// StartBuildKit starts buildkitd and waits until `buildctl debug workers`
// answers.
func StartBuildKit(ctx context.Context, o BuildKitOptions) (*BuildKit, error) {
	if o.Buildkitd == "" || o.Buildctl == "" || o.Dir == "" {
		return nil, errors.New("buildkit needs buildkitd, buildctl and a directory")
	}
	runc := o.Runc
	if runc == "" {
		var err error
		if runc, err = exec.LookPath("runc"); err != nil {
			return nil, fmt.Errorf("buildkit's oci worker: %w", err)
		}
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "buildkitd.sock")
	if len(sock) > 100 {
		return nil, fmt.Errorf("buildkitd socket path %s is too long for a unix socket", sock)
	}
	var cfg strings.Builder
	cfg.WriteString("[worker.oci]\n")
	if o.MaxParallelism > 0 {
		fmt.Fprintf(&cfg, "  max-parallelism = %d\n", o.MaxParallelism)
	}
	for _, h := range o.HTTPRegistries {
		fmt.Fprintf(&cfg, "[registry.%q]\n  http = true\n  insecure = true\n", h)
	}
	cfgPath := filepath.Join(dir, "buildkitd.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o644); err != nil {
		return nil, err
	}
	b := &BuildKit{
		Addr: "unix://" + sock, Root: filepath.Join(dir, "root"), LogPath: filepath.Join(dir, "buildkitd.log"),
		buildctl: o.Buildctl, runc: runc, exited: make(chan struct{}),
	}
	logf, err := os.OpenFile(b.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	b.cmd = exec.Command(o.Buildkitd, "--config", cfgPath, "--root", b.Root, "--addr", b.Addr,
		"--oci-worker=true", "--containerd-worker=false", "--oci-worker-binary", runc,
		"--oci-worker-snapshotter", "overlayfs", "--oci-worker-net", "host", "--oci-worker-gc=false",
		"--allow-insecure-entitlement", "network.host")
	fmt.Fprintf(logf, "=== %s %s\n", o.Buildkitd, strings.Join(b.cmd.Args[1:], " "))
	b.cmd.Stdout, b.cmd.Stderr = logf, logf
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := b.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", o.Buildkitd, err)
	}
	go func() {
		b.err = b.cmd.Wait()
		logf.Close()
		close(b.exited)
	}()
	if err := b.waitReady(ctx, 60*time.Second); err != nil {
		b.Stop()
		return nil, fmt.Errorf("buildkitd: %w\n%s", err, b.LogTail(30))
	}
	return b, nil
}

func (b *BuildKit) waitReady(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		cmd := exec.CommandContext(ctx, b.buildctl, "--addr", b.Addr, "debug", "workers")
		out, err := cmd.Output()
		if err == nil && strings.Count(strings.TrimSpace(string(out)), "\n") >= 1 { // the header and a worker
			return nil
		}
		select {
		case <-b.exited:
			return fmt.Errorf("exited before answering (%v)", b.err)
		case <-ctx.Done():
			return fmt.Errorf("buildctl debug workers did not list a worker within %v (%v)", limit, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// BuildOptions describe one `buildctl build` with the Dockerfile frontend
// built into buildkitd (dockerfile.v0: no frontend image is pulled, a
// "# syntax=" directive is ignored as berth build ignores it).
type BuildOptions struct {
	Context    string   // the build context directory
	Dockerfile string   // the Dockerfile; default Context/Dockerfile
	BuildArgs  []string // K=V
	Target     string   // the stage to build; "" for the last
	Secrets    []string // as buildctl --secret takes them: id=ID,src=FILE
	// NoNetwork runs every RUN without a network (force-network-mode=none)
	// unless it asks for one; HostNetwork allows RUN --network=host.
	NoNetwork, HostNetwork bool
	// NoCache runs every step again (buildctl --no-cache).
	NoCache bool
	// Outputs are buildctl --output values ("type=oci,dest=FILE").
	Outputs []string
	// Progress receives buildctl's plain progress output; nil discards it.
	Progress io.Writer
}

// Build runs buildctl build; the error carries the last lines of its
// progress output.
func (b *BuildKit) Build(ctx context.Context, o BuildOptions) error {
	argv := b.BuildArgv(o)
	var tailBuf tailWriter
	w := io.Writer(&tailBuf)
	if o.Progress != nil {
		w = io.MultiWriter(&tailBuf, o.Progress)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = w, w
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("buildctl build %s: %v\n%s", o.Context, err, tailBuf.tail(25))
	}
	return nil
}

// BuildArgv returns the buildctl command line (the binary first) that
// Build runs for o; o.Progress is not part of it.
func (b *BuildKit) BuildArgv(o BuildOptions) []string {
	dockerfile := o.Dockerfile
	if dockerfile == "" {
		dockerfile = filepath.Join(o.Context, "Dockerfile")
	}
	// cmdline set (to anything) makes the built-in frontend ignore a
	// "# syntax=" directive instead of pulling that frontend image.
	args := []string{"--addr", b.Addr, "build", "--progress", "plain", "--frontend", "dockerfile.v0",
		"--local", "context=" + o.Context, "--local", "dockerfile=" + filepath.Dir(dockerfile),
		"--opt", "filename=" + filepath.Base(dockerfile), "--opt", "cmdline="}
	for _, a := range o.BuildArgs {
		args = append(args, "--opt", "build-arg:"+a)
	}
	if o.Target != "" {
		args = append(args, "--opt", "target="+o.Target)
	}
	for _, s := range o.Secrets {
		args = append(args, "--secret", s)
	}
	if o.NoNetwork {
		args = append(args, "--opt", "force-network-mode=none")
	}
	if o.HostNetwork {
		args = append(args, "--allow", "network.host")
	}
	if o.NoCache {
		args = append(args, "--no-cache")
	}
	for _, out := range o.Outputs {
		args = append(args, "--output", out)
	}
	return append([]string{b.buildctl}, args...)
}

// tailWriter keeps what is written to it, for the error of a failed build.
type tailWriter struct{ buf bytes.Buffer }

func (w *tailWriter) Write(p []byte) (int, error) { return w.buf.Write(p) }

func (w *tailWriter) tail(n int) string { return tail(w.buf.String(), n) }

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Stop stops buildkitd (SIGTERM, then SIGKILL after 10 s: it waits for
// running builds), then removes what it may have left: runc containers
// whose bundle lies in its state directory, and the mounts under it. Safe
// to call more than once.
func (b *BuildKit) Stop() error {
	var errs []error
	select {
	case <-b.exited:
	default:
		pgid := b.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-b.exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-b.exited
			errs = append(errs, errors.New("buildkitd did not exit within 10s of SIGTERM (a build still running?); killed"))
		}
	}
	if err := b.removeContainers(); err != nil {
		errs = append(errs, err)
	}
	if err := unmountBelow(filepath.Dir(b.Root)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeContainers kills and deletes the runc containers (default runc
// state root, as buildkitd's executor uses it) whose bundle is under
// b.Root, and only those.
func (b *BuildKit) removeContainers() error {
	out, err := exec.Command(b.runc, "list", "--format", "json").Output()
	if err != nil {
		return fmt.Errorf("runc list: %v", err)
	}
	var list []struct {
		ID     string `json:"id"`
		Bundle string `json:"bundle"`
	}
	if s := strings.TrimSpace(string(out)); s != "" && s != "null" {
		if err := json.Unmarshal(out, &list); err != nil {
			return fmt.Errorf("runc list: %v", err)
		}
	}
	var errs []error
	for _, c := range list {
		if !strings.HasPrefix(c.Bundle, b.Root+"/") {
			continue
		}
		if out, err := exec.Command(b.runc, "delete", "--force", c.ID).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("runc delete --force %s (left by buildkitd): %v: %s", c.ID, err, out))
		}
	}
	return errors.Join(errs...)
}

// unmountBelow detaches every mount at or under dir, deepest first.
func unmountBelow(dir string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		p := unescapeMountPath(f[4])
		if p == dir || strings.HasPrefix(p, dir+"/") {
			points = append(points, p)
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var out strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				out.WriteByte(byte(c))
				i += 3
				continue
			}
		}
		out.WriteByte(s[i])
	}
	return out.String()
}

// Pid is buildkitd's process ID (for reading its memory and CPU time
// from /proc).
func (b *BuildKit) Pid() int { return b.cmd.Process.Pid }

// Exited reports whether buildkitd has ended.
func (b *BuildKit) Exited() bool {
	select {
	case <-b.exited:
		return true
	default:
		return false
	}
}

// LogTail returns the last n lines of buildkitd's log.
func (b *BuildKit) LogTail(n int) string {
	out, err := os.ReadFile(b.LogPath)
	if err != nil {
		return err.Error()
	}
	return tail(string(out), n)
}

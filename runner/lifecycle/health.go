package lifecycle

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/berth-registry/berth/runner/container"
)

// Docker's health check defaults and limits.
const (
	defaultHealthInterval = 30 * time.Second
	defaultHealthTimeout  = 30 * time.Second
	defaultHealthRetries  = 3
	healthLogEntries      = 5    // results kept
	healthOutputMax       = 4096 // bytes of output kept per result
)

// HealthOptions are the --health-* flags of run and create; zero values
// keep the image's setting.
type HealthOptions struct {
	// Cmd replaces the image's test with ["CMD-SHELL", Cmd].
	Cmd                            string
	Interval, Timeout, StartPeriod time.Duration
	Retries                        int
	// Disable is --no-healthcheck: no check, whatever the image says.
	Disable bool
}

// ResolveHealthcheck returns a container's health check: the image's
// HEALTHCHECK (from its raw config, nil for none) with o applied; nil when
// there is none or it is disabled. --no-healthcheck with another
// --health-* option, a negative duration or retry count, or an interval
// under a millisecond is an error wrapping ErrInvalidOption.
func ResolveHealthcheck(rawImageConfig []byte, o HealthOptions) (*container.HealthConfig, error) {
	if o.Interval < 0 || o.Timeout < 0 || o.StartPeriod < 0 || o.Retries < 0 {
		return nil, fmt.Errorf("%w: --health-interval, --health-timeout, --health-start-period and --health-retries cannot be negative", ErrInvalidOption)
	}
	if (o.Interval != 0 && o.Interval < time.Millisecond) || (o.Timeout != 0 && o.Timeout < time.Millisecond) {
		return nil, fmt.Errorf("%w: --health-interval and --health-timeout are at least 1ms", ErrInvalidOption)
	}
	if o.Disable {
		if o.Cmd != "" || o.Interval != 0 || o.Timeout != 0 || o.StartPeriod != 0 || o.Retries != 0 {
			return nil, fmt.Errorf("%w: --no-healthcheck conflicts with --health-* options", ErrInvalidOption)
		}
		return nil, nil
	}
	var h container.HealthConfig
	if len(rawImageConfig) > 0 {
		var img struct {
			Config struct {
				Healthcheck *struct {
					Test        []string
					Interval    time.Duration
					Timeout     time.Duration
					StartPeriod time.Duration
					Retries     int
				}
			} `json:"config"`
		}
		if err := json.Unmarshal(rawImageConfig, &img); err != nil {
			return nil, fmt.Errorf("image config: %w", err)
		}
		if ih := img.Config.Healthcheck; ih != nil {
			h = container.HealthConfig{Test: ih.Test, Interval: ih.Interval, Timeout: ih.Timeout, StartPeriod: ih.StartPeriod, Retries: ih.Retries}
		}
	}
	if o.Cmd != "" {
		h.Test = []string{"CMD-SHELL", o.Cmd}
	}
	if o.Interval != 0 {
		h.Interval = o.Interval
	}
	if o.Timeout != 0 {
		h.Timeout = o.Timeout
	}
	if o.StartPeriod != 0 {
		h.StartPeriod = o.StartPeriod
	}
	if o.Retries != 0 {
		h.Retries = o.Retries
	}
	if len(h.Test) == 0 || h.Test[0] == "NONE" {
		return nil, nil
	}
	if _, err := healthArgs(h.Test); err != nil {
		return nil, err
	}
	return &h, nil
}

// healthArgs turns a Test into the command to run: CMD's arguments, or
// CMD-SHELL's script through /bin/sh -c.
func healthArgs(test []string) ([]string, error) {
	switch {
	case len(test) >= 2 && test[0] == "CMD":
		return test[1:], nil
	case len(test) == 2 && test[0] == "CMD-SHELL":
		return []string{"/bin/sh", "-c", test[1]}, nil
	}
	return nil, fmt.Errorf("%w: health check test %q: want [\"CMD\", args...], [\"CMD-SHELL\", script] or [\"NONE\"]", ErrInvalidOption, test)
}

// withDefaults fills in docker's defaults for the zero fields.
func withDefaults(h container.HealthConfig) container.HealthConfig {
	if h.Interval == 0 {
		h.Interval = defaultHealthInterval
	}
	if h.Timeout == 0 {
		h.Timeout = defaultHealthTimeout
	}
	if h.Retries == 0 {
		h.Retries = defaultHealthRetries
	}
	return h
}

// Execer runs a command in a running container and returns its exit
// code and output (stdout and stderr), killing it after timeout (then
// ErrProbeTimeout). pid is the host pid of the container's PID 1.
type Execer interface {
	Exec(ctx context.Context, pid int, args []string, timeout time.Duration) (code int, output []byte, err error)
}

// ErrProbeTimeout: the command ran longer than its timeout.
var ErrProbeTimeout = errors.New("health check exceeded its timeout")

// RecordProbe updates h with one result of the check cfg (docker's
// rules): a success makes the container healthy and ends the failing
// streak; a failure adds to the streak, except while the container is
// still starting within its start period (sinceStart is how long it has
// run), and makes it unhealthy at cfg.Retries failures in a row. The log
// keeps the last results.
func RecordProbe(h *container.Health, cfg container.HealthConfig, p container.HealthProbe, sinceStart time.Duration) {
	cfg = withDefaults(cfg)
	if h.Status == "" {
		h.Status = container.HealthStarting
	}
	if len(p.Output) > healthOutputMax {
		p.Output = p.Output[:healthOutputMax]
	}
	h.Log = append(h.Log, p)
	if len(h.Log) > healthLogEntries {
		h.Log = h.Log[len(h.Log)-healthLogEntries:]
	}
	switch {
	case p.ExitCode == 0:
		h.Status, h.FailingStreak = container.HealthHealthy, 0
	case h.Status == container.HealthStarting && sinceStart < cfg.StartPeriod:
		// failures while starting do not count
	default:
		h.FailingStreak++
		if h.FailingStreak >= cfg.Retries {
			h.Status = container.HealthUnhealthy
		}
	}
}

// HealthMonitor runs a container's health check every Interval while the
// container runs and hands each new Health to Save.
type HealthMonitor struct {
	Config container.HealthConfig
	Exec   Execer
	// Pid is the host pid of the container's PID 1; Started when it
	// started.
	Pid     int
	Started time.Time
	// Now and After are the clock (time.Now and time.After when nil).
	Now   func() time.Time
	After func(time.Duration) <-chan time.Time
	Save  func(*container.Health)
}

// Run checks until ctx ends. The first check runs one Interval after the
// start, as docker's.
func (m HealthMonitor) Run(ctx context.Context) {
	now, after := m.Now, m.After
	if now == nil {
		now = time.Now
	}
	if after == nil {
		after = time.After
	}
	cfg := withDefaults(m.Config)
	args, err := healthArgs(cfg.Test)
	if err != nil {
		return
	}
	h := &container.Health{Status: container.HealthStarting, Log: []container.HealthProbe{}}
	m.Save(h)
	for {
		select {
		case <-ctx.Done():
			return
		case <-after(cfg.Interval):
		}
		p := container.HealthProbe{Start: now()}
		code, out, err := m.Exec.Exec(ctx, m.Pid, args, cfg.Timeout)
		if ctx.Err() != nil {
			return // the container ended while the check ran
		}
		p.End, p.ExitCode, p.Output = now(), code, string(out)
		switch {
		case errors.Is(err, ErrProbeTimeout):
			p.ExitCode, p.Output = -1, fmt.Sprintf("Health check exceeded timeout (%v)", cfg.Timeout)
		case err != nil:
			p.ExitCode, p.Output = -1, err.Error()
		}
		next := *h
		next.Log = append([]container.HealthProbe(nil), h.Log...)
		RecordProbe(&next, cfg, p, p.Start.Sub(m.Started))
		h = &next
		m.Save(h)
	}
}

// ContainerExec is the Execer of a running container: the check runs as
// `berth exec` runs a command (container.Exec), in the container's
// namespaces and cgroup, as its user, with its capabilities and seccomp
// filter. pid is not used: Exec finds the container's own.
type ContainerExec struct {
	C *container.Container
}

// maxProbeOutput bounds the output of a check kept in memory; RecordProbe
// keeps less.
const maxProbeOutput = 64 << 10

// Exec implements Execer.
func (x ContainerExec) Exec(ctx context.Context, pid int, args []string, timeout time.Duration) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := &probeOutput{}
	code, err := x.C.Exec(ctx, container.ExecOptions{Args: args}, container.Stdio{Out: out, Err: out})
	if ctx.Err() == context.DeadlineExceeded {
		return -1, out.Bytes(), ErrProbeTimeout
	}
	if err != nil {
		if ie := (*container.InitError)(nil); errors.As(err, &ie) {
			return code, append(out.Bytes(), ie.Error()...), nil // not found, not executable: a failed check
		}
		return -1, out.Bytes(), err
	}
	return code, out.Bytes(), nil
}

// probeOutput keeps the first maxProbeOutput bytes written to it.
type probeOutput struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *probeOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if room := maxProbeOutput - o.buf.Len(); room > 0 {
		o.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (o *probeOutput) Bytes() []byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	return bytes.Clone(o.buf.Bytes())
}

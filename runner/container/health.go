package container

import (
	"encoding/json"
	"os"
	"path/filepath"
	"time"
)

// RestartPolicy is docker's --restart: Name is "no" (or empty),
// "on-failure" (with at most MaximumRetryCount restarts when it is not
// 0), "always" or "unless-stopped". runner/lifecycle parses and keeps it.
type RestartPolicy struct {
	Name              string `json:"name,omitempty"`
	MaximumRetryCount int    `json:"maximumRetryCount,omitempty"`
}

// HealthConfig is a container's health check: docker's Healthcheck of
// an image config (Test is ["CMD", args...], ["CMD-SHELL", script] or
// ["NONE"]) with the --health-* flags applied. Zero durations and retries
// take docker's defaults (runner/lifecycle).
type HealthConfig struct {
	Test        []string      `json:"test"`
	Interval    time.Duration `json:"interval,omitempty"`
	Timeout     time.Duration `json:"timeout,omitempty"`
	StartPeriod time.Duration `json:"startPeriod,omitempty"`
	Retries     int           `json:"retries,omitempty"`
}

// Health states, as docker's.
const (
	HealthStarting  = "starting"
	HealthHealthy   = "healthy"
	HealthUnhealthy = "unhealthy"
)

// Health is the health of a running container, as its supervisor last
// recorded it (docker's State.Health).
type Health struct {
	Status        string        `json:"status"`
	FailingStreak int           `json:"failingStreak"`
	Log           []HealthProbe `json:"log"`
}

// HealthProbe is the result of one run of the health check.
type HealthProbe struct {
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	ExitCode int       `json:"exitCode"`
	Output   string    `json:"output"`
}

// healthFile is the file of a container's directory that holds its
// Health. It is apart from state.json because the supervisor's health
// checker writes it while the run writes state.json.
const healthFile = "health.json"

// SaveHealth records h as the container's health (nil: none).
func (c *Container) SaveHealth(h *Health) error {
	if h == nil {
		err := os.Remove(filepath.Join(c.Dir, healthFile))
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	b, err := json.MarshalIndent(h, "", "\t")
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(c.Dir, healthFile), b)
}

// health reads the container's Health, nil when it has none.
func (c *Container) health() *Health {
	b, err := os.ReadFile(filepath.Join(c.Dir, healthFile))
	if err != nil {
		return nil
	}
	var h Health
	if json.Unmarshal(b, &h) != nil {
		return nil
	}
	return &h
}

// stoppedFile marks a container its user stopped (berth stop), so that
// its restart policy does not start it again.
const stoppedFile = "stopped"

// MarkStopped records that the user stopped the container (true) or
// started it again (false).
func (c *Container) MarkStopped(stopped bool) error {
	p := filepath.Join(c.Dir, stoppedFile)
	if !stopped {
		err := os.Remove(p)
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	return os.WriteFile(p, nil, 0o600)
}

// StoppedByUser reports whether the user stopped the container (see
// MarkStopped).
func (c *Container) StoppedByUser() bool {
	_, err := os.Stat(filepath.Join(c.Dir, stoppedFile))
	return err == nil
}

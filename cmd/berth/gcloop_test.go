package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/storage"
	"github.com/berth-registry/berth/storage/filesystem"
	"github.com/berth-registry/berth/storage/inmemory"
	"github.com/berth-registry/berth/storage/store"
)

// metricValue returns the value of the counter, gauge or histogram (its
// sample count) name whose labels include labels ("k=v" each), or -1 if
// there is none.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for _, l := range labels {
				k, v, _ := strings.Cut(l, "=")
				found := false
				for _, lp := range m.GetLabel() {
					found = found || (lp.GetName() == k && lp.GetValue() == v)
				}
				if !found {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return -1
}

// waitFor polls cond until it holds, failing the test after a generous
// bound (a hung loop, not a slow machine).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startGCLoop runs the loop of c over st until the test ends, and returns
// its metrics registry and its log.
func startGCLoop(t *testing.T, c config.GC, st *store.Store) (*prometheus.Registry, *syncBuffer, func()) {
	t.Helper()
	reg := prometheus.NewRegistry()
	logs := &syncBuffer{}
	loop, err := newGCLoop(c, st, slog.New(slog.NewTextHandler(logs, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		loop.run(ctx)
	}()
	stop := func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("the gc loop did not stop when its context was cancelled")
		}
	}
	t.Cleanup(stop)
	return reg, logs, stop
}

// TestGCLoop runs the periodic collection with a tiny interval over the
// content of gcRoot: the first run deletes the unreferenced blobs and
// links, later ones nothing; the counters say so, each run logs one line
// at info, and cancelling the context stops the loop.
func TestGCLoop(t *testing.T) {
	d, err := filesystem.New(gcRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	st := store.New(d, store.Options{})
	c := config.Default().GC
	c.Interval = time.Millisecond
	reg, logs, stop := startGCLoop(t, c, st)

	// Every series exists before the first run.
	for _, m := range [][]string{
		{"berth_gc_runs_total", "result=ok"}, {"berth_gc_runs_total", "result=error"},
		{"berth_gc_deleted_total", "kind=uploads"}, {"berth_gc_spared_total", "kind=layer_links"},
		{"berth_gc_deleted_bytes_total"}, {"berth_gc_duration_seconds"}, {"berth_gc_last_success_timestamp_seconds"},
	} {
		if v := metricValue(t, reg, m[0], m[1:]...); v < 0 {
			t.Errorf("%s %v is not registered", m[0], m[1:])
		}
	}

	waitFor(t, "two successful runs", func() bool { return metricValue(t, reg, "berth_gc_runs_total", "result=ok") >= 2 })
	stop()

	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"berth_gc_deleted_total", []string{"kind=blobs"}, 3},
		{"berth_gc_deleted_total", []string{"kind=layer_links"}, 2},
		{"berth_gc_deleted_total", []string{"kind=tags"}, 0},
		{"berth_gc_deleted_total", []string{"kind=manifests"}, 0},
		{"berth_gc_deleted_total", []string{"kind=uploads"}, 0},
		{"berth_gc_spared_total", []string{"kind=blobs"}, 0},
		{"berth_gc_runs_total", []string{"result=error"}, 0},
	} {
		if got := metricValue(t, reg, tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	if got := metricValue(t, reg, "berth_gc_deleted_bytes_total"); got <= 0 {
		t.Errorf("berth_gc_deleted_bytes_total = %v, want the bytes of 3 blobs", got)
	}
	runs := metricValue(t, reg, "berth_gc_runs_total", "result=ok")
	if got := metricValue(t, reg, "berth_gc_duration_seconds"); got != runs {
		t.Errorf("berth_gc_duration_seconds counts %v runs, want %v", got, runs)
	}
	if got := metricValue(t, reg, "berth_gc_last_success_timestamp_seconds"); got <= 0 {
		t.Errorf("berth_gc_last_success_timestamp_seconds = %v, want set", got)
	}

	log := logs.String()
	if n := strings.Count(log, "gc: run finished"); float64(n) != runs {
		t.Errorf("%d summary lines for %v runs:\n%s", n, runs, log)
	}
	if !strings.Contains(log, `gc: run finished" dryRun=false tags=0 manifests=0 blobs=3 `) {
		t.Errorf("no summary of the first run:\n%s", log)
	}
	if strings.Contains(log, "gc: started") || strings.Contains(log, "level=ERROR") {
		t.Errorf("gc.Run's progress lines or errors logged at info:\n%s", log)
	}
}

// TestGCLoopDryRun: with gc.dryRun the runs count, and delete nothing.
func TestGCLoopDryRun(t *testing.T) {
	d, err := filesystem.New(gcRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	c := config.Default().GC
	c.Interval, c.DryRun = time.Millisecond, true
	reg, logs, stop := startGCLoop(t, c, store.New(d, store.Options{}))
	waitFor(t, "a dry run", func() bool { return metricValue(t, reg, "berth_gc_runs_total", "result=ok") >= 1 })
	stop()
	if got := metricValue(t, reg, "berth_gc_deleted_total", "kind=blobs"); got != 0 {
		t.Errorf("a dry run counted %v blobs deleted", got)
	}
	if !strings.Contains(logs.String(), `gc: run finished" dryRun=true tags=0 manifests=0 blobs=3 `) {
		t.Errorf("the dry run's plan is not logged:\n%s", logs.String())
	}
}

// failingList is a driver whose listings fail, so that a run cannot read
// the registry.
type failingList struct{ storage.Driver }

func (failingList) List(context.Context, string) ([]string, error) {
	return nil, errors.New("injected listing failure")
}

func (failingList) Walk(context.Context, string, storage.WalkFunc) error {
	return errors.New("injected listing failure")
}

// TestGCLoopErrors: a failed run is counted and logged at error, and the
// loop goes on.
func TestGCLoopErrors(t *testing.T) {
	c := config.Default().GC
	c.Interval = time.Millisecond
	reg, logs, stop := startGCLoop(t, c, store.New(failingList{inmemory.New()}, store.Options{}))
	waitFor(t, "two failed runs", func() bool { return metricValue(t, reg, "berth_gc_runs_total", "result=error") >= 2 })
	stop()
	if got := metricValue(t, reg, "berth_gc_runs_total", "result=ok"); got != 0 {
		t.Errorf("%v runs counted ok", got)
	}
	if got := metricValue(t, reg, "berth_gc_last_success_timestamp_seconds"); got != 0 {
		t.Errorf("last success set to %v by failed runs", got)
	}
	if log := logs.String(); !strings.Contains(log, "level=ERROR msg=\"gc: run failed\"") || !strings.Contains(log, "injected listing failure") {
		t.Errorf("failure not logged at error:\n%s", log)
	}
}

// TestGCLoopDisabled: no loop, and no metrics, without gc.interval; a
// rule gc refuses is a usage error.
func TestGCLoopDisabled(t *testing.T) {
	reg := prometheus.NewRegistry()
	st := store.New(inmemory.New(), store.Options{})
	loop, err := newGCLoop(config.Default().GC, st, slog.New(slog.DiscardHandler), reg)
	if loop != nil || err != nil {
		t.Fatalf("newGCLoop with interval 0 = %v, %v; want nil, nil", loop, err)
	}
	if v := metricValue(t, reg, "berth_gc_runs_total"); v != -1 {
		t.Errorf("gc metrics registered without a loop")
	}
	c := config.Default().GC
	c.Interval = time.Hour
	c.Retention = []config.RetentionRule{{Repositories: "a", KeepTags: []string{"("}}}
	_, err = newGCLoop(c, st, slog.New(slog.DiscardHandler), reg)
	if ee := (*exitError)(nil); !errors.As(err, &ee) || ee.code != exitUsage {
		t.Errorf("invalid rule: err = %v, want a usage error", err)
	}
}

// TestGCLoopWait: the wait is the interval plus at most a tenth, and the
// jitter is drawn each time.
func TestGCLoopWait(t *testing.T) {
	var asked []time.Duration
	l := &gcLoop{interval: time.Hour, jitter: func(limit time.Duration) time.Duration {
		asked = append(asked, limit)
		return limit
	}}
	if got := l.wait(); got != 66*time.Minute {
		t.Errorf("wait = %s, want 1h6m", got)
	}
	if l.wait(); len(asked) != 2 || asked[0] != 6*time.Minute {
		t.Errorf("jitter asked %v, want 6m twice", asked)
	}
	for range 100 {
		if j := randomJitter(time.Second); j < 0 || j > time.Second {
			t.Fatalf("randomJitter(1s) = %s", j)
		}
	}
	if j := randomJitter(0); j != 0 {
		t.Errorf("randomJitter(0) = %s", j)
	}
}

// TestServeGC: berth serve with gc.interval runs the loop, exports its
// metrics on /metrics, and stops it on SIGTERM; a bad rule in the
// configuration stops the start with exit code 2.
func TestServeGC(t *testing.T) {
	ta, base, sigc, exit := startServe(t, map[string]string{"BERTH_STORAGE_DRIVER": "inmemory", "BERTH_GC_INTERVAL": "1ms"})
	metrics := func() string {
		resp, err := http.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	waitFor(t, "a gc run in the server", func() bool {
		return strings.Contains(ta.stderr.String(), `"msg":"gc: run finished"`)
	})
	m := metrics()
	for _, w := range []string{`berth_gc_runs_total{result="ok"}`, `berth_gc_deleted_total{kind="layer_links"} 0`,
		"berth_gc_duration_seconds_count", "berth_gc_last_success_timestamp_seconds"} {
		if !strings.Contains(m, w) {
			t.Errorf("/metrics lacks %s", w)
		}
	}
	if strings.Contains(m, `berth_gc_runs_total{result="ok"} 0`) {
		t.Errorf("/metrics counts no run after one was logged")
	}
	sigc <- syscall.SIGTERM
	if code := waitExit(t, exit, 30*time.Second); code != exitOK {
		t.Errorf("exit %d after SIGTERM: %s", code, ta.stderr.String())
	}

	cfg := filepath.Join(t.TempDir(), "berth.yaml")
	if err := os.WriteFile(cfg, []byte("gc:\n  interval: 1h\n  retention:\n    - repositories: 'a/['\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := newTestApp(map[string]string{"BERTH_STORAGE_DRIVER": "inmemory"})
	if code := bad.run([]string{"serve", "--config", cfg}); code != exitUsage || !strings.Contains(bad.stderr.String(), "gc.retention[0].repositories") {
		t.Errorf("serve with a bad rule: exit %d, stderr %s", code, bad.stderr.String())
	}
}

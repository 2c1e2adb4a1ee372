package main

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berth-registry/berth/gc"
	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/storage/store"
)

// gcLoop runs garbage collection in the background of `berth serve`, every
// gc.interval. Runs never overlap: the wait for the next one starts when
// the previous one ends. Several replicas over one storage may each run it
// (the gc package's protocol makes concurrent collectors safe); the jitter
// keeps them from starting together.
type gcLoop struct {
	st       *store.Store
	opts     gc.Options // Logger demoted: Run's info lines are debug here
	interval time.Duration
	logger   *slog.Logger
	metrics  *gcMetrics
	// jitter returns the random delay added to one wait, from 0 to limit.
	jitter func(limit time.Duration) time.Duration
	next   atomic.Value // time.Time: when the next run starts
}

// newGCLoop returns the periodic collection that c configures, its metrics
// registered on reg, or nil if c.Interval is 0. A retention rule that gc
// refuses is a usage error.
func newGCLoop(c config.GC, st *store.Store, logger *slog.Logger, reg prometheus.Registerer) (*gcLoop, error) {
	if c.Interval <= 0 {
		return nil, nil
	}
	opts, err := gcOptions(c)
	if err != nil {
		return nil, usageError(err)
	}
	opts.Logger = slog.New(demoteInfo{logger.Handler()})
	m, err := newGCMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &gcLoop{st: st, opts: opts, interval: c.Interval, logger: logger, metrics: m, jitter: randomJitter}, nil
}

// randomJitter returns a uniformly random duration from 0 to limit.
func randomJitter(limit time.Duration) time.Duration {
	if limit <= 0 {
		return 0
	}
	return rand.N(limit + 1)
}

// run collects one interval (plus jitter) after the start, then one
// interval (plus jitter) after the end of each run, until ctx is done. A
// run in progress is cancelled with ctx.
func (l *gcLoop) run(ctx context.Context) {
	l.logger.Info("gc: periodic collection enabled", "interval", l.interval.String(), "dryRun", l.opts.DryRun,
		"deleteUntagged", l.opts.DeleteUntagged, "retentionRules", len(l.opts.Retention))
	w := l.wait()
	l.next.Store(time.Now().Add(w))
	timer := time.NewTimer(w)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		l.once(ctx)
		w = l.wait()
		l.next.Store(time.Now().Add(w))
		timer.Reset(w)
	}
}

// Next returns when the next run starts; zero before the loop runs.
func (l *gcLoop) Next() time.Time {
	if t, ok := l.next.Load().(time.Time); ok {
		return t
	}
	return time.Time{}
}

// wait is the time until the next run: the interval and up to a tenth more.
func (l *gcLoop) wait() time.Duration { return l.interval + l.jitter(l.interval/10) }

// once runs one collection, counts it and logs one line. What a run deleted
// is counted even if it then failed or was stopped by shutdown; a run
// stopped by shutdown is not counted as a run.
func (l *gcLoop) once(ctx context.Context) {
	start := time.Now()
	rep, err := gc.Run(ctx, l.st, l.opts)
	took := time.Since(start)
	l.metrics.countItems(rep)
	if ctx.Err() != nil {
		l.logger.Info("gc: run stopped by shutdown", "took", took.Round(time.Millisecond).String())
		return
	}
	l.metrics.duration.Observe(took.Seconds())
	if err != nil {
		l.metrics.runs.WithLabelValues("error").Inc()
		l.logger.Error("gc: run failed", append(gcLogAttrs(rep), "error", err)...)
		return
	}
	l.metrics.runs.WithLabelValues("ok").Inc()
	l.metrics.lastSuccess.SetToCurrentTime()
	l.logger.Info("gc: run finished", gcLogAttrs(rep)...)
}

// gcLogAttrs summarises rep in log attributes, for the one-line log of a run.
func gcLogAttrs(rep gc.Report) []any {
	d, s := rep.Deleted, rep.Spared
	return []any{
		"dryRun", rep.DryRun,
		"tags", d.Tags, "manifests", d.Manifests, "blobs", d.Blobs, "bytes", d.Bytes,
		"layerLinks", d.LayerLinks, "uploads", d.Uploads,
		"spared", s.Tags + s.Manifests + s.Blobs + s.LayerLinks + s.Uploads,
		"took", rep.Duration.Round(time.Millisecond).String(),
	}
}

// gcKinds are the values of the kind label of the gc metrics.
var gcKinds = [...]string{"tags", "manifests", "blobs", "layer_links", "uploads"}

// gcMetrics are the collectors of the periodic collection.
type gcMetrics struct {
	runs         *prometheus.CounterVec // result: ok or error
	deleted      *prometheus.CounterVec // kind
	deletedBytes prometheus.Counter
	spared       *prometheus.CounterVec // kind
	duration     prometheus.Histogram
	lastSuccess  prometheus.Gauge
}

// newGCMetrics registers the gc metrics on reg. Every label value exists
// from the start (at 0), so that rates and alerts work before the first run.
func newGCMetrics(reg prometheus.Registerer) (*gcMetrics, error) {
	m := &gcMetrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_gc_runs_total",
			Help: "Garbage collections run by the server, by result (ok or error); runs stopped by shutdown are not counted.",
		}, []string{"result"}),
		deleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_gc_deleted_total",
			Help: "Items garbage collection deleted, by kind (tags, manifests, blobs, layer_links, uploads); dry runs delete nothing.",
		}, []string{"kind"}),
		deletedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_gc_deleted_bytes_total",
			Help: "Bytes of the blobs garbage collection deleted.",
		}),
		spared: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_gc_spared_total",
			Help: "Items garbage collection planned to delete but left because a client relied on them during the run, by kind.",
		}, []string{"kind"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "berth_gc_duration_seconds",
			Help:    "Time a garbage collection run took, failed runs included.",
			Buckets: []float64{.1, .5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200},
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_gc_last_success_timestamp_seconds",
			Help: "When the last successful garbage collection run ended, in seconds since the Unix epoch; 0 before the first.",
		}),
	}
	for _, r := range []string{"ok", "error"} {
		m.runs.WithLabelValues(r)
	}
	for _, k := range gcKinds {
		m.deleted.WithLabelValues(k)
		m.spared.WithLabelValues(k)
	}
	for _, c := range []prometheus.Collector{m.runs, m.deleted, m.deletedBytes, m.spared, m.duration, m.lastSuccess} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// countItems adds what rep says a run deleted and spared. A dry run deleted
// nothing (its Deleted is the plan) and counts nothing.
func (m *gcMetrics) countItems(rep gc.Report) {
	if rep.DryRun {
		return
	}
	add := func(v *prometheus.CounterVec, c gc.Counts) {
		for i, n := range [...]int{c.Tags, c.Manifests, c.Blobs, c.LayerLinks, c.Uploads} {
			v.WithLabelValues(gcKinds[i]).Add(float64(n))
		}
	}
	add(m.deleted, rep.Deleted)
	add(m.spared, rep.Spared)
	m.deletedBytes.Add(float64(rep.Deleted.Bytes))
}

// demoteInfo is a slog.Handler that passes info records on as debug ones:
// gc.Run logs its progress at info, and the server logs one line per run
// instead.
type demoteInfo struct{ slog.Handler }

// Enabled reports whether h handles records of level l, info counting as debug.
func (h demoteInfo) Enabled(ctx context.Context, l slog.Level) bool {
	return h.Handler.Enabled(ctx, demote(l))
}

// Handle passes r on, at debug level if it was at info.
func (h demoteInfo) Handle(ctx context.Context, r slog.Record) error {
	r.Level = demote(r.Level)
	return h.Handler.Handle(ctx, r)
}

// WithAttrs returns the demoting handler over h's with attrs.
func (h demoteInfo) WithAttrs(attrs []slog.Attr) slog.Handler {
	return demoteInfo{h.Handler.WithAttrs(attrs)}
}

// WithGroup returns the demoting handler over h's with the group name.
func (h demoteInfo) WithGroup(name string) slog.Handler {
	return demoteInfo{h.Handler.WithGroup(name)}
}

func demote(l slog.Level) slog.Level {
	if l == slog.LevelInfo {
		return slog.LevelDebug
	}
	return l
}

package gc

import (
	"context"
	"sync"
	"time"

	"github.com/berth-registry/berth/storage/store"
)

// UsageTTL is how long a UsageReporter reuses the reference graph it read,
// from the end of its read: reports are up to this old, plus the time the
// read took.
const UsageTTL = 30 * time.Second

// UsagePolicy is what a UsageReporter needs of the collection policy to
// count reclaimable bytes as a collection would.
type UsagePolicy struct {
	Grace          time.Duration // zero: DefaultGrace; negative: none
	DeleteUntagged bool
	Caches         []CacheRule
}

// UsageReporter computes usage reports (Usage) for the registry's usage API
// and the web UI. Reading the reference graph is costly, so one read runs
// at a time, later callers wait for it (or for their context) and share
// the graph it read for UsageTTL; the graph is dropped UsageTTL after its
// read ended. It is safe for concurrent use.
type UsageReporter struct {
	st     *store.Store
	policy UsagePolicy
	turn   chan struct{} // holds a token while a caller reads the graph or computes

	mu   sync.Mutex
	snap *graphSnapshot // nil: none yet, or dropped
}

// graphSnapshot is a graph, when its read began (the cutoff counts from
// there) and when it ended (UsageTTL counts from there).
type graphSnapshot struct {
	graph      Graph
	begun, end time.Time
}

// NewUsageReporter returns a UsageReporter over st.
func NewUsageReporter(st *store.Store, p UsagePolicy) *UsageReporter {
	return &UsageReporter{st: st, policy: p, turn: make(chan struct{}, 1)}
}

// Report computes the usage of the repositories matching glob ("" for
// all), over a graph read at most UsageTTL ago, reading a new one if
// needed.
func (c *UsageReporter) Report(ctx context.Context, glob string) (UsageReport, error) {
	select {
	case c.turn <- struct{}{}:
	case <-ctx.Done():
		return UsageReport{}, ctx.Err()
	}
	defer func() { <-c.turn }()

	c.mu.Lock()
	s := c.snap
	c.mu.Unlock()
	if s == nil || time.Since(s.end) >= UsageTTL {
		// The cutoff counts from before the read, as in Run: what is
		// written meanwhile is recent, so never counted reclaimable.
		begun := time.Now()
		g, err := ReadGraphWithPulls(ctx, c.st, c.policy.Caches)
		if err != nil {
			return UsageReport{}, err
		}
		s = &graphSnapshot{graph: g, begun: begun, end: time.Now()}
		c.mu.Lock()
		c.snap = s
		c.mu.Unlock()
		// Do not hold a large graph longer than it may be used.
		time.AfterFunc(UsageTTL, func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.snap == s {
				c.snap = nil
			}
		})
	}
	grace := c.policy.Grace
	if grace == 0 {
		grace = DefaultGrace
	}
	return Usage(s.graph, UsageOptions{Cutoff: s.begun.Add(-max(grace, 0)), Now: s.begun,
		DeleteUntagged: c.policy.DeleteUntagged, Repositories: glob, Caches: c.policy.Caches}), nil
}

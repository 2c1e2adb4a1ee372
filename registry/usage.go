package registry

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/berth-registry/berth/gc"
	"github.com/berth-registry/berth/manifest"
	"github.com/berth-registry/berth/storage/store"
)

// usageTTL is how long a reference graph read for GET /v2/_berth/usage is
// reused, from the end of its read: reports are up to this old, plus the
// time the read took.
const usageTTL = 30 * time.Second

// usageHandler returns the handler of GET /v2/_berth/usage[?repositories=GLOB],
// which answers the gc.UsageReport of the repositories matching GLOB (all
// without it) as JSON.
//
// It needs what the catalog needs (registry:catalog:* with tokens, see
// auth.Required): the report names every repository. Reclaimable bytes are
// counted as a collection with Options.GC would count them.
//
// Computing a report reads the whole reference graph, so it stays off the
// paths clients use: one computation at a time per Registry, later requests
// wait for it (or for their context) and then share the graph it read for
// usageTTL. The graph is dropped usageTTL after its read ended.
func (reg *Registry) usageHandler() handlerFunc {
	c := &usageCache{st: reg.store, turn: make(chan struct{}, 1), policy: reg.gcPolicy}
	return func(w http.ResponseWriter, r *http.Request) error {
		glob := r.URL.Query().Get("repositories")
		if glob != "" {
			if err := gc.ValidateGlob(glob); err != nil {
				return fmt.Errorf("%w: repositories=%q is not a repository glob", manifest.ErrNameInvalid, shorten(glob))
			}
		}
		rep, err := c.report(r.Context(), glob)
		if err != nil {
			return fmt.Errorf("computing storage usage: %w", err)
		}
		return writeJSON(w, "application/json", rep)
	}
}

// usageCache serializes usage computations and keeps the last graph read.
type usageCache struct {
	st     *store.Store
	policy GCPolicy
	// turn holds a token while a request reads the graph or computes a
	// report; the others wait for it.
	turn chan struct{}

	mu   sync.Mutex
	snap *graphSnapshot // nil: none yet, or dropped usageTTL after its read
}

// graphSnapshot is a graph, when its read began (the cutoff counts from
// there) and when it ended (usageTTL counts from there).
type graphSnapshot struct {
	graph      gc.Graph
	begun, end time.Time
}

// report computes the usage of the repositories matching glob, over a
// graph read at most usageTTL ago, reading a new one if needed.
func (c *usageCache) report(ctx context.Context, glob string) (gc.UsageReport, error) {
	select {
	case c.turn <- struct{}{}:
	case <-ctx.Done():
		return gc.UsageReport{}, ctx.Err()
	}
	defer func() { <-c.turn }()

	c.mu.Lock()
	s := c.snap
	c.mu.Unlock()
	if s == nil || time.Since(s.end) >= usageTTL {
		// The cutoff counts from before the read, as in gc.Run: what is
		// written meanwhile is recent, so never counted reclaimable.
		begun := time.Now()
		g, err := gc.ReadGraphWithPulls(ctx, c.st, c.policy.Caches)
		if err != nil {
			return gc.UsageReport{}, err
		}
		s = &graphSnapshot{graph: g, begun: begun, end: time.Now()}
		c.mu.Lock()
		c.snap = s
		c.mu.Unlock()
		// Do not hold a large graph longer than it may be used.
		time.AfterFunc(usageTTL, func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.snap == s {
				c.snap = nil
			}
		})
	}
	grace := c.policy.Grace
	if grace == 0 {
		grace = gc.DefaultGrace
	}
	return gc.Usage(s.graph, gc.UsageOptions{Cutoff: s.begun.Add(-max(grace, 0)), Now: s.begun,
		DeleteUntagged: c.policy.DeleteUntagged, Repositories: glob, Caches: c.policy.Caches}), nil
}

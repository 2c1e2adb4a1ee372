package build

import (
	"context"
	"fmt"
	"time"

	"github.com/berth-registry/berth/runner/build/dockerfile"
	"github.com/berth-registry/berth/runner/image"
)

// CacheMode says which steps a cache export keeps.
type CacheMode int

const (
	// CacheMin keeps the steps of the image's own layers: the target
	// stage's and those of the stages it is built FROM.
	CacheMin CacheMode = iota
	// CacheMax keeps the steps of every stage the build ran.
	CacheMax
)

// CacheRecord is one step of a build as a cache keeps it.
type CacheRecord struct {
	// Key is the step's cache key (see Cache in doc.go): the same step
	// over the same parent has the same key on every machine.
	Key string
	// Layer is the layer the step made (its blob and diff_id).
	Layer image.Layer
	// Created is when the step first made the layer: the history time
	// of every image reusing it.
	Created time.Time
	// Step is the step's history line, for whoever reads the cache.
	Step string
}

// CacheSource is a cache Build looks a step up in when its local cache
// has no entry for it (--cache-from).
type CacheSource interface {
	// Lookup returns the record of key, its layer stored in images (the
	// blob in the blob store, the layer in the layer store), or false
	// when the source has none. Build holds images.Hold meanwhile.
	Lookup(ctx context.Context, images *image.Store, key string) (CacheRecord, bool, error)
}

// CacheTarget receives a build's steps once its image is recorded
// (--cache-to), those Mode selects, in the order they ran.
type CacheTarget struct {
	Mode   CacheMode
	Export func(ctx context.Context, images *image.Store, records []CacheRecord) error
}

// stageRecord is a step of stage as it ran or was found in a cache.
type stageRecord struct {
	stage int
	rec   CacheRecord
}

// lookupSources looks key up in opts.CacheFrom, in order, and records a
// hit in the local cache. A source that fails is warned about and
// counts as a miss: a cache never fails a build.
func (b *builder) lookupSources(ctx context.Context, key string) (cacheEntry, bool) {
	for _, src := range b.opts.CacheFrom {
		r, ok, err := src.Lookup(ctx, b.images, key)
		if err != nil {
			if b.opts.Warn != nil {
				b.opts.Warn(fmt.Sprintf("cache import: %v", err))
			}
			continue
		}
		if !ok {
			continue
		}
		e := cacheEntry{Layer: r.Layer, Step: r.Step, Created: r.Created}
		if err := b.cache.put(key, e); err != nil && b.opts.Warn != nil {
			b.opts.Warn(fmt.Sprintf("build cache: %v", err))
		}
		return e, true
	}
	return cacheEntry{}, false
}

// exportCache gives opts.CacheTo the steps of the build, those of the
// target stage's chain for CacheMin, all for CacheMax.
func (b *builder) exportCache(ctx context.Context, plan *dockerfile.Plan) error {
	if len(b.opts.CacheTo) == 0 {
		return nil
	}
	chain := map[int]bool{}
	for i := len(plan.Stages) - 1; i >= 0; i = plan.Stages[i].BaseStage {
		chain[i] = true
	}
	for _, t := range b.opts.CacheTo {
		var recs []CacheRecord
		seen := map[string]bool{}
		for _, r := range b.records {
			if (t.Mode == CacheMin && !chain[r.stage]) || seen[r.rec.Key] {
				continue
			}
			seen[r.rec.Key] = true
			recs = append(recs, r.rec)
		}
		v := b.prog.vertex("exporting cache")
		if err := t.Export(ctx, b.images, recs); err != nil {
			v.fail(err)
			return fmt.Errorf("exporting the cache: %w", err)
		}
		v.done()
	}
	return nil
}

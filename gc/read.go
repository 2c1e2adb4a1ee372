package gc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/berth-registry/berth/manifest"
	"github.com/berth-registry/berth/storage/store"
)

// Read concurrency: repositories read at once, and manifests read at once
// in each. Storage reads are latency-bound (a round trip on S3, a disk
// read on a cold filesystem) and both serve many at once far faster than
// one after the other.
const (
	repoConcurrency     = 12
	manifestConcurrency = 8
)

// ReadGraph reads the reference graph of st: every repository's manifest
// revisions (parsed), tags and layer links, and every stored blob. A
// manifest that cannot be read or parsed stops it: marking without its
// references could sweep what it needs. The blob store is walked while the
// repositories are read, several repositories at a time (each as the walk
// of the repositories finds it), and the three parts of each repository
// and its manifests several at a time.
func ReadGraph(ctx context.Context, st *store.Store) (Graph, error) {
	return readGraph(ctx, st, nil)
}

// ReadGraphWithPulls is ReadGraph that also reads, for the cached
// repositories whose rule expires content, when their manifests were last
// pulled (Repository.Pulled), as Usage and a collection need.
func ReadGraphWithPulls(ctx context.Context, st *store.Store, caches []CacheRule) (Graph, error) {
	return readGraph(ctx, st, func(name string) bool {
		i, ok := cacheRule(caches, name)
		return ok && caches[i].expires()
	})
}

// readGraph is ReadGraph that also reads the pull notes (Repository.Pulled)
// of the repositories pulls names.
func readGraph(ctx context.Context, st *store.Store, pulls func(name string) bool) (Graph, error) {
	g := Graph{Repositories: map[string]Repository{}, Blobs: map[digest.Digest]Blob{}}
	eg, ectx := errgroup.WithContext(ctx)
	eg.Go(func() error {
		return st.WalkBlobs(ectx, func(b store.BlobInfo) error {
			g.Blobs[b.Digest] = Blob{Size: b.Size, ModTime: b.ModTime}
			return nil
		})
	})
	var mu sync.Mutex
	eg.Go(func() error {
		rg, rctx := errgroup.WithContext(ectx)
		rg.SetLimit(repoConcurrency)
		err := st.WalkRepositoryDirs(rctx, func(name string) error {
			rg.Go(func() error {
				r, err := readRepository(rctx, st, name, pulls != nil && pulls(name))
				if err != nil {
					return err
				}
				mu.Lock()
				g.Repositories[name] = r
				mu.Unlock()
				return nil
			})
			return nil
		})
		if werr := rg.Wait(); werr != nil {
			return werr // err is then at most the walk's cancellation
		}
		return err
	})
	err := eg.Wait()
	return g, err
}

// readRepository reads one repository's part of the graph: its manifests,
// tags, layer links and referrers index at once.
func readRepository(ctx context.Context, st *store.Store, name string, pulls bool) (Repository, error) {
	r := Repository{
		Manifests:  map[digest.Digest]Manifest{},
		Tags:       map[string]Tag{},
		Layers:     map[digest.Digest]time.Time{},
		TagHistory: map[digest.Digest][]string{},
		Indexed:    map[digest.Digest][]digest.Digest{},
	}
	eg, ectx := errgroup.WithContext(ctx)
	eg.Go(func() error {
		m, err := readManifests(ectx, st, name)
		r.Manifests = m
		return err
	})
	eg.Go(func() error {
		tags, err := st.TagInfos(ectx, name)
		if err != nil {
			return err
		}
		for _, t := range tags {
			if t.Digest != "" {
				r.Tags[t.Tag] = Tag{Digest: t.Digest, Pushed: t.ModTime}
			}
			for _, d := range t.History {
				r.TagHistory[d] = append(r.TagHistory[d], t.Tag)
			}
		}
		return nil
	})
	eg.Go(func() error {
		links, err := st.LayerLinks(ectx, name)
		if err != nil {
			return err
		}
		for _, l := range links {
			r.Layers[l.Digest] = l.ModTime
		}
		return nil
	})
	if pulls {
		eg.Go(func() error {
			p, err := st.Pulls(ectx, name)
			r.Pulled = p
			return err
		})
	}
	eg.Go(func() error {
		entries, err := st.ReferrerEntries(ectx, name)
		if err != nil {
			return err
		}
		for _, e := range entries {
			r.Indexed[e.Referrer] = append(r.Indexed[e.Referrer], e.Subject)
		}
		return nil
	})
	err := eg.Wait()
	return r, err
}

// readManifests reads and parses the manifest revisions of repository name.
func readManifests(ctx context.Context, st *store.Store, name string) (map[digest.Digest]Manifest, error) {
	out := map[digest.Digest]Manifest{}
	revs, err := st.ManifestRevisions(ctx, name)
	if err != nil {
		return out, err
	}
	var mu sync.Mutex
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(manifestConcurrency)
	for _, rev := range revs {
		eg.Go(func() error {
			m, err := st.GetManifest(ectx, name, rev.Digest)
			if errors.Is(err, store.ErrManifestUnknown) {
				return nil // deleted meanwhile, or its bytes are missing: nothing to keep
			}
			if err != nil {
				return fmt.Errorf("gc: reading manifest %s in %s: %w", rev.Digest, name, err)
			}
			parsed, err := manifest.Parse("", m.Body)
			if err != nil {
				return fmt.Errorf("gc: parsing manifest %s in %s (fix or delete it; collecting without its references could delete what it needs): %w", rev.Digest, name, err)
			}
			refs := references(parsed)
			refs.ModTime = rev.ModTime
			mu.Lock()
			out[rev.Digest] = refs
			mu.Unlock()
			return nil
		})
	}
	err = eg.Wait()
	return out, err
}

// references lists what m references, for Mark.
func references(m *manifest.Manifest) Manifest {
	var out Manifest
	if m.Config != nil {
		out.Blobs = append(out.Blobs, m.Config.Digest)
	}
	for _, l := range m.Layers {
		out.Blobs = append(out.Blobs, l.Digest)
	}
	for _, c := range m.Manifests {
		out.Children = append(out.Children, c.Digest)
	}
	if m.Subject != nil {
		out.Subject = m.Subject.Digest
	}
	return out
}

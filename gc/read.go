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

// readConcurrency bounds the storage reads ReadGraph has in flight (it
// matters on S3, where each is a round trip).
const readConcurrency = 16

// ReadGraph reads the reference graph of st: every repository's manifest
// revisions (parsed), tags and layer links, then every stored blob. A
// manifest that cannot be read or parsed stops it: marking without its
// references could sweep what it needs. Repositories are read several at a
// time, and the manifests of each several at a time.
func ReadGraph(ctx context.Context, st *store.Store) (Graph, error) {
	g := Graph{Repositories: map[string]Repository{}, Blobs: map[digest.Digest]Blob{}}
	repos, err := st.RepositoryDirs(ctx)
	if err != nil {
		return g, err
	}
	var mu sync.Mutex
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(4)
	for _, name := range repos {
		eg.Go(func() error {
			r, err := readRepository(ectx, st, name)
			if err != nil {
				return err
			}
			mu.Lock()
			g.Repositories[name] = r
			mu.Unlock()
			return nil
		})
	}
	if err := eg.Wait(); err != nil {
		return g, err
	}
	err = st.WalkBlobs(ctx, func(b store.BlobInfo) error {
		g.Blobs[b.Digest] = Blob{Size: b.Size, ModTime: b.ModTime}
		return nil
	})
	return g, err
}

// readRepository reads one repository's part of the graph.
func readRepository(ctx context.Context, st *store.Store, name string) (Repository, error) {
	r := Repository{
		Manifests:  map[digest.Digest]Manifest{},
		Tags:       map[string]Tag{},
		Layers:     map[digest.Digest]time.Time{},
		TagHistory: map[digest.Digest][]string{},
	}
	revs, err := st.ManifestRevisions(ctx, name)
	if err != nil {
		return r, err
	}
	var mu sync.Mutex
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(readConcurrency)
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
			r.Manifests[rev.Digest] = refs
			mu.Unlock()
			return nil
		})
	}
	if err := eg.Wait(); err != nil {
		return r, err
	}
	tags, err := st.TagInfos(ctx, name)
	if err != nil {
		return r, err
	}
	for _, t := range tags {
		if t.Digest != "" {
			r.Tags[t.Tag] = Tag{Digest: t.Digest, Pushed: t.ModTime}
		}
		for _, d := range t.History {
			r.TagHistory[d] = append(r.TagHistory[d], t.Tag)
		}
	}
	links, err := st.LayerLinks(ctx, name)
	if err != nil {
		return r, err
	}
	for _, l := range links {
		r.Layers[l.Digest] = l.ModTime
	}
	return r, nil
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

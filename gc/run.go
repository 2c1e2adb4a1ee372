package gc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/manifest"
	"github.com/berth-registry/berth/storage/store"
)

// ErrCannotSweep: the storage driver cannot touch files (storage.Toucher),
// so a sweep could race a push; only a dry run is possible.
var ErrCannotSweep = errors.New("gc: the storage driver cannot update modification times, so a sweep could delete a blob a concurrent push relies on; only a dry run is possible on it")

// Run collects garbage in st: it restores what a killed sweep left aside,
// reads the graph, marks, and sweeps under the contract of the package doc.
func Run(ctx context.Context, st *store.Store, opts Options) (Report, error) {
	touchAfter := store.DefaultTouchAfter
	if opts.Grace == 0 {
		opts.Grace = DefaultGrace
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.hooks.now == nil {
		opts.hooks.now = time.Now
	}
	if opts.Grace <= touchAfter {
		return Report{}, fmt.Errorf("gc: grace %s must be longer than the store's touch threshold %s", opts.Grace, touchAfter)
	}
	if !opts.DryRun && !st.CanSweep() {
		return Report{}, ErrCannotSweep
	}
	start := opts.hooks.now()
	res := Report{Start: start, DryRun: opts.DryRun}
	if !opts.DryRun {
		if err := restore(ctx, st, opts.Logger); err != nil {
			return res, err
		}
	}
	if opts.hooks.afterStart != nil {
		opts.hooks.afterStart()
	}
	g, err := ReadGraph(ctx, st)
	if err != nil {
		return res, err
	}
	cutoff := start.Add(-opts.Grace)
	res.Cutoff = cutoff
	plan := Sweep(g, Mark(g, MarkOptions{}), cutoff)
	for _, d := range plan.Blobs {
		res.Blobs = append(res.Blobs, BlobItem{Digest: d, Size: g.Blobs[d].Size})
	}
	for _, l := range plan.LayerLinks {
		res.LayerLinks = append(res.LayerLinks, LinkItem(l))
	}
	res.ReclaimableBytes = plan.Bytes
	if opts.DryRun {
		for _, d := range plan.Blobs {
			opts.Logger.Debug("gc: would delete blob", "digest", d, "size", g.Blobs[d].Size)
		}
		for _, l := range plan.LayerLinks {
			opts.Logger.Debug("gc: would remove layer link", "repository", l.Repository, "digest", l.Digest)
		}
		res.Deleted.Blobs, res.Deleted.Bytes, res.Deleted.LayerLinks = len(plan.Blobs), plan.Bytes, len(plan.LayerLinks)
				return res, nil
	}
	if opts.hooks.beforeSweep != nil {
		opts.hooks.beforeSweep()
	}
	// Blob data first: a link whose blob is gone answers "unknown" anyway.
	for _, d := range plan.Blobs {
		ok, size, err := st.SweepBlob(ctx, d, cutoff)
		if err != nil {
			return res, fmt.Errorf("gc: sweeping blob %s: %w", d, err)
		}
		if ok {
			res.Deleted.Blobs++
			res.Deleted.Bytes += size
			opts.Logger.Debug("gc: deleted blob", "digest", d, "size", size)
		}
	}
	for _, l := range plan.LayerLinks {
		ok, err := st.SweepLayerLink(ctx, l.Repository, l.Digest, cutoff)
		if err != nil {
			return res, fmt.Errorf("gc: sweeping layer link %s in %s: %w", l.Digest, l.Repository, err)
		}
		if ok {
			res.Deleted.LayerLinks++
			opts.Logger.Debug("gc: removed layer link", "repository", l.Repository, "digest", l.Digest)
		}
	}
		return res, nil
}

// restore puts back the blobs a killed sweep left aside.
func restore(ctx context.Context, st *store.Store, logger *slog.Logger) error {
	var doomed []digest.Digest
	if err := st.WalkBlobs(ctx, func(b store.BlobInfo) error {
		if b.Doomed {
			doomed = append(doomed, b.Digest)
		}
		return nil
	}); err != nil {
		return err
	}
	for _, d := range doomed {
		logger.Info("gc: restoring a blob an interrupted sweep left aside", "digest", d)
		if err := st.RestoreBlob(ctx, d); err != nil {
			return fmt.Errorf("gc: restoring blob %s: %w", d, err)
		}
	}
	return nil
}

// ReadGraph reads the reference graph of st: every repository's manifest
// revisions (parsed), tags and layer links, then every stored blob. A
// manifest that cannot be read or parsed stops it: marking without its
// references could sweep what it needs.
func ReadGraph(ctx context.Context, st *store.Store) (Graph, error) {
	g := Graph{Repositories: map[string]Repository{}, Blobs: map[digest.Digest]Blob{}}
	repos, err := st.Repositories(ctx)
	if err != nil {
		return g, err
	}
	for _, name := range repos {
		r := Repository{
			Manifests: map[digest.Digest]Manifest{},
			Tags:      map[string]Tag{},
			Layers:    map[digest.Digest]time.Time{},
		}
		revs, err := st.ManifestRevisions(ctx, name)
		if err != nil {
			return g, err
		}
		for _, rev := range revs {
			m, err := st.GetManifest(ctx, name, rev.Digest)
			if errors.Is(err, store.ErrManifestUnknown) {
				continue // deleted meanwhile, or its bytes are missing: nothing to keep
			}
			if err != nil {
				return g, fmt.Errorf("gc: reading manifest %s in %s: %w", rev.Digest, name, err)
			}
			parsed, err := manifest.Parse("", m.Body)
			if err != nil {
				return g, fmt.Errorf("gc: parsing manifest %s in %s: %w", rev.Digest, name, err)
			}
			r.Manifests[rev.Digest] = references(parsed)
		}
		tags, err := st.Tags(ctx, name)
		if err != nil && !errors.Is(err, store.ErrNameUnknown) {
			return g, err
		}
		for _, t := range tags {
			d, err := st.ResolveTag(ctx, name, t)
			if errors.Is(err, store.ErrManifestUnknown) {
				continue
			}
			if err != nil {
				return g, err
			}
			r.Tags[t] = Tag{Digest: d}
		}
		links, err := st.LayerLinks(ctx, name)
		if err != nil {
			return g, err
		}
		for _, l := range links {
			r.Layers[l.Digest] = l.ModTime
		}
		g.Repositories[name] = r
	}
	err = st.WalkBlobs(ctx, func(b store.BlobInfo) error {
		if !b.Doomed {
			g.Blobs[b.Digest] = Blob{Size: b.Size, ModTime: b.ModTime}
		}
		return nil
	})
	return g, err
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

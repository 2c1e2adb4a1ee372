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

// DefaultGrace is the default Options.Grace.
const DefaultGrace = time.Hour

// ErrCannotSweep: the storage driver cannot touch files (storage.Toucher),
// so a sweep could race a push; only a dry run is possible.
var ErrCannotSweep = errors.New("gc: the storage driver cannot update modification times, so a sweep could delete a blob a concurrent push relies on; only a dry run is possible on it")

// Options tune Run.
type Options struct {
	// Grace: only files last modified more than Grace before the run
	// started are deleted. Zero means DefaultGrace. It must exceed the
	// registry's store.Options.TouchAfter (see the package doc).
	Grace time.Duration
	// TouchAfter is the registry's store.Options.TouchAfter, to check
	// Grace against. Zero means store.DefaultTouchAfter.
	TouchAfter time.Duration
	// DryRun plans without deleting anything.
	DryRun bool
	// Logger receives each path deleted (or that would be) at debug level.
	// Nil means slog.Default().
	Logger *slog.Logger
	// now is time.Now; tests replace it.
	now func() time.Time
	// afterStart and beforeSweep, when set, run at those points (tests
	// use them to race a push against the run).
	afterStart, beforeSweep func()
}

// Result is what a run did (or, in a dry run, would do).
type Result struct {
	Start time.Time
	Plan  Plan
	// Deleted, DeletedBytes and LinksRemoved count what the sweep removed;
	// in a dry run they are the plan's counts. A real run may remove less
	// than planned: files touched since they were enumerated stay.
	Deleted      int
	DeletedBytes int64
	LinksRemoved int
	Kept         int // blobs left in place
}

// Run collects garbage in st: it restores what a killed sweep left aside,
// reads the graph, marks, and sweeps under the contract of the package doc.
func Run(ctx context.Context, st *store.Store, opts Options) (Result, error) {
	if opts.Grace == 0 {
		opts.Grace = DefaultGrace
	}
	if opts.TouchAfter == 0 {
		opts.TouchAfter = store.DefaultTouchAfter
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.now == nil {
		opts.now = time.Now
	}
	if opts.Grace <= opts.TouchAfter {
		return Result{}, fmt.Errorf("gc: grace %s must be longer than the store's touch threshold %s", opts.Grace, opts.TouchAfter)
	}
	if !opts.DryRun && !st.CanSweep() {
		return Result{}, ErrCannotSweep
	}
	start := opts.now()
	res := Result{Start: start}
	if !opts.DryRun {
		if err := restore(ctx, st, opts.Logger); err != nil {
			return res, err
		}
	}
	if opts.afterStart != nil {
		opts.afterStart()
	}
	g, err := ReadGraph(ctx, st)
	if err != nil {
		return res, err
	}
	cutoff := start.Add(-opts.Grace)
	res.Plan = Sweep(g, Mark(g, MarkOptions{}), cutoff)
	if opts.DryRun {
		for _, d := range res.Plan.Blobs {
			opts.Logger.Debug("gc: would delete blob", "digest", d, "size", g.Blobs[d].Size)
		}
		for _, l := range res.Plan.LayerLinks {
			opts.Logger.Debug("gc: would remove layer link", "repository", l.Repository, "digest", l.Digest)
		}
		res.Deleted, res.DeletedBytes, res.LinksRemoved = len(res.Plan.Blobs), res.Plan.Bytes, len(res.Plan.LayerLinks)
		res.Kept = len(g.Blobs) - res.Deleted
		return res, nil
	}
	if opts.beforeSweep != nil {
		opts.beforeSweep()
	}
	// Blob data first: a link whose blob is gone answers "unknown" anyway.
	for _, d := range res.Plan.Blobs {
		ok, size, err := st.SweepBlob(ctx, d, cutoff)
		if err != nil {
			return res, fmt.Errorf("gc: sweeping blob %s: %w", d, err)
		}
		if ok {
			res.Deleted++
			res.DeletedBytes += size
			opts.Logger.Debug("gc: deleted blob", "digest", d, "size", size)
		}
	}
	for _, l := range res.Plan.LayerLinks {
		ok, err := st.SweepLayerLink(ctx, l.Repository, l.Digest, cutoff)
		if err != nil {
			return res, fmt.Errorf("gc: sweeping layer link %s in %s: %w", l.Digest, l.Repository, err)
		}
		if ok {
			res.LinksRemoved++
			opts.Logger.Debug("gc: removed layer link", "repository", l.Repository, "digest", l.Digest)
		}
	}
	res.Kept = len(g.Blobs) - res.Deleted
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
			Tags:      map[string]digest.Digest{},
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
			r.Tags[t] = d
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

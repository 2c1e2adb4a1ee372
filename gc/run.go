package gc

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/storage/store"
)

// NoGrace as Options.Grace makes the cutoff the run's start: anything
// written before it may go. Use it only when no client writes meanwhile (a
// manifest being pushed could lose a blob).
const NoGrace time.Duration = -1

// batchSize is how many items one doom-lease-delete round covers. A round
// must finish within store.DoomTTL/4 of its marking; smaller rounds also
// keep fewer items unavailable to HEAD and mount at a time.
const batchSize = 2000

// sweepDeadline is how long after marking a round may still delete: past
// it, the round's remaining items are spared and the run says so.
const sweepDeadline = store.DoomTTL / 4

// Run collects garbage in st under the contract of the package doc: it
// removes retention's tags, marks, and sweeps what no root reaches in
// rounds of mark-doomed, read leases, delete. In a dry run it stops after
// planning. It returns the report of what it planned and did; on error,
// the report so far.
func Run(ctx context.Context, st *store.Store, opts Options) (Report, error) {
	began := time.Now()
	if opts.Grace == 0 {
		opts.Grace = DefaultGrace
	}
	grace := max(opts.Grace, 0)
	if opts.UploadMaxAge <= 0 {
		opts.UploadMaxAge = DefaultUploadMaxAge
	}
	opts.UploadMaxAge = max(opts.UploadMaxAge, grace)
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	for _, r := range opts.Retention {
		if err := r.Validate(); err != nil {
			return Report{}, err
		}
	}
	rep := Report{DryRun: opts.DryRun}
	var id [8]byte
	_, _ = rand.Read(id[:])
	runID := hex.EncodeToString(id[:])
	start, err := st.Now(ctx)
	if err != nil {
		if !opts.DryRun {
			return rep, fmt.Errorf("gc: reading the storage's clock: %w", err)
		}
		// A dry run may have read-only credentials: use this host's clock.
		start = time.Now()
	}
	if opts.hooks.now != nil {
		start = opts.hooks.now()
	}
	rep.Start, rep.Cutoff = start, start.Add(-grace)
	log.Info("gc: started", "dryRun", opts.DryRun, "cutoff", rep.Cutoff, "deleteUntagged", opts.DeleteUntagged)
	if opts.hooks.afterStart != nil {
		opts.hooks.afterStart()
	}

	g, err := ReadGraphWithPulls(ctx, st, opts.Caches)
	if err != nil {
		return rep, err
	}
	pl, err := plan(g, opts, &rep)
	if err != nil {
		return rep, err
	}
	uploads, err := st.IdleUploads(ctx, start.Add(-opts.UploadMaxAge))
	if err != nil {
		return rep, err
	}
	for _, u := range uploads {
		rep.Uploads = append(rep.Uploads, UploadItem(u))
	}
	log.Info("gc: planned", "tags", len(rep.Tags), "manifests", len(rep.Manifests), "blobs", len(rep.Blobs),
		"reclaimableBytes", rep.ReclaimableBytes, "layerLinks", len(rep.LayerLinks), "uploads", len(rep.Uploads))
	if err := indexReferrers(ctx, st, pl, &rep, log); err != nil {
		// The index is a side job: a dry run may have read-only
		// credentials, and the collection does not depend on it.
		if ctx.Err() != nil {
			return rep, err
		}
		log.Warn("gc: could not complete the referrers index; the next run tries again", "error", err)
	}
	if err := writeSummaries(ctx, st, pl.graph, &rep, log); err != nil {
		if ctx.Err() != nil {
			return rep, err
		}
		log.Warn("gc: could not write every missing repository summary; the next run tries again", "error", err)
	}
	if opts.DryRun {
		rep.Deleted = Counts{Tags: len(rep.Tags), Manifests: len(rep.Manifests), Blobs: len(rep.Blobs),
			Bytes: rep.ReclaimableBytes, LayerLinks: len(rep.LayerLinks), Uploads: len(rep.Uploads)}
		for _, it := range pl.items {
			log.Debug("gc: would delete", "kind", kindName(it.Kind), "repository", it.Repository, "digest", it.Digest)
		}
		rep.Duration = time.Since(began)
		return rep, nil
	}
	if opts.hooks.beforeSweep != nil {
		opts.hooks.beforeSweep()
	}

	// Tags first: what they kept is then unreachable, as planned.
	for _, t := range rep.Tags {
		ok, err := st.DeleteTagIf(ctx, t.Repository, t.Tag, t.Digest, t.Pushed)
		if err != nil {
			return rep, fmt.Errorf("gc: deleting tag %s:%s: %w", t.Repository, t.Tag, err)
		}
		if ok {
			rep.Deleted.Tags++
			log.Debug("gc: deleted tag", "repository", t.Repository, "tag", t.Tag, "digest", t.Digest)
		} else {
			rep.Spared.Tags++
		}
	}
	batch := batchSize
	if opts.hooks.batch > 0 {
		batch = opts.hooks.batch
	}
	for i := 0; i < len(pl.items); i += batch {
		list := fmt.Sprintf("%s-%06d", runID, i/batch)
		if err := sweepRound(ctx, st, list, opts, pl, pl.items[i:min(i+batch, len(pl.items))], &rep, log); err != nil {
			return rep, err
		}
	}
	for _, u := range uploads {
		ok, err := st.PurgeIdleUpload(ctx, u.Repository, u.ID, start.Add(-opts.UploadMaxAge))
		if err != nil {
			return rep, fmt.Errorf("gc: purging upload %s in %s: %w", u.ID, u.Repository, err)
		}
		if ok {
			rep.Deleted.Uploads++
		} else {
			rep.Spared.Uploads++
		}
	}
	// Leases outlive the longest grace any collector may use with this
	// storage; doom lists are void after store.DoomTTL anyway.
	if _, err := st.CleanUpGC(ctx, start.Add(-max(grace, DefaultGrace)-time.Hour)); err != nil {
		log.Warn("gc: cleaning up old leases and doom lists", "error", err)
	}
	reserve(ctx, st, opts.Reserve, log)
	rep.Duration = time.Since(began)
	record(ctx, st, opts.RecordAs, rep, log)
	log.Info("gc: finished", "duration", rep.Duration, "deletedBlobs", rep.Deleted.Blobs, "deletedBytes", rep.Deleted.Bytes,
		"deletedManifests", rep.Deleted.Manifests, "deletedLayerLinks", rep.Deleted.LayerLinks, "deletedTags", rep.Deleted.Tags,
		"purgedUploads", rep.Deleted.Uploads, "spared", rep.Spared)
	return rep, nil
}

// reserve makes the collector's reserve of n bytes (see Options.Reserve)
// again, once the run has freed space; a storage still full only leaves
// the next run without one, which the log says.
func reserve(ctx context.Context, st *store.Store, n int64, log *slog.Logger) {
	if n == 0 {
		n = store.DefaultReserve
	}
	if err := st.Reserve(ctx, n); err != nil {
		log.Warn("gc: could not make the collector's reserve; a run on a full storage may fail to start", "bytes", n, "error", err)
	}
}

// indexReferrers completes the referrers index of every repository: a
// manifest with a subject that its index does not list under that subject
// (pushed through CNCF Distribution, which keeps no index, before Berth
// took the storage over) gets its entry, unless the run is about to delete
// it. This only adds what a push would have written, so a dry run does it
// too: after one collection the referrers API answers for all content.
func indexReferrers(ctx context.Context, st *store.Store, pl sweepPlan, rep *Report, log *slog.Logger) error {
	doomed := map[string]map[digest.Digest]bool{}
	for _, it := range pl.items {
		if it.Kind == store.ItemManifest {
			if doomed[it.Repository] == nil {
				doomed[it.Repository] = map[digest.Digest]bool{}
			}
			doomed[it.Repository][it.Digest] = true
		}
	}
	for _, name := range sortedKeys(pl.graph.Repositories) {
		r := pl.graph.Repositories[name]
		for _, d := range sortedKeys(r.Manifests) {
			subject := r.Manifests[d].Subject
			if subject == "" || doomed[name][d] || slices.Contains(r.Indexed[d], subject) {
				continue
			}
			ok, err := st.IndexReferrer(ctx, name, d)
			if err != nil {
				return fmt.Errorf("gc: indexing referrer %s@%s of %s: %w", name, d, subject, err)
			}
			if ok {
				rep.ReferrersIndexed++
				log.Debug("gc: indexed referrer", "repository", name, "referrer", d, "subject", subject)
			}
		}
	}
	if rep.ReferrersIndexed > 0 {
		log.Info("gc: completed the referrers index", "entries", rep.ReferrersIndexed)
	}
	return nil
}

// writeSummaries writes the summary (store.Summary) of every repository of
// g that has tags and none, or one without the facts of a tagged manifest:
// content written by CNCF Distribution, or before Berth kept summaries or
// their facts. Like the referrers index, a dry run does it too.
func writeSummaries(ctx context.Context, st *store.Store, g Graph, rep *Report, log *slog.Logger) error {
	for _, name := range sortedKeys(g.Repositories) {
		if len(g.Repositories[name].Tags) == 0 {
			continue
		}
		sum, ok, err := st.ReadSummary(ctx, name)
		if err != nil {
			return err
		}
		if ok && hasFacts(sum) {
			continue
		}
		if _, _, err := st.RefreshSummary(ctx, name); err != nil {
			return fmt.Errorf("gc: writing the summary of %s: %w", name, err)
		}
		rep.SummariesWritten++
	}
	if rep.SummariesWritten > 0 {
		log.Info("gc: wrote missing repository summaries", "repositories", rep.SummariesWritten)
	}
	return nil
}

// hasFacts reports whether sum holds the facts of every manifest its tags
// point at.
func hasFacts(sum store.Summary) bool {
	for _, tg := range sum.Tags {
		if _, ok := sum.Manifests[tg.Digest]; !ok {
			return false
		}
	}
	return true
}

// sweepPlan is what the sweep rounds work through.
type sweepPlan struct {
	graph Graph // after retention
	items []store.Item
	sizes map[digest.Digest]int64
}

// plan applies retention to g, marks and plans; it fills the plan part of
// rep and returns the items to sweep: manifests first, then layer links,
// then blobs, so that an interrupted run never leaves a revision whose
// bytes are gone.
func plan(g Graph, opts Options, rep *Report) (sweepPlan, error) {
	tags, err := ApplyRetention(g, opts.Retention, rep.Start)
	if err != nil {
		return sweepPlan{}, err
	}
	inUse, expired := ApplyCacheExpiry(g, opts.Caches, rep.Start)
	for _, t := range expired {
		if !slices.ContainsFunc(tags, func(o TagItem) bool { return o.Repository == t.Repository && o.Tag == t.Tag }) {
			tags = append(tags, t)
		}
	}
	rep.Tags = tags
	g = withoutTags(g, tags)
	marks := Mark(g, MarkOptions{DeleteUntagged: opts.DeleteUntagged, Cutoff: rep.Cutoff, InUse: inUse})
	p := Sweep(g, marks, rep.Cutoff)
	sp := sweepPlan{graph: g, sizes: map[digest.Digest]int64{}}
	for _, m := range p.Manifests {
		rep.Manifests = append(rep.Manifests, m)
		r := g.Repositories[m.Repository]
		sp.items = append(sp.items, store.Item{Kind: store.ItemManifest, Repository: m.Repository, Digest: m.Digest,
			Subject: r.Manifests[m.Digest].Subject, TagHistory: r.TagHistory[m.Digest]})
	}
	for _, l := range p.LayerLinks {
		rep.LayerLinks = append(rep.LayerLinks, LinkItem(l))
		sp.items = append(sp.items, store.Item{Kind: store.ItemLayerLink, Repository: l.Repository, Digest: l.Digest})
	}
	for _, d := range p.Blobs {
		size := g.Blobs[d].Size
		rep.Blobs = append(rep.Blobs, BlobItem{Digest: d, Size: size})
		sp.sizes[d] = size
		sp.items = append(sp.items, store.Item{Kind: store.ItemBlob, Digest: d})
	}
	rep.ReclaimableBytes = p.Bytes
	if opts.Explain {
		rep.Kept = explain(g, marks, rep.Cutoff)
	}
	return sp, nil
}

// withoutTags returns g with tags removed (g itself is not changed).
func withoutTags(g Graph, tags []TagItem) Graph {
	if len(tags) == 0 {
		return g
	}
	out := Graph{Repositories: make(map[string]Repository, len(g.Repositories)), Blobs: g.Blobs}
	for name, r := range g.Repositories {
		out.Repositories[name] = r
	}
	for _, t := range tags {
		r := out.Repositories[t.Repository]
		kept := make(map[string]Tag, len(r.Tags))
		for name, tag := range r.Tags {
			if name != t.Tag {
				kept[name] = tag
			}
		}
		r.Tags = kept
		out.Repositories[t.Repository] = r
	}
	return out
}

// sweepRound deletes one batch of planned items under the interlock: write
// the round's doom list naming them, read the leases written since the
// cutoff, spare whatever a lease reaches, delete the rest, remove the list.
func sweepRound(ctx context.Context, st *store.Store, list string, opts Options, sp sweepPlan, items []store.Item, rep *Report, log *slog.Logger) error {
	marked := time.Now()
	if err := st.Doom(ctx, list, items); err != nil {
		undoom(st, list, log)
		return fmt.Errorf("gc: marking items doomed: %w", err)
	}
	defer undoom(st, list, log)
	if opts.hooks.afterDoom != nil {
		opts.hooks.afterDoom()
	}
	leases, err := st.Leases(ctx, rep.Cutoff)
	if err != nil {
		return fmt.Errorf("gc: reading leases: %w", err)
	}
	if opts.hooks.beforeDelete != nil {
		opts.hooks.beforeDelete()
	}
	var doomed []store.Item
	if len(leases) == 0 {
		doomed = items
	} else {
		leased := map[string][]digest.Digest{}
		for _, l := range leases {
			leased[l.Repository] = append(leased[l.Repository], l.Digest)
		}
		m := Mark(sp.graph, MarkOptions{DeleteUntagged: opts.DeleteUntagged, Cutoff: rep.Cutoff, Leased: leased})
		for _, it := range items {
			if spared(m, it) {
				count(&rep.Spared, it, sp.sizes)
				log.Debug("gc: spared (leased)", "kind", kindName(it.Kind), "repository", it.Repository, "digest", it.Digest)
				continue
			}
			doomed = append(doomed, it)
		}
	}
	if time.Since(marked) > sweepDeadline {
		for _, it := range doomed {
			count(&rep.Spared, it, sp.sizes)
		}
		log.Warn("gc: a sweep round took too long after marking; its items are left for the next run", "items", len(doomed), "took", time.Since(marked))
		return nil
	}
	var errs []error
	for i, err := range st.DeleteItems(ctx, doomed) {
		it := doomed[i]
		if err != nil {
			errs = append(errs, fmt.Errorf("gc: deleting %s %s %s: %w", kindName(it.Kind), it.Repository, it.Digest, err))
			continue
		}
		count(&rep.Deleted, it, sp.sizes)
		log.Debug("gc: deleted", "kind", kindName(it.Kind), "repository", it.Repository, "digest", it.Digest)
	}
	return errors.Join(errs...)
}

// undoom removes a round's doom list, even when the run's context is done.
func undoom(st *store.Store, list string, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := st.Undoom(ctx, list); err != nil {
		log.Warn("gc: removing a doom list (it expires by itself)", "list", list, "error", err)
	}
}

// spared reports whether marks made with the leases reach it.
func spared(m Marks, it store.Item) bool {
	switch it.Kind {
	case store.ItemManifest:
		_, ok := m.Kept[it.Repository][it.Digest]
		return ok || m.Repositories[it.Repository][it.Digest]
	case store.ItemLayerLink:
		return m.Repositories[it.Repository][it.Digest]
	default:
		return m.Blobs[it.Digest]
	}
}

func count(c *Counts, it store.Item, sizes map[digest.Digest]int64) {
	switch it.Kind {
	case store.ItemManifest:
		c.Manifests++
	case store.ItemLayerLink:
		c.LayerLinks++
	default:
		c.Blobs++
		c.Bytes += sizes[it.Digest]
	}
}

func kindName(k store.ItemKind) string {
	switch k {
	case store.ItemManifest:
		return "manifest"
	case store.ItemLayerLink:
		return "layerLink"
	default:
		return "blob"
	}
}

// explain lists why each kept manifest, blob and layer link stays.
func explain(g Graph, m Marks, cutoff time.Time) []KeptItem {
	var out []KeptItem
	for name, r := range g.Repositories {
		for d := range r.Manifests {
			if why, ok := m.Kept[name][d]; ok {
				out = append(out, KeptItem{Kind: "manifest", Repository: name, Digest: d, Reason: why})
			}
		}
		for d, mod := range r.Layers {
			switch {
			case m.Repositories[name][d]:
				out = append(out, KeptItem{Kind: "layerLink", Repository: name, Digest: d, Reason: "referenced by " + m.BlobWhy[d]})
			case !mod.Before(cutoff):
				out = append(out, KeptItem{Kind: "layerLink", Repository: name, Digest: d, Reason: "newer than the cutoff"})
			}
		}
	}
	for d, b := range g.Blobs {
		switch {
		case m.Blobs[d]:
			out = append(out, KeptItem{Kind: "blob", Digest: d, Reason: "referenced by " + m.BlobWhy[d]})
		case !b.ModTime.Before(cutoff):
			out = append(out, KeptItem{Kind: "blob", Digest: d, Reason: "newer than the cutoff"})
		}
	}
	slices.SortFunc(out, func(a, b KeptItem) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Repository, b.Repository), cmp.Compare(a.Digest, b.Digest))
	})
	return out
}

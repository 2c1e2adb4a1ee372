package ui

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/gc"
	"github.com/berth-registry/berth/manifest"
	"github.com/berth-registry/berth/storage/store"
)

// maxReferrerDepth bounds the referrer tree of the image page.
const maxReferrerDepth = 4

// StoreSource is the Source over a registry's store. The lists read each
// repository's summary (store.Summary), which holds its tags and the
// facts of the manifests they point at; facts a summary lacks are read
// from the manifests, kept in memory, and the summary repaired in the
// background.
type StoreSource struct {
	st *store.Store
	// upstream names the upstream of a cached repository, "" for a local
	// one; nil: every repository is local.
	upstream func(repo string) string

	usage  *gc.UsageReporter // nil: no storage page (see WithStorage)
	nextGC func() time.Time

	mu      sync.Mutex
	facts   map[digest.Digest]store.ManifestFacts // bounded by maxFacts
	checked map[string]time.Time                  // when checkLater last checked each repository
}

// maxFacts bounds the manifests whose facts a StoreSource keeps.
const maxFacts = 100_000

// NewStoreSource returns the Source over st; upstream (may be nil) names
// the upstream a cached repository is filled from.
func NewStoreSource(st *store.Store, upstream func(repo string) string) *StoreSource {
	return &StoreSource{st: st, upstream: upstream, facts: map[digest.Digest]store.ManifestFacts{}}
}

func (s *StoreSource) upstreamOf(repo string) string {
	if s.upstream == nil {
		return ""
	}
	return s.upstream(repo)
}

// Repositories implements Source.
func (s *StoreSource) Repositories(ctx context.Context) ([]Repository, error) {
	names, err := s.st.Repositories(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Repository, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, name := range names {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i], errs[i] = s.listed(ctx, name)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("repository %s: %w", names[i], err)
		}
	}
	return out, nil
}

// listed summarises repository name from its stored summary (one read),
// rebuilt from the tag links when there is none.
func (s *StoreSource) listed(ctx context.Context, name string) (Repository, error) {
	summary, ok, err := s.st.ReadSummary(ctx, name)
	if err != nil {
		return Repository{}, err
	}
	if !ok {
		if summary, _, err = s.st.RefreshSummary(ctx, name); err != nil {
			return Repository{}, err
		}
	}
	r := Repository{Name: name, Upstream: s.upstreamOf(name)}
	all := map[digest.Digest]int64{}
	for _, tg := range summary.Tags {
		f, err := s.summaryFacts(ctx, name, summary, tg.Digest)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return Repository{}, err
		}
		r.Tags++
		maps.Copy(all, f.Blobs)
		if tg.Pushed.After(r.LastPush) {
			r.LastPush = tg.Pushed
		}
	}
	r.Bytes = sum(all)
	return r, nil
}

// summaryFacts returns the facts of manifest d of repo from its summary
// or, when the summary lacks them, read (and the summary repaired later).
// Referrers are those of the summary, or none for facts read here.
func (s *StoreSource) summaryFacts(ctx context.Context, repo string, summary store.Summary, d digest.Digest) (store.ManifestFacts, error) {
	if f, ok := summary.Manifests[d]; ok {
		return f, nil
	}
	s.checkLater(repo)
	f, err := s.manifestFacts(ctx, repo, d)
	f.Referrers = nil
	return f, err
}

// Repository implements Source. It reads the repository's summary and
// its referrers index (two reads); the summary is checked against the tag
// links in the background, at most every summaryCheck per repository, so
// that a change it missed (two replicas tagging at once) shows soon.
func (s *StoreSource) Repository(ctx context.Context, name string) (RepositoryPage, error) {
	summary, ok, err := s.st.ReadSummary(ctx, name)
	if err != nil {
		return RepositoryPage{}, err
	}
	if !ok {
		if summary, _, err = s.st.RefreshSummary(ctx, name); err != nil {
			return RepositoryPage{}, err
		}
	} else {
		s.checkLater(name)
	}
	if len(summary.Tags) == 0 { // a repository without tags, or none at all
		revs, err := s.st.ManifestRevisions(ctx, name)
		if err != nil {
			return RepositoryPage{}, err
		}
		if len(revs) == 0 {
			return RepositoryPage{}, fmt.Errorf("%w: repository %s", ErrNotFound, name)
		}
	}
	page := RepositoryPage{Repository: Repository{Name: name, Upstream: s.upstreamOf(name)}, TagList: []Tag{}}
	all := map[digest.Digest]int64{}
	// The referrers of manifests whose facts the summary lacks: from the
	// referrers index, read once if needed.
	var listed map[digest.Digest][]digest.Digest
	for tag, st := range summary.Tags {
		f, err := s.summaryFacts(ctx, name, summary, st.Digest)
		if errors.Is(err, ErrNotFound) {
			continue // a tag whose manifest is gone: nothing to show
		}
		if err != nil {
			return RepositoryPage{}, err
		}
		t := Tag{Name: tag, Digest: st.Digest, MediaType: f.MediaType, Platforms: f.Platforms,
			Bytes: f.Bytes(), Created: f.Created, Pushed: st.Pushed}
		if _, inSummary := summary.Manifests[st.Digest]; inSummary {
			for _, typ := range f.Referrers {
				if t.Referrers == nil {
					t.Referrers = map[string]int{}
				}
				t.Referrers[typ]++
			}
		} else {
			if listed == nil {
				if listed, err = s.referrerLists(ctx, name); err != nil {
					return RepositoryPage{}, err
				}
			}
			for _, r := range listed[st.Digest] {
				rf, err := s.manifestFacts(ctx, name, r)
				if err != nil {
					continue // listed but gone meanwhile
				}
				if t.Referrers == nil {
					t.Referrers = map[string]int{}
				}
				t.Referrers[rf.ArtifactType]++
			}
		}
		maps.Copy(all, f.Blobs)
		page.TagList = append(page.TagList, t)
		if st.Pushed.After(page.LastPush) {
			page.LastPush = st.Pushed
		}
	}
	sort.Slice(page.TagList, func(i, j int) bool { return page.TagList[i].Name < page.TagList[j].Name })
	page.Tags, page.Bytes = len(page.TagList), sum(all)
	return page, nil
}

// referrerLists returns the referrers of each subject in repo, from its
// referrers index.
func (s *StoreSource) referrerLists(ctx context.Context, repo string) (map[digest.Digest][]digest.Digest, error) {
	entries, err := s.st.ReferrerEntries(ctx, repo)
	if err != nil {
		return nil, err
	}
	out := map[digest.Digest][]digest.Digest{}
	for _, e := range entries {
		out[e.Subject] = append(out[e.Subject], e.Referrer)
	}
	return out, nil
}

// summaryCheck is how often at most a repository's summary is checked
// against its tag links after its page was shown.
const summaryCheck = 30 * time.Second

// checkLater checks name's summary against its tag links in the
// background, unless that was done less than summaryCheck ago.
func (s *StoreSource) checkLater(name string) {
	now := time.Now()
	s.mu.Lock()
	if s.checked == nil {
		s.checked = map[string]time.Time{}
	}
	due := now.Sub(s.checked[name]) >= summaryCheck
	if due {
		if len(s.checked) > 10_000 {
			clear(s.checked)
		}
		s.checked[name] = now
	}
	s.mu.Unlock()
	if due {
		go func() { _, _, _ = s.st.RefreshSummary(context.Background(), name) }()
	}
}

func sum(blobs map[digest.Digest]int64) (n int64) {
	for _, size := range blobs {
		n += size
	}
	return n
}

// manifestFacts returns the facts of manifest d of repo, read once (their
// referrers as they were then).
func (s *StoreSource) manifestFacts(ctx context.Context, repo string, d digest.Digest) (store.ManifestFacts, error) {
	s.mu.Lock()
	f, ok := s.facts[d]
	s.mu.Unlock()
	if ok {
		return f, nil
	}
	f, err := s.st.ManifestFacts(ctx, repo, d)
	if errors.Is(err, store.ErrManifestUnknown) {
		return f, fmt.Errorf("%w: manifest %s in %s", ErrNotFound, d, repo)
	}
	if err != nil {
		return f, err
	}
	s.mu.Lock()
	if len(s.facts) >= maxFacts {
		clear(s.facts)
	}
	s.facts[d] = f
	s.mu.Unlock()
	return f, nil
}

// manifest reads and parses manifest d of repo.
func (s *StoreSource) manifest(ctx context.Context, repo string, d digest.Digest) (store.Manifest, *manifest.Manifest, error) {
	m, err := s.st.GetManifest(ctx, repo, d)
	if errors.Is(err, store.ErrManifestUnknown) {
		return m, nil, fmt.Errorf("%w: manifest %s in %s", ErrNotFound, d, repo)
	}
	if err != nil {
		return m, nil, err
	}
	parsed, err := manifest.Parse("", m.Body)
	if err != nil {
		return m, nil, fmt.Errorf("manifest %s in %s: %w", d, repo, err)
	}
	return m, parsed, nil
}

// Image implements Source.
func (s *StoreSource) Image(ctx context.Context, name string, d digest.Digest) (Image, error) {
	m, parsed, err := s.manifest(ctx, name, d)
	if err != nil {
		return Image{}, err
	}
	f, err := s.manifestFacts(ctx, name, d)
	if err != nil {
		return Image{}, err
	}
	img := Image{Repository: name, Digest: d, MediaType: m.MediaType, Bytes: f.Bytes(), Created: f.Created}
	if len(f.Platforms) == 1 && !parsed.IsIndex() {
		img.Platform = f.Platforms[0]
	}
	infos, err := s.st.TagInfos(ctx, name)
	if err != nil && !errors.Is(err, store.ErrNameUnknown) {
		return Image{}, err
	}
	for _, ti := range infos {
		if ti.Digest == d {
			img.Tags = append(img.Tags, ti.Tag)
		}
	}
	if parsed.IsIndex() {
		for _, c := range parsed.Manifests {
			img.Children = append(img.Children, Child{Descriptor: descriptor(c), Platform: manifest.PlatformString(c.Platform)})
		}
	} else {
		for _, l := range parsed.Layers {
			img.Layers = append(img.Layers, descriptor(l))
		}
		cfg, err := s.st.ImageConfig(ctx, name, parsed)
		if err != nil {
			return Image{}, err
		}
		if cfg != nil {
			img.Config = imageConfig(cfg.Config)
			img.History = history(cfg.History, img.Layers)
		} else {
			img.ArtifactType = parsed.ArtifactType
		}
	}
	if img.Referrers, err = s.referrers(ctx, name, d, 0); err != nil {
		return Image{}, err
	}
	return img, nil
}

// referrers returns the referrer tree of d in repo.
func (s *StoreSource) referrers(ctx context.Context, repo string, d digest.Digest, depth int) ([]Referrer, error) {
	if depth >= maxReferrerDepth {
		return nil, nil
	}
	descs, err := s.st.Referrers(ctx, repo, d, "")
	if err != nil {
		return nil, err
	}
	var out []Referrer
	for _, desc := range descs {
		children, err := s.referrers(ctx, repo, desc.Digest, depth+1)
		if err != nil {
			return nil, err
		}
		out = append(out, Referrer{Descriptor: descriptor(desc), ArtifactType: desc.ArtifactType, Referrers: children})
	}
	return out, nil
}

func descriptor(d v1.Descriptor) Descriptor {
	return Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size}
}

// imageConfig is the part of a config the image page shows.
func imageConfig(c v1.ImageConfig) *ImageConfig {
	out := &ImageConfig{Entrypoint: c.Entrypoint, Cmd: c.Cmd, Env: c.Env, User: c.User, WorkingDir: c.WorkingDir, Labels: c.Labels}
	for p := range c.ExposedPorts {
		out.ExposedPorts = append(out.ExposedPorts, p)
	}
	for v := range c.Volumes {
		out.Volumes = append(out.Volumes, v)
	}
	slices.Sort(out.ExposedPorts)
	slices.Sort(out.Volumes)
	return out
}

// history pairs the config's history with the layers: each step that is
// not an empty layer made the next layer.
func history(h []v1.History, layers []Descriptor) []HistoryEntry {
	out := make([]HistoryEntry, 0, len(h))
	next := 0
	for _, e := range h {
		he := HistoryEntry{CreatedBy: e.CreatedBy, Comment: e.Comment, EmptyLayer: e.EmptyLayer}
		if e.Created != nil {
			he.Created = *e.Created
		}
		if !e.EmptyLayer && next < len(layers) {
			l := layers[next]
			he.Layer = &l
			next++
		}
		out = append(out, he)
	}
	return out
}

// DeleteTag implements Source.
func (s *StoreSource) DeleteTag(ctx context.Context, name, tag string) error {
	err := s.st.DeleteTag(ctx, name, tag)
	if errors.Is(err, store.ErrManifestUnknown) || errors.Is(err, store.ErrNameUnknown) {
		return fmt.Errorf("%w: tag %s of %s", ErrNotFound, tag, name)
	}
	return err
}

// DeleteManifest implements Source.
func (s *StoreSource) DeleteManifest(ctx context.Context, name string, d digest.Digest) ([]string, error) {
	infos, err := s.st.TagInfos(ctx, name)
	if err != nil && !errors.Is(err, store.ErrNameUnknown) {
		return nil, err
	}
	var tags []string
	for _, ti := range infos {
		if ti.Digest == d {
			tags = append(tags, ti.Tag)
		}
	}
	err = s.st.DeleteManifest(ctx, name, d)
	if errors.Is(err, store.ErrManifestUnknown) || errors.Is(err, store.ErrNameUnknown) {
		return nil, fmt.Errorf("%w: manifest %s of %s", ErrNotFound, d, name)
	}
	if err != nil {
		return nil, err
	}
	return tags, nil
}

// Check that StoreSource is a Source.
var _ Source = (*StoreSource)(nil)

package ui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

// maxConfigSize bounds the image config read for a page.
const maxConfigSize = 4 << 20

// maxReferrerDepth bounds the referrer tree of the image page.
const maxReferrerDepth = 4

// StoreSource is the Source over a registry's store. Facts about a
// manifest (its size, platforms, created time), which never change, are
// kept in memory once read; tags and referrers are read on every call.
type StoreSource struct {
	st *store.Store
	// upstream names the upstream of a cached repository, "" for a local
	// one; nil: every repository is local.
	upstream func(repo string) string

	usage  *gc.UsageReporter // nil: no storage page (see WithStorage)
	nextGC func() time.Time

	mu      sync.Mutex
	facts   map[digest.Digest]manifestFacts // bounded by maxFacts
	checked map[string]time.Time            // when checkLater last checked each repository
}

// maxFacts bounds the manifests whose facts a StoreSource keeps.
const maxFacts = 100_000

// manifestFacts is what the pages show of a manifest that never changes.
type manifestFacts struct {
	mediaType    string
	artifactType string
	platforms    []string
	blobs        map[digest.Digest]int64 // every blob the manifest needs, itself included
	created      time.Time
}

// NewStoreSource returns the Source over st; upstream (may be nil) names
// the upstream a cached repository is filled from.
func NewStoreSource(st *store.Store, upstream func(repo string) string) *StoreSource {
	return &StoreSource{st: st, upstream: upstream, facts: map[digest.Digest]manifestFacts{}}
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
		f, err := s.manifestFacts(ctx, name, tg.Digest)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return Repository{}, err
		}
		r.Tags++
		maps.Copy(all, f.blobs)
		if tg.Pushed.After(r.LastPush) {
			r.LastPush = tg.Pushed
		}
	}
	r.Bytes = sum(all)
	return r, nil
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
	entries, err := s.st.ReferrerEntries(ctx, name)
	if err != nil {
		return RepositoryPage{}, err
	}
	referrers := map[digest.Digest][]digest.Digest{}
	for _, e := range entries {
		referrers[e.Subject] = append(referrers[e.Subject], e.Referrer)
	}
	page := RepositoryPage{Repository: Repository{Name: name, Upstream: s.upstreamOf(name)}, TagList: []Tag{}}
	all := map[digest.Digest]int64{}
	for tag, st := range summary.Tags {
		f, err := s.manifestFacts(ctx, name, st.Digest)
		if errors.Is(err, ErrNotFound) {
			continue // a tag whose manifest is gone: nothing to show
		}
		if err != nil {
			return RepositoryPage{}, err
		}
		t := Tag{Name: tag, Digest: st.Digest, MediaType: f.mediaType, Platforms: f.platforms,
			Bytes: sum(f.blobs), Created: f.created, Pushed: st.Pushed}
		for _, r := range referrers[st.Digest] {
			rf, err := s.manifestFacts(ctx, name, r)
			if err != nil {
				continue // listed but gone meanwhile
			}
			if t.Referrers == nil {
				t.Referrers = map[string]int{}
			}
			t.Referrers[rf.artifactType]++
		}
		maps.Copy(all, f.blobs)
		page.TagList = append(page.TagList, t)
		if st.Pushed.After(page.LastPush) {
			page.LastPush = st.Pushed
		}
	}
	sort.Slice(page.TagList, func(i, j int) bool { return page.TagList[i].Name < page.TagList[j].Name })
	page.Tags, page.Bytes = len(page.TagList), sum(all)
	return page, nil
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

// manifestFacts returns the facts of manifest d of repo, read once.
func (s *StoreSource) manifestFacts(ctx context.Context, repo string, d digest.Digest) (manifestFacts, error) {
	s.mu.Lock()
	f, ok := s.facts[d]
	s.mu.Unlock()
	if ok {
		return f, nil
	}
	f, err := s.readFacts(ctx, repo, d, 0)
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

func (s *StoreSource) readFacts(ctx context.Context, repo string, d digest.Digest, depth int) (manifestFacts, error) {
	m, parsed, err := s.manifest(ctx, repo, d)
	if err != nil {
		return manifestFacts{}, err
	}
	f := manifestFacts{mediaType: m.MediaType, artifactType: parsed.ArtifactType,
		blobs: map[digest.Digest]int64{d: int64(len(m.Body))}}
	if parsed.IsIndex() {
		for _, c := range parsed.Manifests {
			if p := platformString(c.Platform); p != "" && !slices.Contains(f.platforms, p) {
				f.platforms = append(f.platforms, p)
			}
			if depth >= 2 {
				continue
			}
			cf, err := s.readFacts(ctx, repo, c.Digest, depth+1)
			if err != nil {
				// A sparse index: the child is not here; count its size
				// as the index says.
				f.blobs[c.Digest] = c.Size
				continue
			}
			for b, n := range cf.blobs {
				f.blobs[b] = n
			}
			if cf.created.After(f.created) {
				f.created = cf.created
			}
		}
		return f, nil
	}
	if parsed.Config != nil {
		f.blobs[parsed.Config.Digest] = parsed.Config.Size
	}
	for _, l := range parsed.Layers {
		f.blobs[l.Digest] = l.Size
	}
	if cfg, err := s.config(ctx, repo, parsed); err == nil && cfg != nil {
		if cfg.Created != nil {
			f.created = *cfg.Created
		}
		if p := platformString(&cfg.Platform); p != "" {
			f.platforms = []string{p}
		}
	}
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

// config reads the image config of an image manifest whose config is one
// (nil for an artifact's config or one not stored).
func (s *StoreSource) config(ctx context.Context, repo string, m *manifest.Manifest) (*v1.Image, error) {
	c := m.Config
	if c == nil || (c.MediaType != v1.MediaTypeImageConfig && c.MediaType != "application/vnd.docker.container.image.v1+json") ||
		c.Size > maxConfigSize {
		return nil, nil
	}
	r, _, err := s.st.OpenBlob(ctx, repo, c.Digest, 0)
	if err != nil {
		if errors.Is(err, store.ErrBlobUnknown) {
			return nil, nil
		}
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, maxConfigSize))
	if err != nil {
		return nil, err
	}
	var img v1.Image
	if err := json.Unmarshal(b, &img); err != nil {
		return nil, nil // not an image config after all: nothing to show
	}
	return &img, nil
}

func platformString(p *v1.Platform) string {
	if p == nil || p.OS == "" || p.Architecture == "" {
		return ""
	}
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
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
	img := Image{Repository: name, Digest: d, MediaType: m.MediaType, Bytes: sum(f.blobs), Created: f.created}
	if len(f.platforms) == 1 && !parsed.IsIndex() {
		img.Platform = f.platforms[0]
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
			img.Children = append(img.Children, Child{Descriptor: descriptor(c), Platform: platformString(c.Platform)})
		}
	} else {
		for _, l := range parsed.Layers {
			img.Layers = append(img.Layers, descriptor(l))
		}
		cfg, err := s.config(ctx, name, parsed)
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

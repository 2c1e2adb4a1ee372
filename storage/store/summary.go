package store

import (
	"context"
	"encoding/json"
	"errors"
	"hash/fnv"
	"maps"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/manifest"
	"github.com/berth-registry/berth/storage"
)

// Summary is what a repository's tags point at, kept at write time so that
// a listing of many repositories (the web UI's) reads one small file per
// repository rather than every tag link. It is derived data: when two
// processes change the same repository's tags at the same moment, one
// change can be missing from it until RefreshSummary rebuilds it from the
// tag links (the repository's own page does, and garbage collection
// writes a missing one).
type Summary struct {
	Tags map[string]SummaryTag `json:"tags"`
	// Manifests are the facts of the manifests the tags point at. One
	// may be missing (a summary written before they were kept, or one
	// whose facts could not be read): a reader reads it itself then.
	Manifests map[digest.Digest]ManifestFacts `json:"manifests,omitempty"`
}

// SummaryTag is one tag of a Summary.
type SummaryTag struct {
	Digest digest.Digest `json:"digest"`
	// Pushed is when the tag was last written (the link's modification
	// time, or this host's clock when the store wrote it), to the second,
	// the resolution every backend keeps.
	Pushed time.Time `json:"pushed"`
}

// summaryLocks serialise the summary updates of a repository in this
// process.
type summaryLocks [64]sync.Mutex

func (l *summaryLocks) of(repo string) *sync.Mutex {
	h := fnv.New32a()
	h.Write([]byte(repo))
	return &l[h.Sum32()%uint32(len(l))]
}

// ReadSummary returns repo's summary; ok is false when none is stored.
// Where the driver versions files (storage.Versioner), a summary read
// before is checked by its version (one stat) instead of read again; the
// returned Summary may then be shared and must not be modified.
func (s *Store) ReadSummary(ctx context.Context, repo string) (sum Summary, ok bool, err error) {
	p := summaryPath(repo)
	var b []byte
	var version storage.Version
	if vr, isV := s.driver.(storage.Versioner); isV {
		v, verr := vr.Version(ctx, p)
		if verr == nil {
			if c, hit := s.summaries.Load(p); hit && c.(cachedSummary).version == v {
				return c.(cachedSummary).sum, true, nil
			}
			b, version, err = vr.ReadVersion(ctx, p)
		} else {
			err = verr
		}
		if errors.Is(err, storage.ErrUnsupported) {
			b, err = storage.ReadAll(ctx, s.driver, p)
		}
	} else {
		b, err = storage.ReadAll(ctx, s.driver, p)
	}
	if errors.Is(err, storage.ErrNotFound) {
		s.summaries.Delete(p)
		return Summary{}, false, nil
	}
	if err != nil {
		return Summary{}, false, err
	}
	if err := json.Unmarshal(b, &sum); err != nil || sum.Tags == nil {
		return Summary{}, false, nil // unreadable: as if missing
	}
	if version != (storage.Version{}) {
		s.summaries.Store(p, cachedSummary{version: version, sum: sum})
	}
	return sum, true, nil
}

// cachedSummary is a summary as read, with the version of its file.
type cachedSummary struct {
	version storage.Version
	sum     Summary
}

// RefreshSummary rebuilds repo's summary from its tag links and its
// referrers index (the facts of a manifest the stored summary holds are
// kept, those of others read), stores it if it differs from the stored
// one, and returns it with the tags' infos.
func (s *Store) RefreshSummary(ctx context.Context, repo string) (Summary, []TagInfo, error) {
	mu := s.summaryLocks.of(repo)
	mu.Lock()
	defer mu.Unlock()
	infos, err := s.TagInfos(ctx, repo)
	if err != nil {
		return Summary{}, nil, err
	}
	old, ok, err := s.ReadSummary(ctx, repo)
	if err != nil {
		return Summary{}, nil, err
	}
	sum, err := s.summaryOf(ctx, repo, infos, old.Manifests)
	if err != nil {
		return Summary{}, nil, err
	}
	if !ok || !sameSummary(old, sum) {
		if err := s.writeSummary(ctx, repo, sum); err != nil {
			return Summary{}, nil, err
		}
	}
	return sum, infos, nil
}

// summaryOf is the summary of repo whose tags are infos: the facts of a
// manifest in known are taken from there (their referrers checked against
// the referrers index), others read.
func (s *Store) summaryOf(ctx context.Context, repo string, infos []TagInfo, known map[digest.Digest]ManifestFacts) (Summary, error) {
	sum := Summary{Tags: make(map[string]SummaryTag, len(infos)), Manifests: map[digest.Digest]ManifestFacts{}}
	for _, ti := range infos {
		if ti.Digest != "" {
			sum.Tags[ti.Tag] = SummaryTag{Digest: ti.Digest, Pushed: ti.ModTime.UTC().Truncate(time.Second)}
			sum.Manifests[ti.Digest] = ManifestFacts{}
		}
	}
	entries, err := s.ReferrerEntries(ctx, repo)
	if err != nil {
		return Summary{}, err
	}
	referrers := map[digest.Digest][]digest.Digest{}
	for _, e := range entries {
		referrers[e.Subject] = append(referrers[e.Subject], e.Referrer)
	}
	for d := range sum.Manifests {
		f, ok := known[d]
		if !ok {
			if f, err = s.ManifestFacts(ctx, repo, d); err != nil {
				if errors.Is(err, ErrManifestUnknown) {
					delete(sum.Manifests, d) // a tag whose manifest is gone
					continue
				}
				return Summary{}, err
			}
		} else if !sameReferrers(f.Referrers, referrers[d]) {
			f.Referrers, err = s.referrerTypes(ctx, repo, d)
			if err != nil {
				return Summary{}, err
			}
		}
		sum.Manifests[d] = f
	}
	return sum, nil
}

// sameReferrers reports whether the referrers in have are exactly listed.
func sameReferrers(have map[digest.Digest]string, listed []digest.Digest) bool {
	if len(have) != len(listed) {
		return false
	}
	for _, d := range listed {
		if _, ok := have[d]; !ok {
			return false
		}
	}
	return true
}

// sameSummary reports whether a and b name the same digests for the same
// tags (push times within a second count as the same: one store wrote its
// own clock, the other read the storage's) and hold facts of the same
// manifests with the same referrers.
func sameSummary(a, b Summary) bool {
	return maps.EqualFunc(a.Tags, b.Tags, func(x, y SummaryTag) bool {
		d := x.Pushed.Sub(y.Pushed)
		return x.Digest == y.Digest && d < time.Second && d > -time.Second
	}) && maps.EqualFunc(a.Manifests, b.Manifests, func(x, y ManifestFacts) bool {
		return maps.Equal(x.Referrers, y.Referrers)
	})
}

func (s *Store) writeSummary(ctx context.Context, repo string, sum Summary) error {
	b, err := json.Marshal(sum)
	if err != nil {
		return err
	}
	return storage.WriteAll(ctx, s.driver, summaryPath(repo), b)
}

// updateSummary applies change to repo's summary (rebuilt from the tag
// links when missing), drops the facts of manifests no tag points at any
// more, and stores it. A failure is logged, not returned: the change it
// follows has happened, and the summary is derived data.
func (s *Store) updateSummary(ctx context.Context, repo string, change func(*Summary) error) {
	ctx = context.WithoutCancel(ctx)
	mu := s.summaryLocks.of(repo)
	mu.Lock()
	defer mu.Unlock()
	sum, ok, err := s.ReadSummary(ctx, repo)
	if err == nil && !ok {
		var infos []TagInfo
		if infos, err = s.TagInfos(ctx, repo); err == nil {
			sum, err = s.summaryOf(ctx, repo, infos, nil) // holds the change already
		}
	} else if err == nil {
		// The read one may be shared.
		sum.Tags, sum.Manifests = maps.Clone(sum.Tags), maps.Clone(sum.Manifests)
		if sum.Manifests == nil {
			sum.Manifests = map[digest.Digest]ManifestFacts{}
		}
		err = change(&sum)
	}
	if err == nil {
		tagged := map[digest.Digest]bool{}
		for _, tg := range sum.Tags {
			tagged[tg.Digest] = true
		}
		maps.DeleteFunc(sum.Manifests, func(d digest.Digest, _ ManifestFacts) bool { return !tagged[d] })
		err = s.writeSummary(ctx, repo, sum)
	}
	if err != nil {
		s.log.Warn("updating a repository's summary (rebuilt by its page or the next gc)", "repository", repo, "error", err)
	}
}

// summaryTagged records that tags of repo now point at d, parsed as m
// (nil: read it when its facts are needed), size bytes long.
func (s *Store) summaryTagged(ctx context.Context, repo string, tags []string, d digest.Digest, m *manifest.Manifest, size int) {
	if len(tags) == 0 {
		return
	}
	now := time.Now().UTC().Truncate(time.Second)
	s.updateSummary(ctx, repo, func(sum *Summary) error {
		for _, t := range tags {
			sum.Tags[t] = SummaryTag{Digest: d, Pushed: now}
		}
		if _, ok := sum.Manifests[d]; ok {
			return nil
		}
		var f ManifestFacts
		var err error
		if m != nil {
			if f, err = s.factsOf(ctx, repo, d, m, size, 0); err == nil {
				f.Referrers, err = s.referrerTypes(ctx, repo, d)
			}
		} else {
			f, err = s.ManifestFacts(ctx, repo, d)
		}
		if err != nil {
			// The tags are recorded; the facts are read by the page.
			s.log.Warn("reading a manifest's facts for its repository's summary", "repository", repo, "digest", d, "error", err)
			return nil
		}
		sum.Manifests[d] = f
		return nil
	})
}

// summaryUntagged records that tags of repo are gone.
func (s *Store) summaryUntagged(ctx context.Context, repo string, tags ...string) {
	if len(tags) == 0 {
		return
	}
	s.updateSummary(ctx, repo, func(sum *Summary) error {
		for _, t := range tags {
			delete(sum.Tags, t)
		}
		return nil
	})
}

// summaryReferred records that referrer (of artifactType) now refers to
// subject in repo, or with gone that it does not any more. Only a summary
// that holds subject's facts changes; none is made or rebuilt for it.
func (s *Store) summaryReferred(ctx context.Context, repo string, subject, referrer digest.Digest, artifactType string, gone bool) {
	sum, ok, err := s.ReadSummary(ctx, repo)
	if err != nil || !ok {
		return
	}
	if _, held := sum.Manifests[subject]; !held {
		return
	}
	s.updateSummary(ctx, repo, func(sum *Summary) error {
		f, ok := sum.Manifests[subject]
		if !ok {
			return nil
		}
		f.Referrers = maps.Clone(f.Referrers)
		if gone {
			delete(f.Referrers, referrer)
		} else {
			if f.Referrers == nil {
				f.Referrers = map[digest.Digest]string{}
			}
			f.Referrers[referrer] = artifactType
		}
		sum.Manifests[subject] = f
		return nil
	})
}

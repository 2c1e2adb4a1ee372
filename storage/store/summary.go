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

// RefreshSummary rebuilds repo's summary from its tag links, stores it if
// it differs from the stored one, and returns it with the tags' infos.
func (s *Store) RefreshSummary(ctx context.Context, repo string) (Summary, []TagInfo, error) {
	mu := s.summaryLocks.of(repo)
	mu.Lock()
	defer mu.Unlock()
	infos, err := s.TagInfos(ctx, repo)
	if err != nil {
		return Summary{}, nil, err
	}
	sum := summaryOf(infos)
	old, ok, err := s.ReadSummary(ctx, repo)
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

func summaryOf(infos []TagInfo) Summary {
	sum := Summary{Tags: make(map[string]SummaryTag, len(infos))}
	for _, ti := range infos {
		if ti.Digest != "" {
			sum.Tags[ti.Tag] = SummaryTag{Digest: ti.Digest, Pushed: ti.ModTime.UTC().Truncate(time.Second)}
		}
	}
	return sum
}

// sameSummary reports whether a and b name the same digests for the same
// tags (push times within a second count as the same: one store wrote its
// own clock, the other read the storage's).
func sameSummary(a, b Summary) bool {
	return maps.EqualFunc(a.Tags, b.Tags, func(x, y SummaryTag) bool {
		d := x.Pushed.Sub(y.Pushed)
		return x.Digest == y.Digest && d < time.Second && d > -time.Second
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
// links when missing) and stores it. A failure is logged, not returned:
// the tag change it follows has happened, and the summary is derived data.
func (s *Store) updateSummary(ctx context.Context, repo string, change func(*Summary)) {
	ctx = context.WithoutCancel(ctx)
	mu := s.summaryLocks.of(repo)
	mu.Lock()
	defer mu.Unlock()
	sum, ok, err := s.ReadSummary(ctx, repo)
	if err == nil && !ok {
		var infos []TagInfo
		if infos, err = s.TagInfos(ctx, repo); err == nil {
			sum = summaryOf(infos) // holds the change already
		}
	} else if err == nil {
		sum.Tags = maps.Clone(sum.Tags) // the read one may be shared
		change(&sum)
	}
	if err == nil {
		err = s.writeSummary(ctx, repo, sum)
	}
	if err != nil {
		s.log.Warn("updating a repository's summary (rebuilt by its page or the next gc)", "repository", repo, "error", err)
	}
}

// summaryTagged records that tags of repo now point at d.
func (s *Store) summaryTagged(ctx context.Context, repo string, tags []string, d digest.Digest) {
	if len(tags) == 0 {
		return
	}
	now := time.Now().UTC().Truncate(time.Second)
	s.updateSummary(ctx, repo, func(sum *Summary) {
		for _, t := range tags {
			sum.Tags[t] = SummaryTag{Digest: d, Pushed: now}
		}
	})
}

// summaryUntagged records that tags of repo are gone.
func (s *Store) summaryUntagged(ctx context.Context, repo string, tags ...string) {
	if len(tags) == 0 {
		return
	}
	s.updateSummary(ctx, repo, func(sum *Summary) {
		for _, t := range tags {
			delete(sum.Tags, t)
		}
	})
}

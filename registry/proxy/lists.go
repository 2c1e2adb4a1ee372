package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/manifest"
	"github.com/berth-registry/berth/runner/pull"
	"github.com/berth-registry/berth/storage/store"
)

// Bounds of what is read of an upstream's lists.
const (
	maxListBody      = 4 << 20 // one page of tags, or one referrers index
	maxTagPages      = 100
	maxReferrerFetch = 100 // referrer manifests cached per referrers request
)

// Tags returns the tags of the cached repository t as the upstream lists
// them now, sorted; when the upstream cannot answer (unreachable, 5xx,
// 429), the tags cached so far, with a Stale result.
func (c *Cache) Tags(ctx context.Context, t *Target) ([]string, Result, error) {
	tags, err := c.upstreamTags(ctx, t)
	if err == nil {
		return tags, Miss, nil
	}
	c.metrics.failed(t.up.Name)
	if !canServeStale(err) {
		return nil, "", err
	}
	local, lerr := c.store.Tags(ctx, t.Repo)
	if lerr != nil {
		return nil, "", err // nothing cached either: the upstream's error says more
	}
	return local, Stale, nil
}

func (c *Cache) upstreamTags(ctx context.Context, t *Target) ([]string, error) {
	what := "the tags of " + t.Remote
	var all []string
	next := "/v2/" + t.Remote + "/tags/list"
	for page := 0; next != "" && page < maxTagPages; page++ {
		resp, err := t.up.client.Do(ctx, t.up.host, pull.Request{
			Method: http.MethodGet, URL: next, Scopes: []string{pullScope(t.Remote)},
		})
		if err != nil {
			return nil, t.up.upstreamError(err, store.ErrNameUnknown, what)
		}
		if resp.StatusCode != http.StatusOK {
			return nil, t.up.responseError(resp, store.ErrNameUnknown, what)
		}
		var body struct {
			Tags []string `json:"tags"`
		}
		err = json.NewDecoder(io.LimitReader(resp.Body, maxListBody)).Decode(&body)
		link := resp.Header.Get("Link")
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("%w: upstream %s sent an invalid tag list for %s: %v", ErrUpstreamUnavailable, t.up.Name, t.Remote, err)
		}
		for _, tag := range body.Tags {
			if manifest.ValidateTag(tag) == nil {
				all = append(all, tag)
			}
		}
		next = nextLink(link)
	}
	slices.Sort(all)
	return slices.Compact(all), nil
}

// nextLink returns the target of a Link header's rel="next" entry, "" if
// none: <url>; rel="next".
func nextLink(h string) string {
	for _, part := range strings.Split(h, ",") {
		target, params, ok := strings.Cut(strings.TrimSpace(part), ";")
		if !ok || !strings.Contains(strings.ReplaceAll(params, " ", ""), `rel="next"`) {
			continue
		}
		target = strings.TrimSpace(target)
		if strings.HasPrefix(target, "<") && strings.HasSuffix(target, ">") {
			return target[1 : len(target)-1]
		}
	}
	return ""
}

// maxPrefetch bounds the referrer fetches a Cache runs in the background
// at once; a manifest fetched while they are all busy gets none (its
// referrers are still fetched when a client asks the referrers API).
const maxPrefetch = 4

// prefetchReferrers fetches, in the background, the referrers the
// upstream lists for manifest d of t and caches their manifests, so that
// signatures and SBOMs of what was pulled through the cache are there
// (cosign verify) even once the upstream is down. An upstream without the
// referrers API is asked once.
func (c *Cache) prefetchReferrers(ctx context.Context, t *Target, d digest.Digest) {
	if t.up.noReferrers.Load() {
		return
	}
	select {
	case c.prefetch <- struct{}{}:
	default:
		return
	}
	go func() {
		defer func() { <-c.prefetch }()
		ctx, cancel := t.up.shared(ctx)
		defer cancel()
		if _, err := c.upstreamReferrers(ctx, t, d, ""); errors.Is(err, store.ErrManifestUnknown) {
			t.up.noReferrers.Store(true)
		} else if err != nil {
			c.log.Debug("could not fetch the referrers of a cached manifest", "upstream", t.up.Name,
				"repository", t.Repo, "digest", d, "error", err)
		}
	}()
}

// Referrers returns the referrers of manifest d of the cached repository t
// (filtered by artifactType, if set) as the upstream's referrers API lists
// them, and caches the referrer manifests it lists, so that a client (cosign
// verify) then fetches them from the cache. When the upstream has no
// referrers API (404) or cannot answer, the referrers cached so far are
// listed (with a Stale result for a failure).
func (c *Cache) Referrers(ctx context.Context, t *Target, d digest.Digest, artifactType string) ([]v1.Descriptor, Result, error) {
	descs, err := c.upstreamReferrers(ctx, t, d, artifactType)
	if err == nil {
		return descs, Miss, nil
	}
	result := Hit
	if errors.Is(err, store.ErrManifestUnknown) {
		t.up.noReferrers.Store(true)
	} else {
		c.metrics.failed(t.up.Name)
		if !canServeStale(err) {
			return nil, "", err
		}
		result = Stale
	}
	local, lerr := c.store.Referrers(ctx, t.Repo, d, artifactType)
	if lerr != nil {
		return nil, "", lerr
	}
	return local, result, nil
}

func (c *Cache) upstreamReferrers(ctx context.Context, t *Target, d digest.Digest, artifactType string) ([]v1.Descriptor, error) {
	what := "the referrers of " + d.String() + " in " + t.Remote
	u := "/v2/" + t.Remote + "/referrers/" + d.String()
	if artifactType != "" {
		u += "?artifactType=" + url.QueryEscape(artifactType)
	}
	resp, err := t.up.client.Do(ctx, t.up.host, pull.Request{
		Method: http.MethodGet, URL: u, Scopes: []string{pullScope(t.Remote)},
		Header: http.Header{"Accept": {manifest.MediaTypeOCIIndex}},
	})
	if err != nil {
		return nil, t.up.upstreamError(err, store.ErrManifestUnknown, what)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, t.up.responseError(resp, store.ErrManifestUnknown, what)
	}
	var index v1.Index
	err = json.NewDecoder(io.LimitReader(resp.Body, maxListBody)).Decode(&index)
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("%w: upstream %s sent an invalid referrers index for %s: %v", ErrUpstreamUnavailable, t.up.Name, d, err)
	}
	out := index.Manifests[:0:0]
	for i, desc := range index.Manifests {
		if desc.Digest.Validate() != nil {
			continue
		}
		if i < maxReferrerFetch {
			if _, err := c.manifestByDigest(ctx, t, desc.Digest); err != nil {
				c.log.Warn("could not cache a referrer the upstream lists", "upstream", t.up.Name,
					"repository", t.Repo, "subject", d, "referrer", desc.Digest, "error", err)
			}
		}
		out = append(out, desc)
	}
	if artifactType != "" {
		out = slices.DeleteFunc(out, func(desc v1.Descriptor) bool { return desc.ArtifactType != artifactType })
	}
	return out, nil
}

package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/manifest"
	"github.com/berth-registry/berth/runner/pull"
	"github.com/berth-registry/berth/storage/store"
)

// manifestAccept is the Accept header of upstream manifest requests: every
// manifest type the store keeps.
var manifestAccept = strings.Join([]string{
	manifest.MediaTypeOCIIndex, manifest.MediaTypeOCIManifest,
	manifest.MediaTypeDockerManifestList, manifest.MediaTypeDockerManifest,
}, ", ")

// Served is a manifest the cache answers with, and how.
type Served struct {
	store.Manifest
	Result Result
	// Warning, for a Stale result, says why the upstream was not asked or
	// failed; the registry sends it in a Warning header.
	Warning string
}

// Manifest returns manifest reference (a tag or a digest, as validated by
// the caller) of the cached repository t: from the cache when it holds it
// (a tag only while fresh, or confirmed by a HEAD), else from the upstream,
// stored before it is returned. When the upstream fails, a cached tag is
// served stale; content never cached fails with the upstream's error.
func (c *Cache) Manifest(ctx context.Context, t *Target, tag string, d digest.Digest) (Served, error) {
	var s Served
	var err error
	if d != "" {
		s, err = c.manifestByDigest(ctx, t, d)
	} else {
		s, err = c.manifestByTag(ctx, t, tag)
	}
	if err != nil {
		return s, err
	}
	c.metrics.result(t.up.Name, "manifest", s.Result)
	c.notePull(ctx, t, s.Digest)
	if s.Result == Stale {
		c.log.LogAttrs(ctx, slog.LevelWarn, "serving a cached tag the upstream could not confirm",
			slog.String("upstream", t.up.Name), slog.String("repository", t.Repo), slog.String("tag", tag),
			slog.String("digest", s.Digest.String()), slog.String("reason", s.Warning))
	}
	return s, nil
}

func (c *Cache) manifestByDigest(ctx context.Context, t *Target, d digest.Digest) (Served, error) {
	m, err := c.store.GetManifest(ctx, t.Repo, d)
	if err == nil {
		return Served{Manifest: m, Result: Hit}, nil
	}
	if !errors.Is(err, store.ErrManifestUnknown) {
		return Served{}, err
	}
	m, err = c.fetchManifest(ctx, t, "", d)
	if err != nil {
		return Served{}, err
	}
	return Served{Manifest: m, Result: Miss}, nil
}

func (c *Cache) manifestByTag(ctx context.Context, t *Target, tag string) (Served, error) {
	d, checked, err := c.store.TagChecked(ctx, t.Repo, tag)
	if err != nil && !errors.Is(err, store.ErrManifestUnknown) {
		return Served{}, err
	}
	if err != nil { // never cached
		m, err := c.fetchManifest(ctx, t, tag, "")
		return Served{Manifest: m, Result: Miss}, err
	}
	if age := time.Since(checked); age >= 0 && age < t.up.TagFreshness {
		if m, err := c.store.GetManifest(ctx, t.Repo, d); err == nil {
			return Served{Manifest: m, Result: Hit}, nil
		}
	}
	// Stale or its manifest gone: ask the upstream, once for all the
	// requests of this process that want it now.
	v, err, _ := c.manifests.Do("tag\x00"+t.Repo+"\x00"+tag, func() (any, error) {
		ctx, cancel := t.up.shared(ctx)
		defer cancel()
		return c.revalidate(ctx, t, tag, d)
	})
	if err == nil {
		return v.(Served), nil
	}
	if !canServeStale(err) {
		return Served{}, err
	}
	m, gerr := c.store.GetManifest(ctx, t.Repo, d)
	if gerr != nil {
		return Served{}, err
	}
	return Served{Manifest: m, Result: Stale, Warning: err.Error()}, nil
}

// revalidate asks the upstream where tag points now (HEAD): the cached d
// again is a hit (and the tag counts as checked now), anything else is
// fetched.
func (c *Cache) revalidate(ctx context.Context, t *Target, tag string, cached digest.Digest) (Served, error) {
	resp, err := t.up.client.Do(ctx, t.up.host, pull.Request{
		Method: http.MethodHead,
		URL:    "/v2/" + t.Remote + "/manifests/" + tag,
		Header: http.Header{"Accept": {manifestAccept}},
		Scopes: []string{pullScope(t.Remote)},
	})
	if err != nil {
		c.metrics.failed(t.up.Name)
		return Served{}, t.up.upstreamError(err, store.ErrManifestUnknown, "tag "+tag+" of "+t.Remote)
	}
	drain(resp)
	if resp.StatusCode != http.StatusOK {
		c.metrics.failed(t.up.Name)
		return Served{}, t.up.responseError(resp, store.ErrManifestUnknown, "tag "+tag+" of "+t.Remote)
	}
	if dcd, err := digest.Parse(resp.Header.Get("Docker-Content-Digest")); err == nil && dcd == cached {
		if m, err := c.store.GetManifest(ctx, t.Repo, cached); err == nil {
			if err := c.store.TouchTag(ctx, t.Repo, tag, cached); err != nil {
				return Served{}, err
			}
			return Served{Manifest: m, Result: Hit}, nil
		}
	}
	m, err := c.fetchManifest(ctx, t, tag, "")
	return Served{Manifest: m, Result: Miss}, err
}

// fetchManifest GETs a manifest from the upstream, by tag or by digest,
// verifies it and stores it (under tag, if set). Concurrent fetches of the
// same manifest in this process share one request.
func (c *Cache) fetchManifest(ctx context.Context, t *Target, tag string, want digest.Digest) (store.Manifest, error) {
	ref := tag
	if want != "" {
		ref = want.String()
	}
	v, err, _ := c.manifests.Do("get\x00"+t.Repo+"\x00"+ref, func() (any, error) {
		ctx, cancel := t.up.shared(ctx)
		defer cancel()
		m, err := c.getManifest(ctx, t, tag, want)
		if err != nil {
			c.metrics.failed(t.up.Name)
		} else {
			c.prefetchReferrers(ctx, t, m.Digest)
		}
		return m, err
	})
	if err != nil {
		return store.Manifest{}, err
	}
	return v.(store.Manifest), nil
}

func (c *Cache) getManifest(ctx context.Context, t *Target, tag string, want digest.Digest) (store.Manifest, error) {
	ref, what := tag, "tag "+tag+" of "+t.Remote
	if want != "" {
		ref, what = want.String(), "manifest "+want.String()+" of "+t.Remote
	}
	resp, err := t.up.client.Do(ctx, t.up.host, pull.Request{
		Method: http.MethodGet,
		URL:    "/v2/" + t.Remote + "/manifests/" + ref,
		Header: http.Header{"Accept": {manifestAccept}},
		Scopes: []string{pullScope(t.Remote)},
	})
	if err != nil {
		return store.Manifest{}, t.up.upstreamError(err, store.ErrManifestUnknown, what)
	}
	if resp.StatusCode != http.StatusOK {
		return store.Manifest{}, t.up.responseError(resp, store.ErrManifestUnknown, what)
	}
	defer resp.Body.Close()
	if resp.ContentLength > manifest.MaxSize {
		return store.Manifest{}, fmt.Errorf("%w: upstream %s sent a %d-byte manifest for %s, over the %d-byte limit",
			ErrUpstreamUnavailable, t.up.Name, resp.ContentLength, what, manifest.MaxSize)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, manifest.MaxSize+1))
	if err != nil {
		return store.Manifest{}, t.up.upstreamError(err, store.ErrManifestUnknown, what)
	}
	c.metrics.received(t.up.Name, int64(len(body)))
	if len(body) > manifest.MaxSize {
		return store.Manifest{}, fmt.Errorf("%w: upstream %s sent a manifest for %s over the %d-byte limit",
			ErrUpstreamUnavailable, t.up.Name, what, manifest.MaxSize)
	}
	// The digest: the one asked for, else the upstream's
	// Docker-Content-Digest (its algorithm too), else sha256 of the bytes;
	// the bytes must hash to it either way.
	d := want
	if d == "" {
		d = digest.SHA256.FromBytes(body)
		if h := resp.Header.Get("Docker-Content-Digest"); h != "" {
			hd, err := digest.Parse(h)
			if err != nil || !hd.Algorithm().Available() {
				return store.Manifest{}, fmt.Errorf("%w: upstream %s sent Docker-Content-Digest %q for %s",
					ErrUpstreamUnavailable, t.up.Name, clip(h), what)
			}
			d = hd
		}
	}
	if got := d.Algorithm().FromBytes(body); got != d {
		return store.Manifest{}, fmt.Errorf("%w: upstream %s sent a manifest for %s that hashes to %s, not %s; nothing was cached",
			ErrUpstreamUnavailable, t.up.Name, what, got, d)
	}
	m, err := c.store.CacheManifest(context.WithoutCancel(ctx), t.Repo, tag, d, resp.Header.Get("Content-Type"), body)
	if errors.Is(err, manifest.ErrInvalid) || errors.Is(err, manifest.ErrUnsupported) {
		return store.Manifest{}, fmt.Errorf("%w: upstream %s sent a manifest for %s that cannot be cached: %v",
			ErrUpstreamUnavailable, t.up.Name, what, err)
	}
	return m, err
}

// shared returns the context of an upstream request that several client
// requests wait for: not cancelled when the first of them goes away, but
// bounded by a few read timeouts (a manifest is small).
func (u *upstream) shared(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 3*u.ReadTimeout)
}

// pullScope is the token scope for pulling repository remote upstream.
func pullScope(remote string) string { return "repository:" + remote + ":pull" }

// drain discards a little of a response body, so that the connection can
// be reused, and closes it.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
}

// clip shortens an upstream's value for a message.
func clip(s string) string {
	if len(s) > 100 {
		return s[:100] + "..."
	}
	return s
}

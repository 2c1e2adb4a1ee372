package push

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/berth-registry/berth/manifest"
	"github.com/berth-registry/berth/runner/image"
	"github.com/berth-registry/berth/runner/pull"
)

// Defaults of Options.
const (
	// DefaultParallel is how many layers are pushed at once.
	DefaultParallel = 3
	// DefaultMonolithicMax is the largest blob sent in one PUT; larger blobs go in
	// PATCH chunks, which a broken connection does not send again from the start.
	DefaultMonolithicMax = 16 << 20
	// DefaultChunkSize is the size of one PATCH chunk.
	DefaultChunkSize = 64 << 20
	// maxMountSources bounds the repositories a mount is tried from, per blob.
	maxMountSources = 3
	// maxAttempts bounds the attempts of one upload in total, even when each makes
	// progress.
	maxAttempts = 100
)

// Options configure Push.
type Options struct {
	// Parallel is how many layers are pushed at once; 0 means DefaultParallel.
	Parallel int
	// MonolithicMax is the largest blob uploaded in one PUT; 0 means
	// DefaultMonolithicMax.
	MonolithicMax int64
	// ChunkSize is the size of the PATCH chunks of larger blobs; 0 means
	// DefaultChunkSize.
	ChunkSize int64
	// Progress receives the push's events; nil means none.
	Progress Progress
}

// Result is a pushed manifest.
type Result struct {
	// Reference is where it was pushed (the tag, or the digest for a reference
	// that named one).
	Reference pull.Reference
	// Digest, MediaType and Size describe the manifest (an index, when the image
	// is one).
	Digest    digest.Digest
	MediaType string
	Size      int64
	// Index and Platform are set when ref names a multi-platform index of
	// which the store holds one platform (a pull without --all-platforms):
	// the image of Platform was pushed, not the index Index.
	Index    digest.Digest
	Platform string
}

// Push pushes the image that ref names in store (a reference, completed with
// store.DefaultRegistry and the "latest" tag as pull.ParseReference does) to the
// registry and repository of ref, under its tag (or by digest, when ref names one):
// the blobs, then the manifest ref was stored with (image.Store.Lookup), so a
// pulled image keeps its digest; for a multi-platform index whose every platform
// is stored (image.Store.Index), each platform's blobs and manifest, then the
// index. Blobs the repository has are skipped; blobs of
// local images from other repositories of the same registry are mounted from
// there when the registry allows it; the rest are uploaded. On the first failure
// the other uploads stop and no manifest is pushed. Errors carry the registry's own
// message (pull.ResponseError) and match pull.ErrUnauthorized, pull.ErrDenied,
// image.ErrNotFound, image.ErrBlobMissing, ... with errors.Is.
func Push(ctx context.Context, store *image.Store, client *pull.Client, ref string, opts Options) (Result, error) {
	r, err := pull.ParseReference(ref, store.DefaultRegistry)
	if err != nil {
		return Result{}, err
	}
	res := Result{Reference: r}
	ix, isIndex, err := store.Index(r.String())
	if err != nil {
		return Result{}, err
	}
	var mediaType string
	if isIndex && ix.Complete {
		res.Digest, mediaType = ix.Digest, ix.MediaType
	} else {
		img, mdigest, err := store.Lookup(r.String())
		if err != nil {
			return Result{}, err
		}
		res.Digest, mediaType = mdigest, img.ManifestMediaType
		if isIndex {
			res.Index, res.Platform = ix.Digest, img.Platform.String()
		}
	}
	p, err := newPusher(store, client, r, opts)
	if err != nil {
		return Result{}, err
	}
	if res.Index != "" && r.Tag != "" && p.manifestAt(ctx, r.Tag, ix.MediaType) == ix.Digest {
		// The tag already names the whole index this image was pulled through
		// (a push back to where it came from): replacing it with one platform
		// would lose the others.
		return Result{Reference: r, Digest: ix.Digest, MediaType: ix.MediaType, Size: ix.Size}, nil
	}
	res.MediaType, res.Size, err = p.pushManifest(ctx, res.Digest, mediaType, r.Tag)
	if err != nil {
		return Result{}, fmt.Errorf("pushing %s: %w", r, err)
	}
	return res, nil
}

// Tags returns the references of the local images in the repository of ref
// (host/name, a tag or digest in it is ignored), sorted, tags only: what
// `berth push --all-tags` pushes. The error wraps image.ErrNotFound when there are
// none.
func Tags(store *image.Store, ref string) ([]string, error) {
	r, err := pull.ParseReference(ref, store.DefaultRegistry)
	if err != nil {
		return nil, err
	}
	imgs, err := store.List()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, img := range imgs {
		for _, s := range img.References {
			if o, err := pull.ParseReference(s, ""); err == nil && o.Name() == r.Name() && o.Digest == "" {
				out = append(out, o.String())
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no tag of %s", image.ErrNotFound, r.Name())
	}
	slices.Sort(out)
	return out, nil
}

// mountSources maps each blob of the local images and indexes that came from (or
// were tagged for) other repositories of ref's registry to those repositories,
// sorted.
func mountSources(store *image.Store, ref pull.Reference) (map[digest.Digest][]string, error) {
	imgs, err := store.List()
	if err != nil {
		return nil, err
	}
	out := map[digest.Digest][]string{}
	add := func(d digest.Digest, repo string) {
		if !slices.Contains(out[d], repo) {
			out[d] = append(out[d], repo)
		}
	}
	refs, err := store.ReferenceManifests()
	if err != nil {
		return nil, err
	}
	for s := range refs {
		o, err := pull.ParseReference(s, "")
		if err != nil || o.Registry != ref.Registry || o.Repository == ref.Repository {
			continue
		}
		if ix, ok, err := store.Index(s); err == nil && ok {
			for _, d := range ix.Blobs { // the other platforms' blobs
				add(d, o.Repository)
			}
		}
	}
	for _, img := range imgs {
		for _, s := range img.References {
			o, err := pull.ParseReference(s, "")
			if err != nil || o.Registry != ref.Registry || o.Repository == ref.Repository {
				continue
			}
			blobs := []digest.Digest{img.ID}
			for _, l := range img.Layers {
				blobs = append(blobs, l.Digest)
			}
			for _, d := range blobs {
				add(d, o.Repository)
			}
		}
	}
	for _, repos := range out {
		slices.Sort(repos)
	}
	return out, nil
}

// pusher is one Push.
type pusher struct {
	store    *image.Store
	client   *pull.Client
	opts     Options
	ref      pull.Reference
	progress Progress
	sources  map[digest.Digest][]string // see mountSources
}

func (p *pusher) defaults() {
	if p.opts.Parallel <= 0 {
		p.opts.Parallel = DefaultParallel
	}
	if p.opts.MonolithicMax <= 0 {
		p.opts.MonolithicMax = DefaultMonolithicMax
	}
	if p.opts.ChunkSize <= 0 {
		p.opts.ChunkSize = DefaultChunkSize
	}
	if p.progress == nil {
		p.progress = discardProgress{}
	}
}

// scope is the token scope of the target repository.
func (p *pusher) scope() string { return "repository:" + p.ref.Repository + ":pull,push" }

// repoURL is the path of the target repository's API, with what follows.
func (p *pusher) repoURL(rest string) string { return "/v2/" + p.ref.Repository + "/" + rest }

// pushManifest pushes the stored manifest d (of media type mediaType, or what its
// body says) and everything it references, then the manifest itself under tag (by
// digest when tag is ""). It returns the media type and size of the manifest.
func (p *pusher) pushManifest(ctx context.Context, d digest.Digest, mediaType, tag string) (string, int64, error) {
	body, err := p.store.ReadBlob(d)
	if err != nil {
		return "", 0, fmt.Errorf("manifest %s: %w (pull the image again)", d, err)
	}
	m, err := manifest.Parse(mediaType, body)
	if err != nil {
		return "", 0, fmt.Errorf("stored manifest %s: %w", d, err)
	}
	ref := tag
	if ref == "" {
		ref = d.String()
	}
	// A repository that holds the manifest holds everything it references: when
	// the tag names it already there is nothing to send, and when the manifest is
	// there under another tag, only the tag.
	switch {
	case p.manifestAt(ctx, ref, m.MediaType) == d:
		p.reportPresent(m)
		return m.MediaType, int64(len(body)), nil
	case ref != d.String() && p.manifestAt(ctx, d.String(), m.MediaType) == d:
		p.reportPresent(m)
	case m.IsIndex():
		// Children first: the index may only name what the repository holds.
		for _, c := range m.Manifests {
			if _, _, err := p.pushManifest(ctx, c.Digest, c.MediaType, ""); err != nil {
				return "", 0, err
			}
		}
	default:
		if err := p.pushBlobs(ctx, m); err != nil {
			return "", 0, err
		}
	}
	err = p.retry(ctx, func() error { return p.putManifest(ctx, d, m.MediaType, ref, body) })
	if err != nil {
		return "", 0, fmt.Errorf("manifest %s: %w", d, err)
	}
	return m.MediaType, int64(len(body)), nil
}

// manifestAt returns the digest of the manifest ref (a tag or digest) names in the
// target repository (HEAD), "" when there is none or the registry does not say.
func (p *pusher) manifestAt(ctx context.Context, ref, mediaType string) digest.Digest {
	resp, err := p.client.Do(ctx, p.ref.Registry, pull.Request{
		Method: http.MethodHead, URL: p.repoURL("manifests/" + ref),
		Header: http.Header{"Accept": {mediaType}}, Scopes: []string{p.scope()},
	})
	if err != nil {
		return ""
	}
	drain(resp)
	if resp.StatusCode != http.StatusOK {
		return ""
	}
	if d, err := digest.Parse(resp.Header.Get("Docker-Content-Digest")); err == nil {
		return d
	}
	if d, err := digest.Parse(ref); err == nil {
		return d // 200 for a digest: it is there
	}
	return ""
}

// reportPresent reports the layers of image manifest m as present.
func (p *pusher) reportPresent(m *manifest.Manifest) {
	refs := m.BlobReferences()
	if len(refs) == 0 {
		return // an index: its children reported theirs
	}
	layers := refs[1:]
	p.progress.Update(Event{Kind: EventImage, Layers: layers})
	for i, l := range layers {
		p.progress.Update(Event{Kind: EventLayerExists, Index: i, Layer: l, Total: l.Size})
	}
}

// putManifest sends PUT /v2/<name>/manifests/<ref> once.
func (p *pusher) putManifest(ctx context.Context, d digest.Digest, mediaType, ref string, body []byte) error {
	resp, err := p.client.Do(ctx, p.ref.Registry, pull.Request{
		Method: http.MethodPut, URL: p.repoURL("manifests/" + ref),
		Header: http.Header{"Content-Type": {mediaType}},
		Body:   bytesBody(body), ContentLength: int64(len(body)),
		Scopes: []string{p.scope()},
	})
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return pull.ErrorFromResponse(resp)
	}
	defer drain(resp)
	if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != d.String() {
		return fmt.Errorf("%w: the registry stored manifest %s as %s", pull.ErrDigestMismatch, d, got)
	}
	return nil
}

// pushBlobs pushes the config of image manifest m, then its layers, a few at a
// time; the first failure stops the others.
func (p *pusher) pushBlobs(ctx context.Context, m *manifest.Manifest) error {
	blobs := m.BlobReferences() // without foreign layers, which stay where they are
	if len(blobs) == 0 {
		return nil
	}
	// Every blob must be here before anything is sent.
	for _, b := range blobs {
		if !p.store.HasBlob(b.Digest) {
			return fmt.Errorf("%w: %s (pull the image again)", image.ErrBlobMissing, b.Digest)
		}
	}
	layers := blobs[1:]
	p.progress.Update(Event{Kind: EventImage, Layers: layers})
	if err := p.pushBlob(ctx, -1, blobs[0]); err != nil {
		return fmt.Errorf("config %s: %w", blobs[0].Digest, err)
	}

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(p.opts.Parallel, 1))
	for i := range layers {
		if gctx.Err() != nil {
			break // a layer failed: start no other
		}
		g.Go(func() error {
			if err := p.pushBlob(gctx, i, layers[i]); err != nil {
				return fmt.Errorf("layer %s: %w", layers[i].Digest, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}

// retry runs op until it succeeds, fails in a way that is not worth retrying
// (pull.Retryable), or failed as often as the client allows, waiting its backoff
// between attempts.
func (p *pusher) retry(ctx context.Context, op func() error) error {
	for n := 1; ; n++ {
		err := op()
		if err == nil || !pull.Retryable(err) || n > p.client.Retries() {
			return err
		}
		if err := sleep(ctx, p.client.Backoff(n)); err != nil {
			return err
		}
	}
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// errorOf turns a response with an unexpected status into an error, or returns
// the transport error.
func errorOf(resp *http.Response, err error) error {
	if err != nil {
		return err
	}
	return pull.ErrorFromResponse(resp)
}

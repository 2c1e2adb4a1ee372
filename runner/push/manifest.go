package push

import (
	"context"
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/runner/image"
	"github.com/berth-registry/berth/runner/pull"
)

// PushManifest pushes the manifest stored in store's blob store as d (of
// media type mediaType) and the blobs it references to the registry and
// repository of ref, under its tag (by digest when it names none), as
// Push pushes an image's: blobs the repository has are skipped, blobs of
// local images from other repositories of the registry are mounted, the
// rest uploaded, the manifest last. It pushes manifests that are no image
// of the store, such as a build cache's.
func PushManifest(ctx context.Context, store *image.Store, client *pull.Client, ref string, d digest.Digest, mediaType string, opts Options) (Result, error) {
	r, err := pull.ParseReference(ref, store.DefaultRegistry)
	if err != nil {
		return Result{}, err
	}
	p, err := newPusher(store, client, r, opts)
	if err != nil {
		return Result{}, err
	}
	mt, size, err := p.pushManifest(ctx, d, mediaType, r.Tag)
	if err != nil {
		return Result{}, fmt.Errorf("pushing %s: %w", r, err)
	}
	return Result{Reference: r, Digest: d, MediaType: mt, Size: size}, nil
}

// newPusher is a push of r's repository: the sources blobs may be mounted
// from found, the repository reported to the progress.
func newPusher(store *image.Store, client *pull.Client, r pull.Reference, opts Options) (*pusher, error) {
	p := &pusher{store: store, client: client, opts: opts, ref: r, progress: opts.Progress}
	p.defaults()
	var err error
	if p.sources, err = mountSources(store, r); err != nil {
		return nil, err
	}
	p.progress.Update(Event{Kind: EventRepository, Reference: r})
	return p, nil
}

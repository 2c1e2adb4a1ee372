package commit

import (
	"context"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/berth-registry/berth/runner/container"
	"github.com/berth-registry/berth/runner/image"
	"github.com/berth-registry/berth/runner/layers"
)

// Export writes the whole filesystem of the container c to w as a tar
// (layers.WriteTree), as `docker export` does: its image's layers with
// its writable layer over them, seen through a read-only overlay mount of
// both (layers.Store.MountView) in a private directory of the container,
// or its rootfs as it is when that is a flat copy. A running container is
// read as it runs. w is not closed. Errors wrap container.ErrNotFound,
// image.ErrNotFound, image.ErrLayerMissing or the stores' own.
func Export(ctx context.Context, images *image.Store, c *container.Container, w io.Writer) error {
	fail := func(err error) error { return fmt.Errorf("exporting container %s: %w", c.ID, err) }
	st, err := c.State()
	if err != nil {
		return fail(err)
	}
	owner, err := ownerMap(c)
	if err != nil {
		return fail(err)
	}
	opts := layers.WriteOptions{Owner: owner}
	if st.Flattened {
		_, err := layers.WriteTree(ctx, w, c.Rootfs(), opts)
		if err != nil {
			return fail(err)
		}
		return nil
	}
	img, err := images.Get(st.ImageID)
	if err != nil {
		return fail(fmt.Errorf("its image: %w", err))
	}
	release, err := images.Hold() // no Prune while its layers are mounted
	if err != nil {
		return fail(err)
	}
	defer release()
	ls := make([]layers.Layer, len(img.Layers))
	for i, l := range img.Layers {
		if ls[i], err = images.LayerStore().Get(l.DiffID); err != nil {
			return fail(fmt.Errorf("%w: layer %d (%s): %v", image.ErrLayerMissing, i, l.DiffID, err))
		}
	}
	view, err := os.MkdirTemp(c.Dir, "export-")
	if err != nil {
		return fail(err)
	}
	defer os.Remove(view)
	if err := images.LayerStore().MountView(ctx, ls, c.Upper(), view); err != nil {
		return fail(err)
	}
	defer unix.Unmount(view, unix.MNT_DETACH)
	if _, err := layers.WriteTree(ctx, w, view, opts); err != nil {
		return fail(err)
	}
	return nil
}

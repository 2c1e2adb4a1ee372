package view

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/berth-registry/berth/runner/container"
	"github.com/berth-registry/berth/runner/format"
	"github.com/berth-registry/berth/runner/image"
	"github.com/berth-registry/berth/runner/layers"
)

// Kinds of object Inspector.Inspect looks for (`inspect --type`).
const (
	KindAny       = ""
	KindContainer = "container"
	KindImage     = "image"
)

// Inspector reads the documents and rows of one state directory's stores.
type Inspector struct {
	Images     *image.Store
	Containers *container.Store
}

// Inspect returns the document (an Image or a Container) of the object
// ref names, as `docker inspect` looks it up: a container (its ID or a
// unique prefix) first, then an image (a reference or an ID, as
// image.Store.Get takes it); kind (KindContainer, KindImage) looks for one
// kind only. size fills in a container's sizes. Errors wrap ErrNotFound
// when nothing has that name.
func (in Inspector) Inspect(ctx context.Context, ref, kind string, size bool) (any, error) {
	switch kind {
	case KindAny, KindContainer, KindImage:
	default:
		return nil, fmt.Errorf("%q is not a type berth inspects (container or image)", kind)
	}
	if kind != KindImage {
		doc, err := in.Container(ctx, ref, size)
		if err == nil {
			return doc, nil
		}
		if !errors.Is(err, ErrNotFound) || kind == KindContainer {
			return nil, err
		}
	}
	return in.Image(ref)
}

// Image returns the inspect document of the image ref names. Errors wrap
// ErrNotFound when there is none.
func (in Inspector) Image(ref string) (Image, error) {
	img, err := in.Images.Get(ref)
	if errors.Is(err, image.ErrNotFound) {
		return Image{}, fmt.Errorf("%w: %s", ErrNotFound, ref)
	}
	if err != nil {
		return Image{}, err
	}
	manifests, err := in.Images.ReferenceManifests()
	if err != nil {
		return Image{}, err
	}
	size := int64(-1)
	if f, n, err := in.Images.OpenBlob(img.ManifestDigest); err == nil {
		f.Close()
		size = n
	}
	return NewImage(img, manifests, size)
}

// Container returns the inspect document of the container ref names (its
// ID or a unique prefix); size fills in SizeRw and SizeRootFs. Errors wrap
// ErrNotFound when there is none.
func (in Inspector) Container(ctx context.Context, ref string, size bool) (Container, error) {
	c, err := in.Containers.Get(ref)
	if errors.Is(err, container.ErrNotFound) {
		return Container{}, fmt.Errorf("%w: %s", ErrNotFound, ref)
	}
	if err != nil {
		return Container{}, err
	}
	st, err := c.State()
	if err != nil {
		return Container{}, err
	}
	src := ContainerSource{Container: c, State: st}
	if s, err := c.Spec(); err == nil {
		src.Spec = s
	}
	var imageSize int64
	if img, err := in.Images.Get(st.ImageID); err == nil {
		src.Image = &img.Config
		imageSize = img.Size
		for _, d := range slices.Backward(img.DiffIDs()) {
			if l, err := in.Images.LayerStore().Get(d); err == nil {
				src.LowerDirs = append(src.LowerDirs, l.Dir)
			}
		}
	}
	doc := NewContainer(src)
	if size {
		rw, err := c.WritableSize(ctx, st.Flattened)
		if err != nil {
			return Container{}, err
		}
		rootfs := rw + imageSize
		doc.SizeRw, doc.SizeRootFs = &rw, &rootfs
	}
	return doc, nil
}

// ContainerSizes returns the size of the writable layer of the container
// whose state is st and the size of its image (0 when the image is gone),
// for `ps -s`.
func (in Inspector) ContainerSizes(ctx context.Context, c *container.Container, st container.State) (writable, img int64, err error) {
	writable, err = c.WritableSize(ctx, st.Flattened)
	if err != nil {
		return 0, 0, err
	}
	if i, err := in.Images.Get(st.ImageID); err == nil {
		img = i.Size
	}
	return writable, img, nil
}

// History returns the rows of `berth history` for the image ref names.
// Errors wrap ErrNotFound when there is none, image.ErrLayerMissing when
// a layer is not in the layer store.
func (in Inspector) History(ref string, o HistoryOptions) ([]HistoryRow, error) {
	img, err := in.Images.Get(ref)
	if errors.Is(err, image.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, ref)
	}
	if err != nil {
		return nil, err
	}
	sizes := make([]int64, 0, len(img.Config.RootFS.DiffIDs))
	for i, d := range img.Config.RootFS.DiffIDs {
		l, err := in.Images.LayerStore().Get(d)
		if errors.Is(err, layers.ErrNotFound) {
			return nil, fmt.Errorf("%w: layer %d (%s) of image %s (pull it again)", image.ErrLayerMissing, i, d, img.ID)
		}
		if err != nil {
			return nil, err
		}
		sizes = append(sizes, l.Size)
	}
	return History(img, sizes, o)
}

// WriteDocuments prints inspect documents as docker does: without tmpl, one
// JSON array indented by four spaces (HTML characters not escaped); with
// it, each document through the template.
func WriteDocuments(w io.Writer, docs []any, tmpl *format.Template) error {
	if tmpl == nil {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "    ")
		return enc.Encode(docs)
	}
	for _, doc := range docs {
		if err := tmpl.Execute(w, doc); err != nil {
			return fmt.Errorf("template: %w", err)
		}
	}
	return nil
}

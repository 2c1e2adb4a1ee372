package commit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-registry/berth/runner/container"
	"github.com/berth-registry/berth/runner/image"
	"github.com/berth-registry/berth/runner/layers"
	"github.com/berth-registry/berth/runner/pull"
)

// Options are Commit's options: `berth commit`'s flags.
type Options struct {
	// Changes are Dockerfile instructions applied to the new image's
	// config (ApplyChanges).
	Changes []string
	// Message is the comment of the new history entry; Author its author
	// and the config's.
	Message, Author string
	// Pause freezes a running container while its writable layer is read
	// (container.Freeze), so that the layer is one moment of it; it is
	// thawed afterwards, whatever happens. A stopped container is read as
	// it is.
	Pause bool
	// Ref names the new image (a reference, completed as image.Store
	// completes them); "" leaves it dangling, known by its ID.
	Ref string
	// Created is the image's creation time; zero is now.
	Created time.Time
}

// Commit makes a new image of the container c: its image's layers, and its
// writable layer (the overlay upper directory, written by
// layers.WriteUpper) as one more, with the image's config changed by
// opts.Changes and a history entry saying so. A container that changed
// nothing gets no new layer, only a history entry marked empty. The
// container keeps running (frozen meanwhile with opts.Pause) or stays
// stopped; while a stopped container is read, it cannot be started.
//
// Errors wrap ErrInvalidChange, ErrUnsupported (a container whose rootfs
// is a flat copy), container.ErrNotFound, image.ErrNotFound (the
// container's image was removed), container.ErrNoCgroups (Pause on a
// container without a freezer cgroup of its own),
// layers.ErrUnsupportedTree or the stores' own errors.
func Commit(ctx context.Context, images *image.Store, c *container.Container, opts Options) (image.Image, error) {
	fail := func(err error) (image.Image, error) {
		return image.Image{}, fmt.Errorf("committing container %s: %w", c.ID, err)
	}
	st, err := c.State()
	if err != nil {
		return fail(err)
	}
	if st.Flattened {
		return fail(fmt.Errorf("%w: its rootfs is a copy of the image (overlayfs was unavailable), with no writable layer of its own", ErrUnsupported))
	}
	if err := checkRef(images, opts.Ref); err != nil {
		return image.Image{}, err
	}
	base, err := images.Get(st.ImageID)
	if err != nil {
		return fail(fmt.Errorf("its image: %w", err))
	}
	cfg, err := decodeConfig(base.RawConfig)
	if err != nil {
		return fail(err)
	}
	if err := ApplyChanges(&cfg.Config, opts.Changes); err != nil {
		return image.Image{}, err
	}
	owner, err := ownerMap(c)
	if err != nil {
		return fail(err)
	}
	created := opts.Created
	if created.IsZero() {
		created = time.Now().UTC()
	}

	release, err := images.Hold()
	if err != nil {
		return fail(err)
	}
	defer release()
	f := image.FormatOf(base)
	var add *image.Layer
	err = readUpper(c, st, opts.Pause, func() error {
		ents, err := os.ReadDir(c.Upper())
		if err != nil || len(ents) == 0 {
			return err // nothing changed: no layer
		}
		l, err := images.StoreLayer(ctx, f.Layer, func(w io.Writer) error {
			_, err := layers.WriteUpper(ctx, w, c.Upper(), layers.WriteOptions{Owner: owner})
			return err
		})
		add = &l
		return err
	})
	if err != nil {
		return fail(err)
	}

	cfg.Created, cfg.Author = &created, opts.Author
	cfg.RootFS.Type = "layers"
	if add != nil {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, add.DiffID)
	}
	cfg.History = append(cfg.History, ocispec.History{
		Created:    &created,
		CreatedBy:  strings.Join(st.Command, " "),
		Author:     opts.Author,
		Comment:    opts.Message,
		EmptyLayer: add == nil,
	})
	img, err := record(images, f, cfg, base.Layers, add, refsOf(opts.Ref))
	if err != nil {
		return fail(err)
	}
	return img, nil
}

// readUpper runs read while c's writable layer holds still: with c held
// (not running, and not startable meanwhile), or, while it runs, frozen
// when pause is set (and thawed again however read ends).
func readUpper(c *container.Container, st container.State, pause bool, read func() error) error {
	release, err := c.Hold()
	if err == nil {
		defer release()
		return read()
	}
	if !errors.Is(err, container.ErrRunning) {
		return err
	}
	if !pause {
		return read()
	}
	if st.Status != container.StatusRunning || st.Pid == 0 {
		// Held but not (yet, or any more) running: its state is on
		// its way; read its pid again.
		if st, err = c.State(); err != nil {
			return err
		}
	}
	thaw, err := container.Freeze(st.Pid)
	if err != nil {
		return fmt.Errorf("pausing it: %w", err)
	}
	err = read()
	if terr := thaw(); terr != nil && err == nil {
		err = fmt.Errorf("unpausing it: %w", terr)
	}
	return err
}

// decodeConfig decodes an image config with Docker's fields too.
func decodeConfig(raw []byte) (*dockerspec.DockerOCIImage, error) {
	var cfg dockerspec.DockerOCIImage
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("%w: its image's config: %v", image.ErrCorrupt, err)
	}
	return &cfg, nil
}

// checkRef refuses a reference Record would refuse, before anything is
// stored.
func checkRef(images *image.Store, ref string) error {
	if ref == "" {
		return nil
	}
	r, err := pull.ParseReference(ref, images.DefaultRegistry)
	if err != nil {
		return err
	}
	if r.Digest != "" {
		return fmt.Errorf("%w: %s: a new image is named by a tag, not a digest", pull.ErrInvalidReference, ref)
	}
	return nil
}

// ownerMap maps the owners in a user-namespaced container's writable
// layer (host ids) back to the container's own; nil without a user
// namespace.
func ownerMap(c *container.Container) (func(uid, gid int) (int, int), error) {
	s, err := c.Spec()
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if s.Linux == nil || (len(s.Linux.UIDMappings) == 0 && len(s.Linux.GIDMappings) == 0) {
		return nil, nil
	}
	uids, gids := s.Linux.UIDMappings, s.Linux.GIDMappings
	return func(uid, gid int) (int, int) {
		return toContainer(uids, uid), toContainer(gids, gid)
	}, nil
}

// toContainer maps a host id to the container id it stands for; an id
// outside the mappings is kept.
func toContainer(ms []specs.LinuxIDMapping, id int) int {
	for _, m := range ms {
		if uint32(id) >= m.HostID && uint64(id) < uint64(m.HostID)+uint64(m.Size) {
			return int(uint32(id) - m.HostID + m.ContainerID)
		}
	}
	return id
}

package lifecycle

import (
	"context"
	"errors"
	"fmt"

	"github.com/berth-registry/berth/runner/container"
	"github.com/berth-registry/berth/runner/containerfs"
	"github.com/berth-registry/berth/runner/image"
)

// WithRoot opens c's root for do: that of its running process
// (its mounts included), or, stopped, its rootfs mounted for the copy
// while it is held (so that it cannot start meanwhile). owner is the
// host uid and gid of the container's root.
func WithRoot(ctx context.Context, images *image.Store, c *container.Container, do func(root *containerfs.Root, owner [2]int) error) error {
	spec, err := c.Spec()
	if err != nil {
		return err
	}
	owner := [2]int{0, 0}
	if spec.Linux != nil {
		for _, m := range spec.Linux.UIDMappings {
			if m.ContainerID == 0 && m.Size > 0 {
				owner[0] = int(m.HostID)
			}
		}
		for _, m := range spec.Linux.GIDMappings {
			if m.ContainerID == 0 && m.Size > 0 {
				owner[1] = int(m.HostID)
			}
		}
	}
	release, err := c.Hold()
	if errors.Is(err, container.ErrRunning) {
		st, err := c.State()
		if err != nil {
			return err
		}
		if st.Status != container.StatusRunning || st.Pid == 0 {
			return fmt.Errorf("container %s is starting or stopping: try again", c.ID)
		}
		root, err := containerfs.OpenRoot(fmt.Sprintf("/proc/%d/root", st.Pid))
		if err != nil {
			return err
		}
		defer root.Close()
		return do(root, owner)
	}
	if err != nil {
		return err
	}
	defer release()
	st, err := c.State()
	if err != nil {
		return err
	}
	if !st.Flattened && spec.Linux != nil {
		img, err := images.Get(st.ImageID)
		if err != nil {
			return fmt.Errorf("container %s: its image: %w", c.ID, err)
		}
		c.Unmount()
		uids, gids := spec.Linux.UIDMappings, spec.Linux.GIDMappings // Linux set: spec.Generate's
		if _, err := MountRootfs(ctx, images, img, c, false, uids, gids, nil); err != nil {
			return err
		}
		defer c.Unmount()
	}
	root, err := containerfs.OpenRoot(c.Rootfs())
	if err != nil {
		return err
	}
	defer root.Close()
	return do(root, owner)
}

package container

import (
	"context"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// StartInCgroupV2 is Start with the container's cgroup made by the cgroup
// v2 implementation in the v2 hierarchy mounted at root, whatever the host
// uses for its containers: on a hybrid host, its unified hierarchy (without
// controllers, so without limits) tests the v2 way of joining a group.
func StartInCgroupV2(ctx context.Context, root string, spec *specs.Spec, stdio Stdio) (*Process, error) {
	return start(ctx, "", spec, stdio, nil, nil, func(p string, r *specs.LinuxResources) (Cgroup, error) {
		return newCgroupV2(root, p, r)
	})
}

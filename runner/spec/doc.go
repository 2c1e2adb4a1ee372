// Package spec turns an image config into the OCI runtime-spec config that
// `berth run` executes and `berth bundle` writes: Generate follows the
// image-spec "conversion to runtime-spec" rules (process args, env, cwd,
// the user resolved from the image's own /etc/passwd and /etc/group, the
// annotations) and adds Berth's defaults, which are Docker's: its 14
// default capabilities, noNewPrivileges, the usual /proc, /dev and /sys
// mounts, runc's masked and read-only paths, the default devices and
// their device-cgroup allow list, new namespaces, resource limits, and
// docker's default seccomp profile (github.com/moby/profiles/seccomp)
// with the rules that apply to the container's capabilities, this
// machine's architecture and kernel. Security changes the confinement:
// another profile or none, capabilities added or dropped, privileged.
//
// It may import the standard library, golang.org/x/sys/unix, image-spec,
// runtime-spec and moby's seccomp profiles; never the pull client, the layer store or the
// container runtime (depcheck_test.go). It reads the rootfs's /etc/passwd
// and /etc/group and, of the host, only the hostname (with NetworkHost) and
// this process's NOFILE limit and capabilities (DefaultRlimitNOFILE); what
// it returns is a plain value the caller may change.
//
// # User namespace
//
// With Options.UserNS the container gets a new user namespace whose ids
// 0..65535 map to the host's UserNSHostID..UserNSHostID+65535 (uid and gid
// alike, UserNSMappings): one fixed subordinate range, as /etc/subuid
// would give a first user. A rootfs used that way must be seen owned by
// the mapped ids (host UserNSHostID for the container's root), or the
// container's root sees its files as owned by nobody: `berth run` mounts
// the layers idmapped, and `berth bundle --userns` shifts the owners of
// its rootfs copy.
package spec

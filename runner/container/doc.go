// Package container runs an OCI runtime-spec container (a *specs.Spec whose
// Root.Path is an already assembled rootfs) the way runc does: the calling
// binary re-executes itself (/proc/self/exe) as the container's init in new
// namespaces, and the init sets up the rootfs, drops privileges and execs the
// process, which becomes PID 1 of the container. It also keeps the state of
// long-lived containers (create, start, stop, ps, rm, logs) under a state
// directory.
//
// It may import the standard library, golang.org/x/sys, golang.org/x/term,
// the runtime-spec types and runner/seccomp (whose tables are static data:
// linking it adds nothing to the init's start); never the registry, the pull client or the layer
// store (depcheck_test.go): callers mount the rootfs.
//
// # The re-exec
//
// Start runs /proc/self/exe with the argument InitArg. Linking this package
// is all a binary needs: its init function sees the argument and runs the
// container's init, which never returns, before main and before the
// packages initialized after this one (the heavier part of berth).
//
// Parent and init talk over a SOCK_SEQPACKET socketpair (fd 3 in the init):
//
//	parent                                 init (new pid, mount, uts, ipc, net[, user] ns)
//	cgroup created, limits set
//	start init (v1: with the group's ---->  blocks reading its config
//	  tasks files open at fd 4...;
//	  v2: cloned into the group, clone3
//	  CLONE_INTO_CGROUP, or moved in
//	  where clone3 is missing)
//	config (wire.go) ------------------->  v1: "0" into each tasks file (its own thread)
//	                                       unshare(CLONE_NEWCGROUP): the ns root is its cgroup
//	                                       mounts, /dev, pivot_root, masks, hostname, lo up
//	                    <-----------------  pty master (SCM_RIGHTS), with a terminal
//	                    <-----------------  an error message, then exit 1, on any failure
//	EOF (the socket is close-on-exec) <---  rlimits, user, capabilities, no_new_privs,
//	                                       seccomp filter (compiled by the parent), execve
//
// The cgroup namespace is unshared by the init (on its locked OS thread,
// which then execs) rather than at clone time, so that its root is the
// container's cgroup. Neither version moves a whole process into its
// group, which takes a global kernel lock whose first writer waits for an
// RCU grace period (see cgroupV1.taskFiles): on v1 the init moves only
// its own thread, the one that will exec; on v2 it is born in the group.
//
// # Exec
//
// Container.Exec (berth exec) re-executes /proc/self/exe with ExecArg: the
// helper is born in the container's cgroup (v2: clone3 into it; v1: its
// thread writes itself into the tasks files it is handed), then, on its
// locked thread, unshares CLONE_FS, enters the namespaces the parent opened
// (/proc/PID/ns/*, the mount namespace last), and runs finish, the init's
// own last steps (user, capabilities, no_new_privs), whose final step forks
// and execs the process from that thread, so that it is born in the
// container's pid namespace with that thread's credentials. The helper
// relays signals, waits, and exits with the process's code. A container
// with a user namespace of its own is refused (setns into one needs a
// single-threaded caller).
//
// # Seccomp
//
// A spec with Linux.Seccomp gets its filter compiled in the parent
// (runner/seccomp; WithSeccomp passes one compiled beforehand, as berth
// does from its cache) and sent with the config. The init installs it as
// late as it can: right before execve with no_new_privs, else before it
// changes user and capabilities, while it still holds CAP_SYS_ADMIN.
//
// # Cgroups
//
// Limits (memory + swap, cpu quota, pids) go through Cgroup, implemented for
// cgroup v2 (/sys/fs/cgroup is cgroup2) and v1 (legacy or hybrid). A relative
// Linux.CgroupsPath (default "berth/<id>") is placed under berth's own cgroup
// on v1, for each controller, so the limits berth itself runs under still
// apply; on v2 under the hierarchy root, because a v2 group that holds
// processes cannot hand controllers to children. An absolute path is taken
// from the hierarchy root on both.
//
// Freeze stops a running container's processes (berth commit's pause)
// through its own group: cgroup.freeze on v2, the freezer controller on v1
// (which every container joins for that).
//
// Device rules (LinuxResources.Devices: Docker's deny everything, then
// mknod of any node and use of the default devices, the console and the
// terminals) are written to the v1 devices controller. Where they cannot be
// enforced (cgroup v2, which needs an eBPF program this runtime does not
// load, or no cgroup at all), the container gets no CAP_MKNOD and its bind
// mounts are nodev instead, so that it cannot reach a host device either.
//
// # State layout
//
//	<state>/names/
//	  .lock         flocked while a name is given, changed or freed
//	  <name>        the ID of the container that has the name (names.go)
//	<state>/containers/<id>/
//	  name          the container's name
//	  config.json   the runtime spec (Root.Path is rootfs/ below)
//	  image.json    what the rootfs is made of (the caller's, opaque here)
//	  state.json    status, pids, exit code, times, restart policy and count (State)
//	  state.lock    flocked while state.json is written
//	  health.json   the health check's state and last results (Health)
//	  stopped       present when the user stopped it (no restart)
//	  upper/ work/  the container's writable layer and overlayfs's work dir
//	  rootfs/       the overlay mount point while running
//	  log           stdout and stderr of a detached container
//	  lock          flocked while a command changes the container
package container

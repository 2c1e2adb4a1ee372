package spec

import (
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Defaults of the generated config.
const (
	// DefaultPath is PATH when the image's Env has none.
	DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// DefaultHostname is the container's hostname when Options.Hostname
	// is empty and the network is not the host's.
	DefaultHostname = "berth"
	// DefaultNOFILE is the soft and hard RLIMIT_NOFILE of the process.
	DefaultNOFILE = 1048576
	// CPUPeriod is the CFS period, in microseconds, that Options.CPUs is
	// a share of.
	CPUPeriod = 100000
	// UserNSHostID is the first host uid and gid of the user namespace
	// mapping (see the package doc); UserNSSize ids are mapped.
	UserNSHostID = 100000
	// UserNSSize is how many uids and gids the user namespace maps.
	UserNSSize = 65536
	// StopSignalAnnotation carries the image's StopSignal, for `berth stop`.
	StopSignalAnnotation = "org.opencontainers.image.stopSignal"
)

// UserNSMappings is the user namespace's mapping (uids and gids alike):
// the container's 0..UserNSSize-1 to the host's UserNSHostID onwards.
func UserNSMappings() []specs.LinuxIDMapping {
	return []specs.LinuxIDMapping{{ContainerID: 0, HostID: UserNSHostID, Size: UserNSSize}}
}

// DefaultCapabilities returns the capabilities a container's process gets
// in its bounding, effective and permitted sets: the 14 Docker grants by
// default. The inheritable and ambient sets stay empty.
func DefaultCapabilities() []string {
	return []string{
		"CAP_CHOWN",
		"CAP_DAC_OVERRIDE",
		"CAP_FSETID",
		"CAP_FOWNER",
		"CAP_MKNOD",
		"CAP_NET_RAW",
		"CAP_SETGID",
		"CAP_SETUID",
		"CAP_SETFCAP",
		"CAP_SETPCAP",
		"CAP_NET_BIND_SERVICE",
		"CAP_SYS_CHROOT",
		"CAP_KILL",
		"CAP_AUDIT_WRITE",
	}
}

// MaskedPaths returns the paths hidden from the container (runc's
// defaults): kernel interfaces that leak host information or allow
// attacks.
func MaskedPaths() []string {
	return []string{
		"/proc/acpi",
		"/proc/asound",
		"/proc/kcore",
		"/proc/keys",
		"/proc/latency_stats",
		"/proc/timer_list",
		"/proc/timer_stats",
		"/proc/sched_debug",
		"/proc/scsi",
		"/sys/firmware",
		"/sys/devices/virtual/powercap",
	}
}

// ReadonlyPaths returns the paths made read-only in the container (runc's
// defaults).
func ReadonlyPaths() []string {
	return []string{
		"/proc/bus",
		"/proc/fs",
		"/proc/irq",
		"/proc/sys",
		"/proc/sysrq-trigger",
	}
}

// defaultMounts are the kernel filesystems every container gets, in
// mount order. sysBind replaces the sysfs mount with a read-only bind of
// the host's /sys, for a user namespace sharing the host's network
// namespace, where the kernel refuses a new sysfs. writable makes /sys
// and its cgroup mount read-write (a privileged container).
func defaultMounts(sysBind, writable bool) []specs.Mount {
	access := "ro"
	if writable {
		access = "rw"
	}
	sys := specs.Mount{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", access}}
	if sysBind {
		sys = specs.Mount{Destination: "/sys", Type: "bind", Source: "/sys", Options: []string{"rbind", "nosuid", "noexec", "nodev", access}}
	}
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		sys,
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", access}},
	}
}

// device is one of the default device nodes.
type device struct {
	path         string
	major, minor int64
}

// defaultDevices are the character devices created in the container's
// /dev.
var defaultDevices = []device{
	{"/dev/null", 1, 3},
	{"/dev/zero", 1, 5},
	{"/dev/full", 1, 7},
	{"/dev/random", 1, 8},
	{"/dev/urandom", 1, 9},
	{"/dev/tty", 5, 0},
}

// linuxDevices returns the default devices as linux.devices: mode 0666,
// owned by the container's root.
func linuxDevices() []specs.LinuxDevice {
	out := make([]specs.LinuxDevice, 0, len(defaultDevices))
	for _, d := range defaultDevices {
		mode := os.FileMode(0o666)
		uid, gid := uint32(0), uint32(0)
		out = append(out, specs.LinuxDevice{Path: d.path, Type: "c", Major: d.major, Minor: d.minor, FileMode: &mode, UID: &uid, GID: &gid})
	}
	return out
}

// deviceAllowList is the device cgroup: everything denied, then mknod of
// any device, and read, write and mknod of the default devices, the
// console, /dev/ptmx and the pseudo-terminals.
func deviceAllowList() []specs.LinuxDeviceCgroup {
	i := func(n int64) *int64 { return &n }
	list := []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		{Allow: true, Type: "c", Access: "m"},
		{Allow: true, Type: "b", Access: "m"},
	}
	for _, d := range defaultDevices {
		list = append(list, specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: i(d.major), Minor: i(d.minor), Access: "rwm"})
	}
	return append(list,
		specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: i(5), Minor: i(1), Access: "rwm"}, // /dev/console
		specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: i(5), Minor: i(2), Access: "rwm"}, // /dev/ptmx
		specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: i(136), Access: "rwm"},            // /dev/pts/*
	)
}

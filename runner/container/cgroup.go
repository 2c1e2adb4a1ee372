package container

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Cgroup is a container's control group: one directory on cgroup v2, one
// per controller on v1. NewCgroup creates it with its limits set.
type Cgroup interface {
	// Add moves process pid, with all its threads, into the group.
	Add(pid int) error
	// OOMKilled reports whether the OOM killer killed a process of the
	// group for exceeding its memory limit.
	OOMKilled() (bool, error)
	// Destroy removes the group. Its processes must have exited.
	// Removing a group that is gone is not an error.
	Destroy() error
	// Paths are the group's directories (for messages and tests).
	Paths() []string
	// DeviceRules reports whether the group enforces the device rules
	// (LinuxResources.Devices) it was made with: only cgroup v1's devices
	// controller does here (v2 needs an eBPF program, not loaded).
	DeviceRules() bool
}

// threadJoiner is a Cgroup that the init joins by itself, one thread at a
// time, rather than being moved in by the parent with Add: cgroup v1 (see
// cgroupV1.taskFiles). On cgroup v2 a thread cannot leave its process's
// domain group, so the parent moves the whole process.
type threadJoiner interface {
	taskFiles() ([]*os.File, error)
}

// cloneJoiner is a Cgroup that the init is born in, by clone3 with
// CLONE_INTO_CGROUP, rather than moved into with Add: cgroup v2. Like
// threadJoiner, it spares the start the global lock of a process move.
type cloneJoiner interface {
	// dirFile opens the group's directory, for clone3.
	dirFile() (*os.File, error)
}

// cgroupRoot is where the cgroup filesystems are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// ErrNoCgroups: no usable cgroup hierarchy (not mounted, or not writable).
var ErrNoCgroups = errors.New("no usable cgroup hierarchy")

// CgroupV2 reports whether the host uses the unified (v2) hierarchy only.
func CgroupV2() bool {
	var st unix.Statfs_t
	return unix.Statfs(cgroupRoot, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

// NewCgroup creates the group p (absolute: from the hierarchy root;
// relative: see the package doc) and applies r's memory, cpu and pids
// limits, on cgroup v2 or v1 whichever the host has.
func NewCgroup(p string, r *specs.LinuxResources) (Cgroup, error) {
	if p == "" || strings.Contains("/"+p+"/", "/../") {
		return nil, fmt.Errorf("%w: bad cgroups path %q", ErrInvalidSpec, p)
	}
	if CgroupV2() {
		return newCgroupV2(cgroupRoot, p, r)
	}
	return newCgroupV1(p, r)
}

// limits is the part of LinuxResources the runtime applies, in the
// units both versions are written from.
type limits struct {
	memory, memSwap  int64 // bytes; 0: unlimited; memSwap -1: unlimited swap
	cpuQuota, cpuPer int64 // microseconds; quota 0: unlimited
	pids             int64 // 0: unlimited
	devices          []specs.LinuxDeviceCgroup
}

func limitsOf(r *specs.LinuxResources) limits {
	var l limits
	if r == nil {
		return l
	}
	if m := r.Memory; m != nil && m.Limit != nil && *m.Limit > 0 {
		l.memory = *m.Limit
		l.memSwap = l.memory // no swap beyond the limit: the OOM killer acts at the limit
		if m.Swap != nil && (*m.Swap == -1 || *m.Swap > l.memory) {
			l.memSwap = *m.Swap
		}
	}
	if c := r.CPU; c != nil && c.Quota != nil && *c.Quota > 0 {
		l.cpuQuota, l.cpuPer = *c.Quota, 100000
		if c.Period != nil && *c.Period > 0 {
			l.cpuPer = int64(*c.Period)
		}
	}
	if r.Pids != nil && r.Pids.Limit != nil && *r.Pids.Limit > 0 {
		l.pids = *r.Pids.Limit
	}
	l.devices = r.Devices
	return l
}

func writeFile(dir, name, value string) error {
	if err := os.WriteFile(filepath.Join(dir, name), []byte(value), 0); err != nil {
		return fmt.Errorf("cgroup: writing %q to %s: %w", value, filepath.Join(dir, name), err)
	}
	return nil
}

// removeDir removes a cgroup directory, retrying briefly while the kernel
// still counts exited tasks in it.
func removeDir(dir string) error {
	var err error
	for i := 0; i < 50; i++ {
		err = unix.Rmdir(dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("cgroup: removing %s: %w", dir, err)
}

// counter reads "key N" from a flat-keyed cgroup file.
func counter(file, key string) (int64, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, sc.Err()
}

// ownCgroups returns the cgroups of the calling process from
// /proc/self/cgroup: controller name ("" for the v2 hierarchy) -> path.
func ownCgroups() (map[string]string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			out[""] = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			out[c] = parts[2]
		}
	}
	return out, nil
}

// ---- v2

type cgroupV2 struct{ dir string }

// newCgroupV2 makes the group p in the v2 hierarchy mounted at root.
func newCgroupV2(root, p string, r *specs.LinuxResources) (Cgroup, error) {
	// Relative and absolute both start at the root, see the package doc.
	rel := path.Clean("/" + p)
	dir := filepath.Join(root, rel)
	// Enable the controllers on the way down: every ancestor's
	// subtree_control must list a controller for the group to have it.
	l := limitsOf(r)
	var want []string
	if l.memory > 0 {
		want = append(want, "+memory")
	}
	if l.cpuQuota > 0 {
		want = append(want, "+cpu")
	}
	if l.pids > 0 {
		want = append(want, "+pids")
	}
	cur := root
	for _, part := range strings.Split(strings.Trim(rel, "/"), "/") {
		if len(want) > 0 {
			if err := writeFile(cur, "cgroup.subtree_control", strings.Join(want, " ")); err != nil {
				return nil, err
			}
		}
		cur = filepath.Join(cur, part)
		if err := os.Mkdir(cur, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("%w: %v", ErrNoCgroups, err)
		}
	}
	cg := &cgroupV2{dir: dir}
	if err := cg.apply(l); err != nil {
		cg.Destroy()
		return nil, err
	}
	return cg, nil
}

func (c *cgroupV2) apply(l limits) error {
	if l.memory > 0 {
		if err := writeFile(c.dir, "memory.max", strconv.FormatInt(l.memory, 10)); err != nil {
			return err
		}
		swap := "max"
		if l.memSwap >= 0 {
			swap = strconv.FormatInt(l.memSwap-l.memory, 10)
		}
		if _, err := os.Stat(filepath.Join(c.dir, "memory.swap.max")); err == nil {
			if err := writeFile(c.dir, "memory.swap.max", swap); err != nil {
				return err
			}
		}
	}
	if l.cpuQuota > 0 {
		if err := writeFile(c.dir, "cpu.max", fmt.Sprintf("%d %d", l.cpuQuota, l.cpuPer)); err != nil {
			return err
		}
	}
	if l.pids > 0 {
		if err := writeFile(c.dir, "pids.max", strconv.FormatInt(l.pids, 10)); err != nil {
			return err
		}
	}
	return nil
}

func (c *cgroupV2) Add(pid int) error {
	return writeFile(c.dir, "cgroup.procs", strconv.Itoa(pid))
}

func (c *cgroupV2) dirFile() (*os.File, error) {
	f, err := os.Open(c.dir)
	if err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	return f, nil
}

func (c *cgroupV2) OOMKilled() (bool, error) {
	n, err := counter(filepath.Join(c.dir, "memory.events"), "oom_kill")
	return n > 0, err
}

func (c *cgroupV2) Destroy() error { return removeDir(c.dir) }

func (c *cgroupV2) Paths() []string { return []string{c.dir} }

func (c *cgroupV2) DeviceRules() bool { return false }

// ---- v1

// v1Controllers are the v1 hierarchies a container joins (cpuset is left
// out: a new cpuset group is empty until cpus and mems are copied in).
// freezer is for Freeze (berth commit's pause).
var v1Controllers = []string{"memory", "cpu", "cpuacct", "pids", "blkio", "devices", "freezer"}

type cgroupV1 struct {
	dirs    map[string]string // controller -> directory (one per hierarchy)
	devices bool              // device rules written
}

// v1Mounts maps each mounted v1 controller to its mount point and the
// hierarchy path mounted there.
func v1Mounts() (map[string][2]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string][2]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, sf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(sf) < 3 || sf[0] != "cgroup" {
			continue
		}
		for _, opt := range strings.Split(sf[2], ",") {
			if _, seen := out[opt]; !seen {
				out[opt] = [2]string{pf[4], pf[3]}
			}
		}
	}
	return out, sc.Err()
}

func newCgroupV1(p string, r *specs.LinuxResources) (Cgroup, error) {
	mounts, err := v1Mounts()
	if err != nil {
		return nil, err
	}
	own, err := ownCgroups()
	if err != nil {
		return nil, err
	}
	cg := &cgroupV1{dirs: map[string]string{}}
	byMount := map[string]string{}
	for _, ctrl := range v1Controllers {
		m, ok := mounts[ctrl]
		if !ok {
			continue
		}
		mountPoint, mountRoot := m[0], m[1]
		var rel string
		if path.IsAbs(p) {
			rel = p
		} else {
			base := strings.TrimPrefix(own[ctrl], mountRoot)
			rel = path.Join("/", base, p)
		}
		dir := filepath.Join(mountPoint, rel)
		if d, ok := byMount[mountPoint]; ok { // cpu,cpuacct mounted together
			cg.dirs[ctrl] = d
			continue
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			cg.Destroy()
			return nil, fmt.Errorf("%w: %v", ErrNoCgroups, err)
		}
		byMount[mountPoint] = dir
		cg.dirs[ctrl] = dir
	}
	l := limitsOf(r)
	need := map[string]bool{"memory": l.memory > 0, "cpu": l.cpuQuota > 0, "pids": l.pids > 0}
	for ctrl, n := range need {
		if _, ok := cg.dirs[ctrl]; n && !ok {
			cg.Destroy()
			return nil, fmt.Errorf("%w: the %s controller is not mounted", ErrNoCgroups, ctrl)
		}
	}
	if len(cg.dirs) == 0 {
		return nil, fmt.Errorf("%w: no v1 controller mounted under %s", ErrNoCgroups, cgroupRoot)
	}
	if err := cg.apply(l); err != nil {
		cg.Destroy()
		return nil, err
	}
	return cg, nil
}

func (c *cgroupV1) apply(l limits) error {
	if l.memory > 0 {
		d := c.dirs["memory"]
		if err := writeFile(d, "memory.limit_in_bytes", strconv.FormatInt(l.memory, 10)); err != nil {
			return err
		}
		// memsw exists only with swap accounting; it must be >= the limit.
		if _, err := os.Stat(filepath.Join(d, "memory.memsw.limit_in_bytes")); err == nil {
			if err := writeFile(d, "memory.memsw.limit_in_bytes", strconv.FormatInt(l.memSwap, 10)); err != nil {
				return err
			}
		}
	}
	if l.cpuQuota > 0 {
		d := c.dirs["cpu"]
		if err := writeFile(d, "cpu.cfs_period_us", strconv.FormatInt(l.cpuPer, 10)); err != nil {
			return err
		}
		if err := writeFile(d, "cpu.cfs_quota_us", strconv.FormatInt(l.cpuQuota, 10)); err != nil {
			return err
		}
	}
	if l.pids > 0 {
		if err := writeFile(c.dirs["pids"], "pids.max", strconv.FormatInt(l.pids, 10)); err != nil {
			return err
		}
	}
	if d, ok := c.dirs["devices"]; ok && len(l.devices) > 0 {
		// In order: the first rule is usually "deny everything", which
		// the kernel takes only while the group has no children.
		for _, r := range l.devices {
			file := "devices.deny"
			if r.Allow {
				file = "devices.allow"
			}
			if err := writeFile(d, file, deviceRule(r)); err != nil {
				return err
			}
		}
		c.devices = true
	}
	return nil
}

// deviceRule is r as the v1 devices controller reads it:
// "TYPE MAJOR:MINOR ACCESS", with a for all types and * for any number.
func deviceRule(r specs.LinuxDeviceCgroup) string {
	typ, major, minor, access := r.Type, "*", "*", r.Access
	if typ == "" {
		typ = "a"
	}
	if r.Major != nil && *r.Major >= 0 {
		major = strconv.FormatInt(*r.Major, 10)
	}
	if r.Minor != nil && *r.Minor >= 0 {
		minor = strconv.FormatInt(*r.Minor, 10)
	}
	if access == "" {
		access = "rwm"
	}
	return fmt.Sprintf("%s %s:%s %s", typ, major, minor, access)
}

func (c *cgroupV1) DeviceRules() bool { return c.devices }

func (c *cgroupV1) Add(pid int) error {
	done := map[string]bool{}
	for _, d := range c.dirs {
		if done[d] {
			continue
		}
		done[d] = true
		if err := writeFile(d, "cgroup.procs", strconv.Itoa(pid)); err != nil {
			return err
		}
	}
	return nil
}

// taskFiles opens the tasks file of each of the group's hierarchies for
// writing, for the init to move its own thread in (joinCgroup).
//
// Why not Add: moving a process (cgroup.procs, or a pid into tasks) takes
// the kernel's global cgroup_threadgroup_rwsem for writing, and the first
// writer after a quiet spell waits for an RCU grace period while holding
// cgroup_mutex, 1 to 10 ms of most container starts. A thread writing "0"
// to a v1 tasks file moves only itself, which needs no such lock. The
// init's thread is the one that execs, and after the exec it is the whole
// process. The permission check is made with the credentials of whoever
// opened the file, so an init in a user namespace can use them too.
func (c *cgroupV1) taskFiles() ([]*os.File, error) {
	var files []*os.File
	for _, d := range c.Paths() {
		f, err := os.OpenFile(filepath.Join(d, "tasks"), os.O_WRONLY, 0)
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, fmt.Errorf("cgroup: %w", err)
		}
		files = append(files, f)
	}
	return files, nil
}

func (c *cgroupV1) OOMKilled() (bool, error) {
	d, ok := c.dirs["memory"]
	if !ok {
		return false, nil
	}
	n, err := counter(filepath.Join(d, "memory.oom_control"), "oom_kill")
	return n > 0, err
}

func (c *cgroupV1) Destroy() error {
	var errs []error
	done := map[string]bool{}
	for _, d := range c.dirs {
		if done[d] {
			continue
		}
		done[d] = true
		errs = append(errs, removeDir(d))
	}
	return errors.Join(errs...)
}

func (c *cgroupV1) Paths() []string {
	var out []string
	done := map[string]bool{}
	for _, ctrl := range v1Controllers {
		if d, ok := c.dirs[ctrl]; ok && !done[d] {
			done[d] = true
			out = append(out, d)
		}
	}
	return out
}

package container

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// freezeTimeout bounds how long Freeze waits for every process of the
// group to stop (a process in an uninterruptible sleep delays it).
const freezeTimeout = 10 * time.Second

// Freeze stops every process of the running container whose PID 1 is the
// host pid pid, as `docker pause` does: cgroup v2's cgroup.freeze, or the
// v1 freezer controller's freezer.state, of the container's own cgroup
// (found from /proc/PID/cgroup). It returns once the group is frozen, with
// thaw, which lets the processes run again; the caller calls it however
// its work ends. A container without a freezer cgroup of its own (one
// started by a berth that did not put it in one) fails with ErrNoCgroups:
// freezing the group it shares would freeze berth itself.
func Freeze(pid int) (thaw func() error, err error) {
	if pid <= 0 {
		return nil, fmt.Errorf("%w: no pid to freeze", ErrNotRunning)
	}
	f, err := freezerOf(pid)
	if err != nil {
		return nil, err
	}
	if frozen, err := f.frozen(); err == nil && frozen {
		// Paused already (berth pause): it stays so.
		return func() error { return nil }, nil
	}
	thaw = func() error { return writeFile(f.dir, f.file, f.thaw) }
	if err := writeFile(f.dir, f.file, f.freeze); err != nil {
		return nil, err
	}
	if err := f.waitFrozen(); err != nil {
		thaw()
		return nil, err
	}
	return thaw, nil
}

// procCgroups reads /proc/PID/cgroup as ownCgroups reads its own.
func procCgroups(pid int) (map[string]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: pid %d is gone", ErrNotRunning, pid)
		}
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			out[c] = parts[2]
		}
	}
	return out, nil
}

// ownGroup checks that the container's group p (in hierarchy ctrl, "" for
// v2) is its own: not the root, not berth's.
func ownGroup(ctrl, p string) error {
	own, err := ownCgroups()
	if err != nil {
		return err
	}
	if p == "" || p == "/" || p == own[ctrl] {
		return fmt.Errorf("%w: the container has no freezer cgroup of its own (it was started by an older berth); commit it with --pause=false", ErrNoCgroups)
	}
	return nil
}

// freezer is the freezer of the container whose PID 1 is pid: the
// directory of its group and the file and values that freeze it.
type freezer struct {
	dir, file    string
	freeze, thaw string
}

// freezerOf finds the freezer of the container whose PID 1 is pid.
func freezerOf(pid int) (freezer, error) {
	cgs, err := procCgroups(pid)
	if err != nil {
		return freezer{}, err
	}
	if CgroupV2() {
		p := cgs[""]
		if err := ownGroup("", p); err != nil {
			return freezer{}, err
		}
		return freezer{dir: filepath.Join(cgroupRoot, path.Clean("/"+p)), file: "cgroup.freeze", freeze: "1", thaw: "0"}, nil
	}
	p, ok := cgs["freezer"]
	mounts, err := v1Mounts()
	if err != nil {
		return freezer{}, err
	}
	m, mounted := mounts["freezer"]
	if !ok || !mounted {
		return freezer{}, fmt.Errorf("%w: the freezer controller is not mounted", ErrNoCgroups)
	}
	if err := ownGroup("freezer", p); err != nil {
		return freezer{}, err
	}
	rel := strings.TrimPrefix(path.Clean("/"+p), m[1])
	return freezer{dir: filepath.Join(m[0], path.Clean("/"+rel)), file: "freezer.state", freeze: "FROZEN", thaw: "THAWED"}, nil
}

// frozen reports whether the group is frozen: every process stopped.
func (f freezer) frozen() (bool, error) {
	if f.file == "cgroup.freeze" {
		n, err := counter(filepath.Join(f.dir, "cgroup.events"), "frozen")
		return n == 1, err
	}
	b, err := os.ReadFile(filepath.Join(f.dir, f.file))
	return strings.TrimSpace(string(b)) == "FROZEN", err
}

// waitFrozen polls the group until it is frozen, fails to say, or
// freezeTimeout passed.
func (f freezer) waitFrozen() error {
	deadline := time.Now().Add(freezeTimeout)
	for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		ok, err := f.frozen()
		if err != nil {
			return fmt.Errorf("cgroup: reading the freezer state of %s: %w", f.dir, err)
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup: the container did not freeze within %s", freezeTimeout)
		}
		time.Sleep(delay)
	}
}

// Frozen reports whether the container whose PID 1 is pid is frozen.
func Frozen(pid int) (bool, error) {
	f, err := freezerOf(pid)
	if err != nil {
		return false, err
	}
	return f.frozen()
}

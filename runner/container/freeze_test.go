package container_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/berth-registry/berth/runner/container"
)

// TestFreeze: a running container's processes stop while it is frozen
// (berth commit's pause) and go on after the thaw.
func TestFreeze(t *testing.T) {
	rootfs := busyboxRootfs(t)
	spec := testSpec(rootfs, "sh", "-c", "sleep 60 & while :; do date > /tmp/tick; done")
	spec.Linux.CgroupsPath = "berth-test/" + container.NewID()
	p, err := container.Start(context.Background(), "", spec, container.Stdio{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		p.Signal(syscall.SIGKILL)
		p.Wait()
		for _, d := range p.CgroupPaths() {
			os.Remove(filepath.Dir(d))
		}
	}()
	thaw, err := container.Freeze(p.Pid())
	if errors.Is(err, container.ErrNoCgroups) {
		skipOrFail(t, err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	if frozen, err := container.Frozen(p.Pid()); err != nil || !frozen {
		t.Errorf("after Freeze: frozen=%v, %v", frozen, err)
	}
	// A frozen process is stopped in the freezer, not running.
	if st := procState(t, p.Pid()); st == 'R' {
		t.Errorf("PID 1 state %c while frozen", st)
	}
	if err := thaw(); err != nil {
		t.Fatal(err)
	}
	if frozen, err := container.Frozen(p.Pid()); err != nil || frozen {
		t.Errorf("after thaw: frozen=%v, %v", frozen, err)
	}
	// Freezing a pid that shares berth's own groups is refused.
	if _, err := container.Freeze(os.Getpid()); !errors.Is(err, container.ErrNoCgroups) {
		t.Errorf("Freeze(own pid) = %v, want ErrNoCgroups", err)
	}
}

// procState is the state letter of /proc/PID/stat.
func procState(t *testing.T, pid int) byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		t.Fatal(err)
	}
	i := len(b) - 1
	for i > 0 && b[i] != ')' {
		i--
	}
	return b[i+2]
}

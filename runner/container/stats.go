package container

import (
	"bufio"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Stats is one sample of a running container's resource use, read from its
// cgroup (as `docker stats`).
type Stats struct {
	Read time.Time
	// CPUNanos is the CPU time its processes used; SystemNanos the CPU
	// time of the whole host (all CPUs) since boot, at the same moment;
	// OnlineCPUs how many CPUs the host has.
	CPUNanos, SystemNanos uint64
	OnlineCPUs            int
	// Memory is the memory in use, without the inactive page cache (as
	// docker counts it); MemoryLimit the limit, or the host's memory
	// when there is none.
	Memory, MemoryLimit uint64
	Pids                uint64
	// NetRx and NetTx are the bytes received and sent by the interfaces
	// of its network namespace other than loopback.
	NetRx, NetTx uint64
	// BlockRead and BlockWrite are the bytes read from and written to
	// block devices.
	BlockRead, BlockWrite uint64
}

// CPUPercent is the container's CPU use between samples prev and cur as
// docker reports it: its share of the host's CPU time, times the number of
// CPUs (100% is one CPU busy).
func CPUPercent(prev, cur Stats) float64 {
	cpu := float64(cur.CPUNanos) - float64(prev.CPUNanos)
	sys := float64(cur.SystemNanos) - float64(prev.SystemNanos)
	if cpu <= 0 || sys <= 0 {
		return 0
	}
	return cpu / sys * float64(cur.OnlineCPUs) * 100
}

// MemoryPercent is Memory as a percentage of MemoryLimit.
func (s Stats) MemoryPercent() float64 {
	if s.MemoryLimit == 0 {
		return 0
	}
	return float64(s.Memory) / float64(s.MemoryLimit) * 100
}

// clockTicks is USER_HZ, the unit of /proc's CPU times (100 on every
// Linux architecture berth runs on).
const clockTicks = 100

// Stats samples the resource use of the running container c. A container
// that does not run fails with ErrNotRunning; one without a cgroup of its
// own with ErrNoCgroups.
func (c *Container) Stats() (Stats, error) {
	st, err := c.running()
	if err != nil {
		return Stats{}, err
	}
	s, err := statsOf(st.Pid)
	if err != nil {
		return Stats{}, fmt.Errorf("container %s: %w", c.ID, err)
	}
	return s, nil
}

// cgroupDirs are the directories of the cgroup of process pid: one per v1
// controller, or "" for the v2 group. A process in berth's own group has
// none of its own: ErrNoCgroups.
func cgroupDirs(pid int) (map[string]string, error) {
	cgs, err := procCgroups(pid)
	if err != nil {
		return nil, err
	}
	own, err := ownCgroups()
	if err != nil {
		return nil, err
	}
	if CgroupV2() {
		p := cgs[""]
		if p == "" || p == "/" || p == own[""] {
			return nil, fmt.Errorf("%w: the container has no cgroup of its own", ErrNoCgroups)
		}
		return map[string]string{"": filepath.Join(cgroupRoot, path.Clean("/"+p))}, nil
	}
	mounts, err := v1Mounts()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, ctrl := range v1Controllers {
		p, ok := cgs[ctrl]
		m, mounted := mounts[ctrl]
		if !ok || !mounted || p == own[ctrl] {
			continue
		}
		rel := strings.TrimPrefix(path.Clean("/"+p), m[1])
		out[ctrl] = filepath.Join(m[0], path.Clean("/"+rel))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: the container has no cgroup of its own", ErrNoCgroups)
	}
	return out, nil
}

func statsOf(pid int) (Stats, error) {
	dirs, err := cgroupDirs(pid)
	if err != nil {
		return Stats{}, err
	}
	s := Stats{Read: time.Now()}
	if s.SystemNanos, s.OnlineCPUs, err = hostCPU(); err != nil {
		return Stats{}, err
	}
	hostMem := hostMemory()
	if dir, ok := dirs[""]; ok { // v2
		usec, _ := counter(filepath.Join(dir, "cpu.stat"), "usage_usec")
		s.CPUNanos = uint64(usec) * 1000
		s.Memory = readUint(filepath.Join(dir, "memory.current"))
		inactive, _ := counter(filepath.Join(dir, "memory.stat"), "inactive_file")
		s.Memory = subFloor(s.Memory, uint64(inactive))
		s.MemoryLimit = readUint(filepath.Join(dir, "memory.max")) // "max" reads 0
		s.Pids = readUint(filepath.Join(dir, "pids.current"))
		s.BlockRead, s.BlockWrite = ioStatV2(filepath.Join(dir, "io.stat"))
	} else {
		s.CPUNanos = readUint(filepath.Join(dirs["cpuacct"], "cpuacct.usage"))
		if d, ok := dirs["memory"]; ok {
			s.Memory = readUint(filepath.Join(d, "memory.usage_in_bytes"))
			inactive, _ := counter(filepath.Join(d, "memory.stat"), "total_inactive_file")
			s.Memory = subFloor(s.Memory, uint64(inactive))
			s.MemoryLimit = readUint(filepath.Join(d, "memory.limit_in_bytes"))
		}
		s.Pids = readUint(filepath.Join(dirs["pids"], "pids.current"))
		s.BlockRead, s.BlockWrite = blkioV1(filepath.Join(dirs["blkio"], "blkio.throttle.io_service_bytes"))
	}
	if s.MemoryLimit == 0 || s.MemoryLimit > hostMem {
		s.MemoryLimit = hostMem
	}
	s.NetRx, s.NetTx = netDev(fmt.Sprintf("/proc/%d/net/dev", pid))
	return s, nil
}

func subFloor(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

// readUint reads a file holding one number (0 when it cannot).
func readUint(name string) uint64 {
	b, err := os.ReadFile(name)
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return n
}

// hostCPU reads the host's total CPU time (nanoseconds) and CPU count
// from /proc/stat.
func hostCPU() (uint64, int, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	var total uint64
	cpus := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		switch {
		case fields[0] == "cpu":
			for _, v := range fields[1:min(len(fields), 8)] { // user..softirq, as docker
				n, _ := strconv.ParseUint(v, 10, 64)
				total += n
			}
		case strings.HasPrefix(fields[0], "cpu"):
			cpus++
		}
	}
	return total * uint64(time.Second/clockTicks), max(cpus, 1), sc.Err()
}

// hostMemory is MemTotal of /proc/meminfo in bytes.
func hostMemory() uint64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			n, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n * 1024
		}
	}
	return 0
}

// netDev sums the received and sent bytes of /proc/PID/net/dev's
// interfaces but lo.
func netDev(name string) (rx, tx uint64) {
	b, err := os.ReadFile(name)
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		iface, rest, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(iface) == "lo" {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 9 {
			continue
		}
		r, _ := strconv.ParseUint(f[0], 10, 64)
		t, _ := strconv.ParseUint(f[8], 10, 64)
		rx, tx = rx+r, tx+t
	}
	return rx, tx
}

// ioStatV2 sums rbytes and wbytes of a v2 io.stat.
func ioStatV2(name string) (r, w uint64) {
	b, err := os.ReadFile(name)
	if err != nil {
		return 0, 0
	}
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, "rbytes="); ok {
			n, _ := strconv.ParseUint(v, 10, 64)
			r += n
		} else if v, ok := strings.CutPrefix(f, "wbytes="); ok {
			n, _ := strconv.ParseUint(v, 10, 64)
			w += n
		}
	}
	return r, w
}

// blkioV1 sums the Read and Write lines of a v1 blkio byte counter.
func blkioV1(name string) (r, w uint64) {
	b, err := os.ReadFile(name)
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		n, _ := strconv.ParseUint(f[2], 10, 64)
		switch f[1] {
		case "Read":
			r += n
		case "Write":
			w += n
		}
	}
	return r, w
}

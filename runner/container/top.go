package container

import (
	"bytes"
	"fmt"
	"os"
	"os/user"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// TopTitles are the columns of Top's rows, those of `ps -ef` (and of
// `docker top`).
var TopTitles = []string{"UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"}

// Top lists the processes of the running container c (those of its pid
// namespace), as `docker top` does, one row of TopTitles each, by pid.
// Pids are the host's. A container that does not run fails with
// ErrNotRunning.
func (c *Container) Top() ([][]string, error) {
	st, err := c.running()
	if err != nil {
		return nil, err
	}
	pids, err := namespacePids(st.Pid)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", c.ID, err)
	}
	boot, err := bootTime()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var rows [][]string
	for _, pid := range pids {
		if row, err := topRow(pid, boot, now); err == nil {
			rows = append(rows, row)
		}
	}
	return rows, nil
}

// Pids returns the host pids of the running container's processes.
func (c *Container) Pids() ([]int, error) {
	st, err := c.running()
	if err != nil {
		return nil, err
	}
	return namespacePids(st.Pid)
}

// namespacePids lists the processes in the pid namespace of pid, sorted.
func namespacePids(pid int) ([]int, error) {
	var want unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/pid", pid), &want); err != nil {
		return nil, fmt.Errorf("%w: pid %d: %v", ErrNotRunning, pid, err)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Stat("/proc/"+e.Name()+"/ns/pid", &st) == nil && st.Ino == want.Ino && st.Dev == want.Dev {
			out = append(out, n)
		}
	}
	sort.Ints(out)
	return out, nil
}

// bootTime is btime of /proc/stat.
func bootTime() (time.Time, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}, err
			}
			return time.Unix(n, 0), nil
		}
	}
	return time.Time{}, fmt.Errorf("/proc/stat has no btime")
}

// procStat is what Top reads of /proc/PID/stat.
type procStat struct {
	ppid       int
	ttyNr      int
	cpuTicks   uint64 // utime + stime
	startTicks uint64 // since boot
}

// parseProcStat parses /proc/PID/stat (whose second field, the command
// name in parentheses, may hold spaces and parentheses itself).
func parseProcStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("bad /proc stat line")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state).
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("bad /proc stat line")
	}
	var s procStat
	s.ppid, _ = strconv.Atoi(f[1])
	s.ttyNr, _ = strconv.Atoi(f[4])
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	s.cpuTicks = ut + st
	s.startTicks, _ = strconv.ParseUint(f[19], 10, 64)
	return s, nil
}

// ttyName names a tty by its device number as ps does, "?" for none.
func ttyName(nr int) string {
	major, minor := (nr>>8)&0xfff, (nr&0xff)|((nr>>12)&0xfff00)
	switch {
	case nr == 0:
		return "?"
	case major >= 136 && major <= 143:
		return fmt.Sprintf("pts/%d", (major-136)*256+minor)
	case major == 4 && minor < 64:
		return fmt.Sprintf("tty%d", minor)
	case major == 4:
		return fmt.Sprintf("ttyS%d", minor-64)
	}
	return "?"
}

// cpuTime formats CPU seconds as ps's TIME: [DD-]HH:MM:SS.
func cpuTime(secs uint64) string {
	d, h, m, s := secs/86400, secs/3600%24, secs/60%60, secs%60
	if d > 0 {
		return fmt.Sprintf("%d-%02d:%02d:%02d", d, h, m, s)
	}
	return fmt.Sprintf("%02d:%02d:%02d", h, m, s)
}

func topRow(pid int, boot, now time.Time) ([]string, error) {
	dir := fmt.Sprintf("/proc/%d", pid)
	raw, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return nil, err
	}
	ps, err := parseProcStat(raw)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return nil, err
	}
	uid := strconv.Itoa(int(st.Uid))
	if u, err := user.LookupId(uid); err == nil {
		uid = u.Username
	}
	start := sinceBoot(boot, ps.startTicks)
	elapsed := now.Sub(start).Seconds()
	c := 0
	if elapsed > 0 {
		c = int(float64(ps.cpuTicks) / clockTicks / elapsed * 100)
	}
	stime := start.Format("15:04")
	if y, m, d := start.Date(); y != now.Year() || m != now.Month() || d != now.Day() {
		stime = start.Format("Jan02")
	}
	cmdline, _ := os.ReadFile(dir + "/cmdline")
	cmd := strings.TrimSpace(strings.ReplaceAll(string(bytes.TrimRight(cmdline, "\x00")), "\x00", " "))
	if cmd == "" {
		comm, _ := os.ReadFile(dir + "/comm")
		cmd = "[" + strings.TrimSpace(string(comm)) + "]"
	}
	return []string{uid, strconv.Itoa(pid), strconv.Itoa(ps.ppid), strconv.Itoa(c), stime,
		ttyName(ps.ttyNr), cpuTime(ps.cpuTicks / clockTicks), cmd}, nil
}

package spec

import (
	"bufio"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// capSysResource is CAP_SYS_RESOURCE's bit in the capability sets.
const capSysResource = 24

// DefaultRlimitNOFILE is the RLIMIT_NOFILE Generate sets when
// Options.NOFILE is 0: DefaultNOFILE, lowered to this process's hard limit
// when the process lacks CAP_SYS_RESOURCE. A runtime started from here
// (runc, or `berth run`) could not raise the hard limit above its own
// either, and would fail to start the container (EPERM from setrlimit),
// as in sandboxes that drop CAP_SYS_RESOURCE even for root.
func DefaultRlimitNOFILE() uint64 {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return DefaultNOFILE
	}
	return nofileLimit(lim.Max, hasCapability(capSysResource))
}

// nofileLimit is DefaultNOFILE, or hard when that is lower and cannot be
// raised.
func nofileLimit(hard uint64, canRaise bool) uint64 {
	if canRaise || hard >= DefaultNOFILE {
		return DefaultNOFILE
	}
	return hard
}

// hasCapability reports whether capability bit is in this process's
// effective set (/proc/self/status CapEff); false when that cannot be read.
func hasCapability(bit uint) bool {
	mask, ok := effectiveCapabilities()
	return ok && mask&(1<<bit) != 0
}

// effectiveCapabilities is this process's effective set (/proc/self/status
// CapEff); ok is false when that cannot be read.
func effectiveCapabilities() (mask uint64, ok bool) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, found := strings.CutPrefix(sc.Text(), "CapEff:")
		if !found {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		return mask, err == nil
	}
	return 0, false
}

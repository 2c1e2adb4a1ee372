// The zb case: zot's own benchmark (zb from zot v2.1.20, prebuilt in the
// harness, run by its zb.sh) against berth serve with its default
// configuration, with berth's peak memory (VmHWM) over the whole run,
// printed next to the figures of issue 19's reference table (zot v2.1.20
// and the Berth of that day, on a quiet machine of this kind).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/berth-registry/berth/integration"
)

var zbRuns = flag.Int("zb-runs", 3, "zb case: runs of zot's benchmark (the median of each test is reported); 0 skips the case (unless -only zb)")

// zbReference is the reference table: req/s of zot v2.1.20 and of Berth
// on 2026-12-07 (zb -c 10 -n 50, a quiet machine of this kind).
var zbReference = []struct {
	test       string
	zot, berth float64
}{
	{"Get Catalog", 18.7, 28.6},
	{"Push Monolith 1MB", 89.3, 108.4},
	{"Push Monolith 10MB", 38.7, 42.6},
	{"Push Monolith 100MB", 5.4, 5.7},
	{"Push Chunk Streamed 1MB", 90.8, 74.3},
	{"Push Chunk Streamed 10MB", 41.1, 33.9},
	{"Push Chunk Streamed 100MB", 6.1, 6.7},
	{"Pull 1MB", 284.1, 367.8},
	{"Pull 10MB", 103.1, 106.4},
	{"Pull 100MB", 13.3, 15.8},
	{"Pull Mixed 20% 1MB, 70% 10MB, 10% 100MB", 21.3, 25.3},
	{"Push Monolith Mixed 20% 1MB, 70% 10MB, 10% 100MB", 37.9, 33.0},
	{"Push Chunk Mixed 33% 1MB, 33% 10MB, 33% 100MB", 13.9, 18.0},
	{"Pull 75% and Push 25% Mixed 1MB", 177.3, 126.1},
	{"Pull 75% and Push 25% Mixed 10MB", 62.7, 61.5},
	{"Pull 75% and Push 25% Mixed 100MB", 8.1, 9.9},
}

// zbCase runs zb.sh runs times against a fresh berth serve and prints
// each test's median next to the reference, and berth's peak and idle
// memory.
func zbCase(ctx context.Context, berthBin, dir string, runs int) error {
	script := filepath.Join(*runHarness, "zb.sh")
	if _, err := os.Stat(script); err != nil {
		return fmt.Errorf("zb: %w (set -harness)", err)
	}
	root := mkdir(dir, "zb-root")
	defer os.RemoveAll(root)
	srv, err := integration.Start(ctx, integration.Options{Kind: integration.Berth, Binary: berthBin, Root: root, Dir: mkdir(dir, "zb")})
	if err != nil {
		return err
	}
	defer stopServer(srv, "berth")
	idle := procStatusKiB(srv.PID(), "VmRSS")
	fmt.Printf("\nbench: zb case: zot's benchmark, %d run(s), against berth serve with its default configuration (access log on)\n", runs)
	out, err := exec.CommandContext(ctx, script, srv.URL, strconv.Itoa(runs)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("zb.sh: %v\n%s", err, out)
	}
	peak := procStatusKiB(srv.PID(), "VmHWM")
	medians := zbMedians(string(out))
	fmt.Printf("\n  %-50s %9s %9s %-32s %9s\n", "zb test", "zot ref", "berth ref", "berth now (median, runs)", "now/zot")
	for _, r := range zbReference {
		now := medians[r.test]
		ratio := ""
		if f := strings.Fields(now); len(f) > 0 {
			if v, err := strconv.ParseFloat(f[0], 64); err == nil {
				ratio = fmt.Sprintf("%.2f", v/r.zot)
			}
		}
		fmt.Printf("  %-50s %9.1f %9.1f %-32s %9s\n", r.test, r.zot, r.berth, now, ratio)
	}
	fmt.Printf("\nberth's memory: idle RSS %d KiB before the run, peak (VmHWM) %d KiB over it; target <= 64 MB (62,500 KiB).\n"+
		"The reference columns were measured on a quiet machine of this kind on 2026-12-07; a slower or busier machine\n"+
		"lowers the \"now\" column for every registry alike, so compare ratios from one run only with zot run beside it.\n",
		idle, peak)
	return nil
}

// procStatusKiB reads a "Key: N kB" line of /proc/PID/status (0 if none).
func procStatusKiB(pid int, key string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// zbMedians reads zb.sh's lines, "zb: <test>: <median> req/s (runs: a b
// c)", into "<median> req/s (runs: a b c)" by test.
func zbMedians(out string) map[string]string {
	medians := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "zb: ")
		if !ok {
			continue
		}
		if test, rest, ok := strings.Cut(line, ": "); ok {
			medians[test] = rest
		}
	}
	return medians
}

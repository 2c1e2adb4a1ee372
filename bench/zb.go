// The zb case: zot's own benchmark (zb from zot v2.1.20, prebuilt in the
// harness, run by its zb.sh) against berth serve with its default
// configuration, with berth's peak memory (VmHWM) over each run,
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

// zbBaseline is another berth binary run beside the one measured, one
// run each in turn, so that the two compare on the same machine at the
// same time (this machine's speed varies from hour to hour).
var zbBaseline = flag.String("zb-baseline", "", "zb case: also run zot's benchmark against this berth `binary` (an older build), in turns with the one measured, and print the ratio")

// zbSeries is one binary's runs: req/s by test, and memory per run.
type zbSeries struct {
	name, bin   string
	rps         map[string][]float64
	idle, peaks []int64
}

// zbCase runs zb.sh runs times against a fresh berth serve each time (and
// as often against -zb-baseline's, in turns) and prints each test's
// median next to the reference, and berth's idle and peak memory.
func zbCase(ctx context.Context, berthBin, dir string, runs int) error {
	script := filepath.Join(*runHarness, "zb.sh")
	if _, err := os.Stat(script); err != nil {
		return fmt.Errorf("zb: %w (set -harness)", err)
	}
	series := []*zbSeries{{name: "berth", bin: berthBin, rps: map[string][]float64{}}}
	if *zbBaseline != "" {
		series = append(series, &zbSeries{name: "baseline", bin: *zbBaseline, rps: map[string][]float64{}})
	}
	fmt.Printf("\nbench: zb case: zot's benchmark, %d run(s), each against a fresh berth serve with its default configuration (access log on)\n", runs)
	for i := range runs {
		for _, z := range series {
			if err := z.run(ctx, script, dir, i); err != nil {
				return err
			}
		}
	}
	b := series[0]
	header := fmt.Sprintf("\n  %-50s %9s %9s %-32s %9s", "zb test", "zot ref", "berth ref", "berth now (median, runs)", "now/zot")
	if len(series) > 1 {
		header += fmt.Sprintf(" %9s %9s", "baseline", "berth/bl")
	}
	fmt.Println(header)
	for _, r := range zbReference {
		now := median(b.rps[r.test])
		line := fmt.Sprintf("  %-50s %9.1f %9.1f %-32s %9.2f", r.test, r.zot, r.berth, fmt.Sprintf("%.1f req/s (runs: %s)", now, joinFloats(b.rps[r.test])), now/r.zot)
		if len(series) > 1 {
			bl := median(series[1].rps[r.test])
			line += fmt.Sprintf(" %9.1f %9.2f", bl, now/bl)
		}
		fmt.Println(line)
	}
	for _, z := range series {
		fmt.Printf("\n%s's memory: idle RSS %s KiB at the start of each run, peak (VmHWM) %s KiB over each run; target <= 64 MB (62,500 KiB).",
			z.name, joinInts(z.idle), joinInts(z.peaks))
	}
	fmt.Printf("\nThe reference columns were measured on a quiet machine of this kind on 2026-12-07; a slower or busier machine\n" +
		"lowers the \"now\" column for every registry alike, so compare ratios from one run only with zot run beside it\n" +
		"(or an older berth: -zb-baseline).\n")
	return nil
}

// run is one zb run against a fresh server of z's binary.
func (z *zbSeries) run(ctx context.Context, script, dir string, i int) error {
	root := mkdir(dir, fmt.Sprintf("zb-root-%s-%d", z.name, i))
	defer os.RemoveAll(root)
	srv, err := integration.Start(ctx, integration.Options{Kind: integration.Berth, Binary: z.bin, Root: root, Dir: mkdir(dir, fmt.Sprintf("zb-%s-%d", z.name, i))})
	if err != nil {
		return err
	}
	defer stopServer(srv, z.name)
	z.idle = append(z.idle, procStatusKiB(srv.PID(), "VmRSS"))
	out, err := exec.CommandContext(ctx, script, srv.URL, "1").CombinedOutput()
	if err != nil {
		return fmt.Errorf("zb.sh against %s: %v\n%s", z.name, err, out)
	}
	z.peaks = append(z.peaks, procStatusKiB(srv.PID(), "VmHWM"))
	for test, v := range zbMedians(string(out)) {
		if f := strings.Fields(v); len(f) > 0 {
			if x, err := strconv.ParseFloat(f[0], 64); err == nil {
				z.rps[test] = append(z.rps[test], x)
			}
		}
	}
	return nil
}

func joinFloats(vs []float64) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = fmt.Sprintf("%.1f", v)
	}
	return strings.Join(parts, " ")
}

func joinInts(vs []int64) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = strconv.FormatInt(v, 10)
	}
	return strings.Join(parts, " ")
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

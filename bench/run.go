package main

// The berth run case (-only run, and the last case of a full bench): the
// runner against the runtimes and tools it replaces, on the harness's test
// images pushed to a berth started here.
//
//   - Warm start: busybox is pulled once, then "berth run --rm busybox
//     /bin/true" is timed -run-reps times against "runc run" (and "crun run"
//     where crun is installed) of the "berth bundle" of the same image with
//     the same command; the runners take turns, the first one rotating every
//     repetition. Both pay for a container state, namespaces, a cgroup and
//     pivot_root; berth run also pays for its overlay rootfs and writable
//     layer, which a runtime given a bundle does not make.
//   - Pull and unpack: "berth pull" of debian into a fresh state directory
//     against "skopeo copy docker://... oci:DIR" followed by "umoci unpack",
//     -pull-reps times, caches dropped before each. Without umoci, a plain
//     tar extraction of each layer stands in, labelled so.
//
// The case needs root (the layer store, namespaces, drop_caches), skopeo and
// runc; it builds the test images with make-test-images.sh into the cache
// the integration tests share (same key, same lock) when they are missing.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/berth-registry/berth/integration"
)

// The case's own flags, registered here so that main.go only dispatches.
var (
	runHarness = flag.String("harness", envOr("BERTH_HARNESS", "../shared/harness"),
		"berth run case: the test harness directory (make-test-images.sh)")
	runReps  = flag.Int("run-reps", 20, "berth run case: warm starts per runner; 0 skips the case (unless -only run)")
	pullReps = flag.Int("pull-reps", 3, "berth run case: cold pull+unpack repetitions per tool")
)

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// runSeries is the samples of one row: wall and CPU (user+system of the
// process and the children it reaped) per repetition, and the peak memory
// where the case measures it.
type runSeries struct {
	name      string
	base      *runSeries // the berth row this one is compared with; nil: none
	wall, cpu []time.Duration
	rss       []int64 // bytes; empty: not measured
}

func (s *runSeries) add(wall, cpu time.Duration) {
	s.wall = append(s.wall, wall)
	s.cpu = append(s.cpu, cpu)
}

// runner is one way of starting the busybox container: argv for repetition
// n, and what to do after it (untimed).
type runner struct {
	series *runSeries
	argv   func(n int) []string
	after  func(n int)
}

// runCase pushes busybox and debian to a berth on loopback and measures
// both figures.
func runCase(ctx context.Context, berthBin, dir string, reps, pulls int) error {
	if os.Geteuid() != 0 {
		fmt.Println("\nbench: berth run case skipped: it needs root (layer store, namespaces, drop_caches)")
		return nil
	}
	berthBin, images, err := caseInputs(ctx, berthBin, "make bench-run installs it with apt-get", "skopeo", "runc")
	if err != nil {
		return err
	}
	work := filepath.Join(dir, "run")
	// The bundles' rootfs must be reachable by the container's root.
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	srv, err := integration.Start(ctx, integration.Options{Kind: integration.Berth, Binary: berthBin,
		Root: filepath.Join(work, "registry"), Dir: work, Quiet: true})
	if err != nil {
		return err
	}
	defer func() {
		if status, err := srv.Stop(); err != nil || status != "exit status 0" {
			fmt.Fprintf(os.Stderr, "bench: berth serve ended with %s %v; log:\n%s\n", status, err, srv.LogTail(20))
		}
	}()
	fmt.Printf("\nbench: berth run case: berth serve on %s, test images from %s\n", srv.URL, images)
	for _, name := range []string{"busybox", "debian"} {
		if _, err := runCmd(ctx, "skopeo", "--insecure-policy", "copy", "--preserve-digests", "--dest-tls-verify=false",
			"oci:"+filepath.Join(images, name)+":latest", "docker://"+srv.Host+"/bench/"+name+":latest"); err != nil {
			return fmt.Errorf("push %s: %w", name, err)
		}
	}
	warm, notes, err := warmStarts(ctx, berthBin, work, srv.Host+"/bench/busybox:latest", reps)
	if err != nil {
		return fmt.Errorf("warm start: %w", err)
	}
	loadWarm := loadavg()
	cold, size, pullNotes, err := coldPulls(ctx, berthBin, work, images, srv.Host+"/bench/debian:latest", pulls)
	if err != nil {
		return fmt.Errorf("pull and unpack: %w", err)
	}

	fmt.Printf("\nwarm start of busybox /bin/true, %d runs each, runners in turn (load after: %s)\n\n", reps, loadWarm)
	printRunTable(os.Stdout, warm, time.Millisecond)
	for _, n := range notes {
		fmt.Println("  " + n)
	}
	fmt.Printf("\npull + unpack of debian (%s compressed), fresh state, caches dropped, %d runs each (load after: %s)\n\n",
		sizeName(size), pulls, loadavg())
	printRunTable(os.Stdout, cold, time.Second)
	for _, n := range pullNotes {
		fmt.Println("  " + n)
	}
	fmt.Println("\nberth/this divides berth's time by the row's: below 1, berth is faster. cpu is user+system")
	fmt.Println("time of the command and the children it waited for.")
	fmt.Printf("Targets (medians): warm start berth/runc <= 1 (no slower than runc): %.2f; pull + unpack\n", berthOver(runcSeries(warm)))
	fmt.Printf("berth/(%s) < 0.5 (under half their time): %.2f.\n", cold[1].name, berthOver(cold[1]))
	printRunSamples(os.Stdout, append(warm, cold...))
	return nil
}

// warmStarts times berth run against runc and crun on one pulled image.
func warmStarts(ctx context.Context, berthBin, work, ref string, reps int) ([]*runSeries, []string, error) {
	state := filepath.Join(work, "state")
	if _, err := runCmd(ctx, berthBin, "pull", "--quiet", "--state", state, ref); err != nil {
		return nil, nil, err
	}
	bundle := filepath.Join(work, "bundle")
	if _, err := runCmd(ctx, berthBin, "bundle", "--state", state, ref, bundle, "--", "/bin/true"); err != nil {
		return nil, nil, err
	}
	id := func(tool string, n int) string { return fmt.Sprintf("berth-bench-%s-%d-%d", tool, os.Getpid(), n) }

	// As runc's bundle: a network namespace with loopback only. The
	// bridge rows below say what the default network and a published
	// port cost on top of it.
	berthRun := &runSeries{name: "berth run --rm --network none"}
	runcRoot := filepath.Join(work, "runc-root")
	runcRun := &runSeries{name: "runc run (berth bundle)", base: berthRun}
	runners := []runner{
		{series: berthRun, argv: func(int) []string {
			return []string{berthBin, "run", "--rm", "--network", "none", "--state", state, ref, "/bin/true"}
		}},
		{series: &runSeries{name: "  with the bridge network", base: berthRun}, argv: func(int) []string {
			return []string{berthBin, "run", "--rm", "--state", state, ref, "/bin/true"}
		}},
		{series: &runSeries{name: "  bridge + -p 127.0.0.1::80", base: berthRun}, argv: func(int) []string {
			return []string{berthBin, "run", "--rm", "-p", "127.0.0.1::80", "--state", state, ref, "/bin/true"}
		}},
		{series: runcRun, argv: func(n int) []string {
			return []string{"runc", "--root", runcRoot, "run", "--bundle", bundle, id("runc", n)}
		}, after: func(n int) { exec.Command("runc", "--root", runcRoot, "delete", "--force", id("runc", n)).Run() }},
	}
	crunArgv, notes, err := crunCommand(ctx, work, bundle)
	if err != nil {
		notes = append(notes, "crun left out: "+err.Error())
	} else if crunArgv != nil {
		crunRoot := filepath.Join(work, "crun-root")
		crunRun := &runSeries{name: "crun run (berth bundle)", base: berthRun}
		runners = append(runners, runner{series: crunRun, argv: func(n int) []string {
			return append(slices.Clone(crunArgv), "--root", crunRoot, "run", "--bundle", filepath.Join(work, "bundle-crun"), id("crun", n))
		}, after: func(n int) {
			argv := append(slices.Clone(crunArgv), "--root", crunRoot, "delete", "--force", id("crun", n))
			exec.Command(argv[0], argv[1:]...).Run()
		}})
		if crunArgv[0] != "crun" { // wrapped: measure the wrapper alone too
			wrapper := slices.Clone(crunArgv[:len(crunArgv)-1])
			runners = append(runners, runner{series: &runSeries{name: "  its wrapper alone (exec true)"},
				argv: func(int) []string { return append(slices.Clone(wrapper), "true") }})
		}
	}
	// One untimed round first: binaries and the rootfs into the cache.
	for rep := -1; rep < reps; rep++ {
		for i := range runners {
			r := runners[(i+max(rep, 0))%len(runners)]
			wall, cpu, err := timedRun(ctx, r.argv(rep+1)...)
			if r.after != nil {
				r.after(rep + 1)
			}
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", r.series.name, err)
			}
			if rep >= 0 {
				r.series.add(wall, cpu)
			}
		}
	}
	var all []*runSeries
	for _, r := range runners {
		all = append(all, r.series)
	}
	return all, notes, nil
}

// crunCommand returns the argv prefix that runs crun on a copy of bundle's
// config.json (bundle-crun/, rootfs by absolute path), nil if crun is not
// installed, and notes on what had to change for it to run here: crun 1.8
// (Debian 12) refuses ociVersion other than 1.0.x, and any cgroup hybrid
// host whose cgroup2 mount has controllers, where it is run in a mount
// namespace with that mount removed.
func crunCommand(ctx context.Context, work, bundle string) ([]string, []string, error) {
	if _, err := exec.LookPath("crun"); err != nil {
		return nil, []string{"crun not installed: no crun row"}, nil
	}
	var cfg map[string]any
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, nil, err
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, nil, err
	}
	cfg["root"].(map[string]any)["path"] = filepath.Join(bundle, "rootfs")
	dir := filepath.Join(work, "bundle-crun")
	write := func() error {
		b, err := json.Marshal(cfg)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644)
	}
	if err := write(); err != nil {
		return nil, nil, err
	}
	argv := []string{"crun"}
	var notes []string
	root := filepath.Join(work, "crun-probe")
	for attempt := 0; attempt < 3; attempt++ {
		out, err := runCmd(ctx, append(slices.Clone(argv), "--root", root, "run", "--bundle", dir, "probe")...)
		exec.Command("crun", "--root", root, "delete", "--force", "probe").Run()
		switch {
		case err == nil:
			return argv, notes, nil
		case strings.Contains(out, "unknown version specified"):
			notes = append(notes, fmt.Sprintf("crun refuses ociVersion %v (crun 1.8 takes 1.0.x only): its copy of config.json says 1.0.2", cfg["ociVersion"]))
			cfg["ociVersion"] = "1.0.2"
			if err := write(); err != nil {
				return nil, nil, err
			}
		case strings.Contains(out, "hybrid mode not supported") && argv[0] == "crun":
			notes = append(notes, "crun refuses this cgroup v1+v2 hybrid host: it runs in a new mount namespace without "+
				"/sys/fs/cgroup/unified (unshare -m + sh + umount, timed in its row and alone in the next)")
			argv = []string{"unshare", "--mount", "--propagation", "private", "sh", "-c",
				`umount /sys/fs/cgroup/unified && exec "$@"`, "sh", "crun"}
		default:
			return nil, notes, fmt.Errorf("%v", err)
		}
	}
	return nil, notes, errors.New("crun still fails after the workarounds")
}

// coldPulls times berth pull against skopeo copy + umoci unpack of ref,
// each into fresh directories after dropping the caches. It also returns
// the image's compressed size.
func coldPulls(ctx context.Context, berthBin, work, images, ref string, reps int) ([]*runSeries, int64, []string, error) {
	layout := filepath.Join(images, "debian")
	layers, err := layoutLayers(layout)
	if err != nil {
		return nil, 0, nil, err
	}
	var size int64
	for _, l := range layers {
		size += l.Size
	}
	var notes []string
	umoci := true
	if _, err := exec.LookPath("umoci"); err != nil {
		umoci = false
		notes = append(notes, "umoci not installed: the second tool is skopeo copy + tar -x of each layer in order (no whiteout handling)")
	}
	unpackName := "umoci unpack"
	if !umoci {
		unpackName = "tar -x of the layers"
	}
	berthPull := &runSeries{name: "berth pull"}
	other := &runSeries{name: "skopeo copy + " + unpackName, base: berthPull}
	copyOnly := &runSeries{name: "  skopeo copy"}
	unpackOnly := &runSeries{name: "  " + unpackName}
	berthSync := &runSeries{name: "berth pull, then sync"}
	otherSync := &runSeries{name: "skopeo + " + strings.Fields(unpackName)[0] + ", then sync", base: berthSync}

	// Every run's directories stay until the end: on ext4 without a
	// journal, creating inodes within a minute of deleting many (up to six
	// when the deletions are not yet written back) skips over each recently
	// freed one, which made every run pay for the cleanup of the one before.
	defer func() {
		for rep := 0; rep < reps; rep++ {
			os.RemoveAll(filepath.Join(work, fmt.Sprintf("pull-%d", rep)))
		}
	}()
	for rep := 0; rep < reps; rep++ {
		dir := filepath.Join(work, fmt.Sprintf("pull-%d", rep))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, 0, nil, err
		}
		doBerth := func() error {
			state := filepath.Join(dir, "berth-state")
			dropCaches()
			wall, cpu, err := timedRun(ctx, berthBin, "pull", "--quiet", "--state", state, ref)
			if err != nil {
				return fmt.Errorf("berth pull: %w", err)
			}
			s := timedSync()
			berthPull.add(wall, cpu)
			berthSync.add(wall+s, cpu)
			return nil
		}
		doOther := func() error {
			oci, bundle := filepath.Join(dir, "oci"), filepath.Join(dir, "bundle")
			dropCaches()
			cw, cc, err := timedRun(ctx, "skopeo", "--insecure-policy", "copy", "--src-tls-verify=false",
				"docker://"+ref, "oci:"+oci+":latest")
			if err != nil {
				return fmt.Errorf("skopeo copy: %w", err)
			}
			var uw, uc time.Duration
			if umoci {
				uw, uc, err = timedRun(ctx, "umoci", "unpack", "--image", oci+":latest", bundle)
			} else {
				uw, uc, err = tarUnpack(ctx, oci, filepath.Join(bundle, "rootfs"))
			}
			if err != nil {
				return fmt.Errorf("%s: %w", unpackName, err)
			}
			s := timedSync()
			copyOnly.add(cw, cc)
			unpackOnly.add(uw, uc)
			other.add(cw+uw, cc+uc)
			otherSync.add(cw+uw+s, cc+uc)
			return nil
		}
		steps := []func() error{doBerth, doOther}
		if rep%2 == 1 {
			slices.Reverse(steps)
		}
		for _, step := range steps {
			if err := step(); err != nil {
				return nil, 0, nil, err
			}
		}
		fmt.Printf("bench: pull+unpack run %d: berth %.2fs, skopeo+%s %.2fs\n", rep+1,
			berthPull.wall[rep].Seconds(), strings.Fields(unpackName)[0], other.wall[rep].Seconds())
	}
	notes = append(notes, "berth pull syncs each unpacked layer before recording it; the \"then sync\" rows add a sync(2) after each tool")
	return []*runSeries{berthPull, other, copyOnly, unpackOnly, berthSync, otherSync}, size, notes, nil
}

// runDescriptor is the part of an OCI descriptor the case reads.
type runDescriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

// layoutLayers returns the layers of the image tagged in an OCI layout's
// index.json (one single-platform manifest).
func layoutLayers(layout string) ([]runDescriptor, error) {
	blob := func(d string) string { return filepath.Join(layout, "blobs", strings.Replace(d, ":", "/", 1)) }
	var idx struct{ Manifests []runDescriptor }
	b, err := os.ReadFile(filepath.Join(layout, "index.json"))
	if err == nil {
		err = json.Unmarshal(b, &idx)
	}
	if err != nil || len(idx.Manifests) != 1 {
		return nil, fmt.Errorf("%s/index.json: want one manifest: %v", layout, err)
	}
	var m struct{ Layers []runDescriptor }
	if b, err = os.ReadFile(blob(idx.Manifests[0].Digest)); err == nil {
		err = json.Unmarshal(b, &m)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: manifest: %v", layout, err)
	}
	return m.Layers, nil
}

// tarUnpack extracts the layers of the layout's image into rootfs in order
// with tar, the stand-in for umoci unpack when umoci is missing.
func tarUnpack(ctx context.Context, layout, rootfs string) (wall, cpu time.Duration, err error) {
	layers, err := layoutLayers(layout)
	if err != nil {
		return 0, 0, err
	}
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		return 0, 0, err
	}
	for _, l := range layers {
		w, c, err := timedRun(ctx, "tar", "-xpf", filepath.Join(layout, "blobs", strings.Replace(l.Digest, ":", "/", 1)),
			"-C", rootfs, "--numeric-owner")
		if err != nil {
			return 0, 0, err
		}
		wall, cpu = wall+w, cpu+c
	}
	return wall, cpu, nil
}

// caseInputs is what the runner cases start from: the tools must be on
// PATH (hint says how to install them), berthBin is made absolute, and the
// harness's test images are built (or found in their cache).
func caseInputs(ctx context.Context, berthBin, hint string, tools ...string) (bin, images string, err error) {
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			return "", "", fmt.Errorf("%s not found (%s)", tool, hint)
		}
	}
	if bin, err = filepath.Abs(berthBin); err != nil {
		return "", "", err
	}
	images, err = runTestImages(ctx, *runHarness)
	return bin, images, err
}

// runTestImages returns the directory of the harness's test image layouts,
// building them into the cache the integration tests use (the same
// directory, lock and build-then-rename steps as integration/images_test.go)
// when busybox or debian is missing there.
func runTestImages(ctx context.Context, harness string) (string, error) {
	script := filepath.Join(harness, "make-test-images.sh")
	src, err := os.ReadFile(script)
	if err != nil {
		return "", fmt.Errorf("test images: %w (set -harness or BERTH_HARNESS)", err)
	}
	sum := sha256.Sum256(src)
	root := imagesCache()
	dir := filepath.Join(root, hex.EncodeToString(sum[:])[:16])
	have := func() bool {
		for _, name := range []string{"busybox", "debian"} {
			if _, err := os.Stat(filepath.Join(dir, name, "index.json")); err != nil {
				return false
			}
		}
		return true
	}
	if have() {
		return dir, nil
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(root, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if have() {
		return dir, nil
	}
	// All four images, as the tests expect to find them in this directory.
	fmt.Printf("bench: building the test images into %s (debootstrap: minutes)\n", dir)
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if out, err := runCmd(ctx, script, tmp); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("%s: %w\n%s", script, err, out)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	return dir, nil
}

// imagesCache is the test image cache root, as integration/images_test.go
// computes it.
func imagesCache() string {
	if d := os.Getenv("BERTH_TEST_IMAGES_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("OCI_HARNESS_CACHE"); d != "" {
		return filepath.Join(d, "test-images")
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "oci-harness", "test-images")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "oci-harness", "test-images")
}

// timedRun runs argv with its output discarded unless it fails, and returns
// its wall time and the CPU time of it and the children it waited for.
func timedRun(ctx context.Context, argv ...string) (wall, cpu time.Duration, err error) {
	wall, cpu, _, err = timedRunRSS(ctx, argv...)
	return wall, cpu, err
}

// timedRunRSS is timedRun that also returns the peak resident set size in
// bytes of the command or of the largest of the children it waited for
// (getrusage's ru_maxrss, as time -v reports it).
func timedRunRSS(ctx context.Context, argv ...string) (wall, cpu time.Duration, rss int64, err error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	err = cmd.Run()
	wall = time.Since(start)
	if cmd.ProcessState != nil {
		cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			rss = ru.Maxrss << 10 // KiB on Linux
		}
	}
	if err != nil {
		return wall, cpu, rss, fmt.Errorf("%s: %v\n%s", strings.Join(argv, " "), err, lastLines(out.String(), 15))
	}
	return wall, cpu, rss, nil
}

// runCmd runs argv and returns its combined output.
func runCmd(ctx context.Context, argv ...string) (string, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %v\n%s", strings.Join(argv, " "), err, lastLines(string(out), 15))
	}
	return string(out), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// timedSync returns how long a sync(2) takes now.
func timedSync() time.Duration {
	start := time.Now()
	syscall.Sync()
	return time.Since(start)
}

func medianDuration(v []time.Duration) time.Duration {
	f := make([]float64, len(v))
	for i, d := range v {
		f[i] = float64(d)
	}
	return time.Duration(median(f))
}

// printRunTable prints each row's median and best wall time and median CPU
// time in unit (ms or s), and for a row with a base the ratios of the
// base's wall times to its.
func printRunTable(w io.Writer, rows []*runSeries, unit time.Duration) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	u, prec := "ms", 1
	if unit == time.Second {
		u, prec = "s", 2
	}
	width := 0
	for _, r := range rows {
		width = max(width, len(r.name))
	}
	val := func(d time.Duration) string { return strconv.FormatFloat(float64(d)/float64(unit), 'f', prec, 64) }
	withRSS := slices.ContainsFunc(rows, func(r *runSeries) bool { return len(r.rss) > 0 })
	header := fmt.Sprintf("%-*s\tmedian %s\tbest %s\tcpu median %s\tberth/this median\tbest/best\t", width, "", u, u, u)
	if withRSS {
		header += "peak RSS MiB\t"
	}
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		med, best := medianDuration(r.wall), slices.Min(r.wall)
		line := fmt.Sprintf("%-*s\t%s\t%s\t%s\t", width, r.name, val(med), val(best), val(medianDuration(r.cpu)))
		if r.base != nil {
			line += fmt.Sprintf("%.2f\t%.2f\t", berthOver(r), float64(slices.Min(r.base.wall))/float64(best))
		} else {
			line += "\t\t"
		}
		if len(r.rss) > 0 {
			line += fmt.Sprintf("%.0f\t", float64(slices.Max(r.rss))/(1<<20))
		} else if withRSS {
			line += "\t"
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
}

// berthOver is the median time of r's base (berth) over r's: below 1,
// berth is faster.
func berthOver(r *runSeries) float64 {
	return float64(medianDuration(r.base.wall)) / float64(medianDuration(r.wall))
}

func printRunSamples(w io.Writer, rows []*runSeries) {
	fmt.Fprintln(w, "\nsamples (ms):")
	for _, r := range rows {
		var s []string
		for _, d := range r.wall {
			s = append(s, strconv.FormatInt(d.Milliseconds(), 10))
		}
		fmt.Fprintf(w, "  %-34s %s\n", strings.TrimSpace(r.name), strings.Join(s, " "))
	}
}

// runcSeries is the runc row of the warm starts.
func runcSeries(warm []*runSeries) *runSeries {
	for _, r := range warm {
		if strings.HasPrefix(r.name, "runc ") {
			return r
		}
	}
	return warm[len(warm)-1]
}

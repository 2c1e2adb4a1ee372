package main

// The berth build case (-only build, and the last case of a full bench):
// "berth build" against "buildctl build" (a private buildkitd: the oci
// worker with runc and the overlayfs snapshotter, as the build oracle runs
// it) and "buildah bud" (Debian's; overlay storage, chroot isolation,
// --layers) of the same three Dockerfiles, FROM the harness's test images
// pushed to a berth serve on loopback:
//
//   - run-5000: debian, one RUN writing 5,000 small files;
//   - copy-50MiB: debian, a COPY of a 50 MiB context (2,306 files of mixed
//     sizes, half random and half text, generated once per bench run);
//   - multi-stage: stage 1 on debian makes a tree (generated files and a
//     copy of /usr/bin), the final stage on busybox takes it with COPY --from.
//
// Each tool builds each Dockerfile cold, then again with nothing changed
// (the no-change rebuild), -build-reps times after one untimed round, the
// tools taking turns. Each tool makes an image where it keeps its images:
// berth in its local store, buildkitd in its content store (an image
// output, not pushed), buildah in its containers-storage.
//
// Cold means nothing cached but the base images, made local to every tool
// before the timed build and not timed: berth gets a fresh state directory
// and "berth pull" of the bases; buildkitd's cache is emptied ("buildctl
// prune --all") and the bases fetched again by a build of "FROM base / RUN
// true"; buildah gets fresh storage and "buildah pull" of the bases. berth
// and buildah (--pull=false) then use the local image; buildkitd asks the
// registry for the manifest, as it does in every build (one request on
// loopback). Page caches stay warm.
//
// Peak memory: for berth and buildah, the largest ru_maxrss of the command
// and the children it waited for; for buildctl, buildkitd's peak RSS during
// the build (VmHWM, reset through /proc/PID/clear_refs just before) plus
// buildctl's own. buildctl's cpu adds buildkitd's CPU time during the build
// (its own and its reaped children's: runc and the RUN processes).

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berth-registry/berth/integration"
)

var (
	buildReps = flag.Int("build-reps", 3, "berth build case: cold builds and no-change rebuilds per tool and Dockerfile; 0 skips the case (unless -only build)")
	buildkitd = flag.String("buildkitd", envOr("BUILDKITD", toolPath("buildkitd")), "berth build case: the buildkitd binary (make buildkit)")
	buildctl  = flag.String("buildctl", envOr("BUILDCTL", toolPath("buildctl")), "berth build case: the buildctl binary (make buildkit)")
)

// toolPath is name in make's BERTH_TOOLS directory.
func toolPath(name string) string {
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "berth-tools", name)
}

// buildInput is one Dockerfile of the case and its context.
type buildInput struct {
	name, about string
	dockerfile  string   // its path (outside the context)
	context     string   // the context directory
	bases       []string // the images it builds FROM
}

// builder is one of the three tools.
type builder struct {
	name string
	// reset makes the cold state for in (untimed); n names the repetition.
	reset func(in buildInput, n string) error
	// build runs one timed build of in.
	build func(in buildInput) (wall, cpu time.Duration, rss int64, err error)
	cold  map[string]*runSeries // by input name
	again map[string]*runSeries
}

// buildCase measures berth build against buildctl build and buildah bud.
func buildCase(ctx context.Context, berthBin, dir string, reps int) error {
	if os.Geteuid() != 0 {
		fmt.Println("\nbench: berth build case skipped: it needs root (RUN containers, overlay mounts)")
		return nil
	}
	berthBin, images, err := caseInputs(ctx, berthBin,
		"make bench-build installs buildah, runc and skopeo with apt-get, and buildkitd and buildctl with make buildkit",
		"skopeo", "runc", "buildah", *buildkitd, *buildctl)
	if err != nil {
		return err
	}
	// A short path: buildkitd's socket and overlay mount options with
	// many lower directories must fit their limits.
	work, err := os.MkdirTemp("", "bb-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if err := os.Chmod(work, 0o755); err != nil {
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
	for _, name := range []string{"busybox", "debian"} {
		if _, err := runCmd(ctx, "skopeo", "--insecure-policy", "copy", "--preserve-digests", "--dest-tls-verify=false",
			"oci:"+filepath.Join(images, name)+":latest", "docker://"+srv.Host+"/bench/"+name+":latest"); err != nil {
			return fmt.Errorf("push %s: %w", name, err)
		}
	}
	inputs, ctxSize, err := writeBuildInputs(filepath.Join(work, "inputs"), srv.Host+"/bench/")
	if err != nil {
		return err
	}
	if err := os.Mkdir(filepath.Join(work, "bk"), 0o755); err != nil {
		return err
	}
	bk, err := integration.StartBuildKit(ctx, integration.BuildKitOptions{Buildkitd: *buildkitd, Buildctl: *buildctl,
		Dir: filepath.Join(work, "bk"), HTTPRegistries: []string{srv.Host}})
	if err != nil {
		return err
	}
	defer func() {
		if err := bk.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "bench: buildkitd: %v\n", err)
		}
	}()
	fmt.Printf("\nbench: berth build case: berth serve on %s, test images from %s, buildkitd %s (pid %d), %s\n",
		srv.Host, images, integration.BuildKitVersion, bk.Pid(), firstLine(runCmd(ctx, "buildah", "--version")))

	tools := []*builder{
		berthBuilder(ctx, berthBin, filepath.Join(work, "berth"), srv.Host),
		buildctlBuilder(ctx, bk, filepath.Join(work, "bk-warm"), srv.Host),
		buildahBuilder(ctx, filepath.Join(work, "buildah"), srv.Host),
	}
	berthTool := tools[0]
	for _, t := range tools {
		t.cold, t.again = map[string]*runSeries{}, map[string]*runSeries{}
		for _, in := range inputs {
			t.cold[in.name] = &runSeries{name: t.name + ", cold"}
			t.again[in.name] = &runSeries{name: t.name + ", rebuild"}
			if t != berthTool {
				t.cold[in.name].base = berthTool.cold[in.name]
				t.again[in.name].base = berthTool.again[in.name]
			}
		}
	}
	for _, in := range inputs {
		for rep := -1; rep < reps; rep++ {
			n := "warm"
			if rep >= 0 {
				n = strconv.Itoa(rep)
			}
			var line []string
			for i := range tools {
				t := tools[(i+max(rep, 0))%len(tools)]
				if err := t.reset(in, n); err != nil {
					return fmt.Errorf("%s: %s: cold state: %w", t.name, in.name, err)
				}
				wall, cpu, rss, err := t.build(in)
				if err != nil {
					return fmt.Errorf("%s: %s, cold: %w", t.name, in.name, err)
				}
				wall2, cpu2, rss2, err := t.build(in)
				if err != nil {
					return fmt.Errorf("%s: %s, rebuild: %w", t.name, in.name, err)
				}
				if rep >= 0 {
					t.cold[in.name].add(wall, cpu)
					t.cold[in.name].rss = append(t.cold[in.name].rss, rss)
					t.again[in.name].add(wall2, cpu2)
					t.again[in.name].rss = append(t.again[in.name].rss, rss2)
				}
				line = append(line, fmt.Sprintf("%s %.2fs/%.2fs", t.name, wall.Seconds(), wall2.Seconds()))
			}
			fmt.Printf("bench: build %s run %s (cold/rebuild): %s\n", in.name, n, strings.Join(line, ", "))
		}
	}

	fmt.Printf("\nberth build against buildctl build (buildkitd) and buildah bud, cold and no-change rebuild,\n")
	fmt.Printf("%d runs each, tools in turn (load after: %s); the 50 MiB context is %s in %d files\n",
		reps, loadavg(), sizeName(ctxSize.bytes), ctxSize.files)
	var all []*runSeries
	var coldT, againT []string
	for _, in := range inputs {
		var rows []*runSeries
		for _, t := range tools {
			rows = append(rows, t.cold[in.name])
		}
		for _, t := range tools {
			rows = append(rows, t.again[in.name])
		}
		fmt.Printf("\n%s: %s\n\n", in.name, in.about)
		printRunTable(os.Stdout, rows, time.Millisecond)
		for _, r := range rows {
			all = append(all, &runSeries{name: in.name + ": " + r.name, wall: r.wall})
		}
		coldT = append(coldT, overFaster(in.name, tools, func(t *builder) *runSeries { return t.cold[in.name] }))
		againT = append(againT, overFaster(in.name, tools, func(t *builder) *runSeries { return t.again[in.name] }))
	}
	fmt.Println("\nberth/this divides berth's time by the row's: below 1, berth is faster. cpu is user+system")
	fmt.Println("time of the command and the children it waited for, plus buildkitd's for buildctl. peak RSS")
	fmt.Println("is the largest of the runs: ru_maxrss of the command and its children; for buildctl,")
	fmt.Println("buildkitd's VmHWM during the build plus buildctl's. Cold: fresh state, base images local.")
	fmt.Println("Targets (medians, berth over the faster of buildctl and buildah): cold <= 0.5:")
	fmt.Printf("%s; rebuild <= 0.2: %s.\n", strings.Join(coldT, ", "), strings.Join(againT, ", "))
	printRunSamples(os.Stdout, all)
	return nil
}

// overFaster is "name ratio (tool)": berth's median over the smaller
// median of the other tools' rows that series picks.
func overFaster(name string, tools []*builder, series func(*builder) *runSeries) string {
	var fast *runSeries
	var fastName string
	for _, t := range tools[1:] {
		if s := series(t); fast == nil || medianDuration(s.wall) < medianDuration(fast.wall) {
			fast, fastName = s, t.name
		}
	}
	return fmt.Sprintf("%s %.2f (%s)", name, berthOver(fast), fastName)
}

func firstLine(s string, err error) string {
	if err != nil {
		return err.Error()
	}
	line, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(line)
}

// berthBuilder is berth build with a state directory per cold run.
func berthBuilder(ctx context.Context, berthBin, dir, registry string) *builder {
	var state string
	return &builder{
		name: "berth build",
		reset: func(in buildInput, n string) error {
			state = filepath.Join(dir, in.name+"-"+n)
			for _, base := range in.bases {
				if _, err := runCmd(ctx, berthBin, "pull", "--quiet", "--state", state, base); err != nil {
					return err
				}
			}
			return nil
		},
		build: func(in buildInput) (time.Duration, time.Duration, int64, error) {
			return timedRunRSS(ctx, berthBin, "build", "--state", state, "--progress", "plain",
				"-t", registry+"/out/"+strings.ToLower(in.name)+":latest", "-f", in.dockerfile, in.context)
		},
	}
}

// buildctlBuilder is buildctl build on bk, its cache pruned for each cold
// run; dir holds the Dockerfiles that fetch the bases again.
func buildctlBuilder(ctx context.Context, bk *integration.BuildKit, dir, registry string) *builder {
	return &builder{
		name: "buildctl build",
		reset: func(in buildInput, _ string) error {
			if _, err := runCmd(ctx, *buildctl, "--addr", bk.Addr, "prune", "--all"); err != nil {
				return err
			}
			for i, base := range in.bases {
				d := filepath.Join(dir, strconv.Itoa(i))
				if err := os.MkdirAll(d, 0o755); err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(d, "Dockerfile"), []byte("FROM "+base+"\nRUN true\n"), 0o644); err != nil {
					return err
				}
				if err := bk.Build(ctx, integration.BuildOptions{Context: d}); err != nil {
					return err
				}
			}
			return nil
		},
		build: func(in buildInput) (wall, cpu time.Duration, rss int64, err error) {
			pid := bk.Pid()
			if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
				return 0, 0, 0, fmt.Errorf("reset buildkitd's peak RSS: %w", err)
			}
			cpu0, err := procCPU(pid)
			if err != nil {
				return 0, 0, 0, err
			}
			argv := bk.BuildArgv(integration.BuildOptions{Context: in.context, Dockerfile: in.dockerfile,
				Outputs: []string{"type=image,name=" + registry + "/out/" + strings.ToLower(in.name) + ":latest"}})
			wall, cpu, rss, err = timedRunRSS(ctx, argv...)
			if err != nil {
				return wall, cpu, rss, err
			}
			cpu1, err := procCPU(pid)
			if err != nil {
				return 0, 0, 0, err
			}
			hwm, err := procHWM(pid)
			return wall, cpu + cpu1 - cpu0, rss + hwm, err
		},
	}
}

// buildahBuilder is buildah bud --layers with fresh storage (overlay, a
// root and runroot of its own) per cold run, chroot isolation, and the
// loopback registry insecure in a registries.conf of its own.
func buildahBuilder(ctx context.Context, dir, registry string) *builder {
	regs, policy := filepath.Join(dir, "registries.conf"), filepath.Join(dir, "policy.json")
	var global []string
	return &builder{
		name: "buildah bud",
		reset: func(in buildInput, n string) error {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(regs, []byte(fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n", registry)), 0o644); err != nil {
				return err
			}
			if err := os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644); err != nil {
				return err
			}
			d := filepath.Join(dir, in.name+"-"+n)
			global = []string{"buildah", "--root", filepath.Join(d, "root"), "--runroot", filepath.Join(d, "run"),
				"--storage-driver", "overlay", "--registries-conf", regs}
			for _, base := range in.bases {
				if _, err := runCmd(ctx, append(slices.Clone(global), "pull", "--quiet", "--signature-policy", policy, base)...); err != nil {
					return err
				}
			}
			return nil
		},
		build: func(in buildInput) (time.Duration, time.Duration, int64, error) {
			return timedRunRSS(ctx, append(slices.Clone(global), "bud", "--layers", "--isolation", "chroot",
				"--pull=false", "--signature-policy", policy, "--quiet",
				"-t", registry+"/out/"+strings.ToLower(in.name)+":latest", "-f", in.dockerfile, in.context)...)
		},
	}
}

// procCPU is a process's CPU time: user and system, its own and its
// reaped children's (/proc/PID/stat fields 14 to 17, in USER_HZ = 100).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which ends at the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 { // state is field 3, cstime field 17
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	var ticks int64
	for _, s := range f[11:15] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * (time.Second / 100), nil
}

// procHWM is a process's peak resident set size in bytes (VmHWM).
func procHWM(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmHWM", pid)
}

// contextSize is what writeBuildInputs generated for the COPY context.
type contextSize struct {
	bytes int64
	files int
}

// writeBuildInputs writes the case's Dockerfiles and contexts under dir;
// repo is the registry prefix of the test images ("HOST/bench/").
func writeBuildInputs(dir, repo string) ([]buildInput, contextSize, error) {
	debian, busybox := repo+"debian:latest", repo+"busybox:latest"
	inputs := []buildInput{
		{name: "run-5000", about: "FROM debian, RUN writing 5,000 small files", bases: []string{debian},
			dockerfile: "FROM " + debian + "\n" +
				`RUN mkdir /data && cd /data && i=0 && while [ $i -lt 5000 ]; do echo "file $i" > f$i; i=$((i+1)); done` + "\n"},
		{name: "copy-50MiB", about: "FROM debian, COPY of a 50 MiB context of mixed file sizes", bases: []string{debian},
			dockerfile: "FROM " + debian + "\nCOPY . /ctx/\n"},
		{name: "multi-stage", about: "a tree built on debian, COPY --from into a busybox final stage", bases: []string{debian, busybox},
			dockerfile: "FROM " + debian + " AS build\n" +
				`RUN mkdir -p /out/gen && i=0 && while [ $i -lt 300 ]; do seq 1 $((i*20)) > /out/gen/part$i; i=$((i+1)); done && cp -a /usr/bin /out/bin` + "\n" +
				"FROM " + busybox + "\nCOPY --from=build /out /app\nCMD [\"/bin/sh\"]\n"},
	}
	var size contextSize
	for i := range inputs {
		in := &inputs[i]
		df := filepath.Join(dir, "dockerfiles", in.name, "Dockerfile")
		in.context = filepath.Join(dir, "contexts", in.name)
		if err := os.MkdirAll(filepath.Dir(df), 0o755); err != nil {
			return nil, size, err
		}
		if err := os.MkdirAll(in.context, 0o755); err != nil {
			return nil, size, err
		}
		if err := os.WriteFile(df, []byte(in.dockerfile), 0o644); err != nil {
			return nil, size, err
		}
		in.dockerfile = df
		if in.name == "copy-50MiB" {
			var err error
			if size, err = writeMixedTree(in.context, 50<<20); err != nil {
				return nil, size, err
			}
		}
	}
	return inputs, size, nil
}

// writeMixedTree fills dir with about total bytes in 20 directories:
// 2,000 files of 1 to 16 KiB, 300 of 16 to 128 KiB, and files of 1 to 4
// MiB for the rest; every other file random, the others text. The same
// seed every time: the same tree.
func writeMixedTree(dir string, total int64) (contextSize, error) {
	rng := rand.New(rand.NewPCG(15, 50))
	noise := rand.NewChaCha8([32]byte{15})
	words := []string{"berth ", "build ", "layer ", "registry ", "image ", "context ", "\n"}
	var size contextSize
	write := func(n int64) error {
		b := make([]byte, n)
		if size.files%2 == 0 {
			noise.Read(b)
		} else {
			for i := 0; i < len(b); {
				i += copy(b[i:], words[rng.IntN(len(words))])
			}
		}
		sub := filepath.Join(dir, fmt.Sprintf("d%02d", size.files%20))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%04d", size.files)), b, 0o644); err != nil {
			return err
		}
		size.files++
		size.bytes += n
		return nil
	}
	for range 2000 {
		if err := write(1<<10 + rng.Int64N(15<<10)); err != nil {
			return size, err
		}
	}
	for range 300 {
		if err := write(16<<10 + rng.Int64N(112<<10)); err != nil {
			return size, err
		}
	}
	for size.bytes < total {
		if err := write(min(1<<20+rng.Int64N(3<<20), total-size.bytes)); err != nil {
			return size, err
		}
	}
	return size, nil
}

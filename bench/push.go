package main

// The berth push case (-only push, and a case of the full bench): "berth push"
// of the harness's debian test image from berth's local image store against
// "skopeo copy --preserve-digests" of the same image from its OCI layout, both
// to a berth started here on loopback.
//
//   - Cold: nothing on the server; each push goes to a fresh server (berth's
//     store holds the image under another registry's name, so nothing can be
//     mounted either), -push-reps times, the tools taking turns.
//   - Warm: everything on the server already: the same push again to one
//     server, which answers every blob HEAD with 200; only the manifest is
//     sent.
//
// Page caches stay warm (an untimed push of each tool comes first): the figure
// is the client's work and the protocol's round trips, not the disk.

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/berth-registry/berth/integration"
)

var pushReps = flag.Int("push-reps", 5, "berth push case: cold and warm pushes per tool; 0 skips the case (unless -only push)")

// pushCase measures berth push against skopeo copy, cold and warm.
func pushCase(ctx context.Context, berthBin, dir string, reps int) error {
	if os.Geteuid() != 0 {
		fmt.Println("\nbench: berth push case skipped: it needs root (berth's layer store, to pull the image first)")
		return nil
	}
	berthBin, images, err := caseInputs(ctx, berthBin, "make bench-run-tools installs it with apt-get", "skopeo")
	if err != nil {
		return err
	}
	layout := "oci:" + filepath.Join(images, "debian") + ":latest"
	work := filepath.Join(dir, "push")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	servers := 0
	startServer := func() (*integration.Server, func(), error) {
		servers++
		root := filepath.Join(work, fmt.Sprintf("server-%d", servers))
		if err := os.MkdirAll(root, 0o755); err != nil {
			return nil, nil, err
		}
		srv, err := integration.Start(ctx, integration.Options{Kind: integration.Berth, Binary: berthBin,
			Root: filepath.Join(root, "storage"), Dir: root, Quiet: true})
		if err != nil {
			return nil, nil, err
		}
		return srv, func() {
			if status, err := srv.Stop(); err != nil || status != "exit status 0" {
				fmt.Fprintf(os.Stderr, "bench: berth serve ended with %s %v; log:\n%s\n", status, err, srv.LogTail(20))
			}
			os.RemoveAll(root)
		}, nil
	}

	// berth's store gets the image by a pull from a seed server.
	seed, stopSeed, err := startServer()
	if err != nil {
		return err
	}
	defer stopSeed()
	seedRef := seed.Host + "/seed/debian:latest"
	if _, err := runCmd(ctx, "skopeo", "--insecure-policy", "copy", "--preserve-digests", "--dest-tls-verify=false",
		layout, "docker://"+seedRef); err != nil {
		return err
	}
	state := filepath.Join(work, "state")
	if _, err := runCmd(ctx, berthBin, "pull", "--quiet", "--state", state, seedRef); err != nil {
		return err
	}
	fmt.Printf("\nbench: berth push case: debian from %s, berth serve on loopback, fresh per cold push\n", images)

	berthPush := func(host string) []string {
		ref := host + "/bench/debian:latest"
		if _, err := runCmd(ctx, berthBin, "tag", "--state", state, seedRef, ref); err != nil {
			return []string{"false", err.Error()}
		}
		return []string{berthBin, "push", "--quiet", "--state", state, ref}
	}
	skopeoCopy := func(host string) []string {
		return []string{"skopeo", "--insecure-policy", "copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false",
			layout, "docker://" + host + "/bench/debian:latest"}
	}
	coldBerth := &runSeries{name: "berth push, cold"}
	coldSkopeo := &runSeries{name: "skopeo copy, cold", base: coldBerth}
	warmBerth := &runSeries{name: "berth push, warm"}
	warmSkopeo := &runSeries{name: "skopeo copy, warm", base: warmBerth}

	// Cold: a fresh server for every push; one untimed round first.
	type tool struct {
		series *runSeries
		argv   func(host string) []string
	}
	cold := []tool{{coldBerth, berthPush}, {coldSkopeo, skopeoCopy}}
	for rep := -1; rep < reps; rep++ {
		for i := range cold {
			t := cold[(i+max(rep, 0))%len(cold)]
			srv, stop, err := startServer()
			if err != nil {
				return err
			}
			argv := t.argv(srv.Host)
			wall, cpu, err := timedRun(ctx, argv...)
			stop()
			if err != nil {
				return fmt.Errorf("%s: %w", t.series.name, err)
			}
			if rep >= 0 {
				t.series.add(wall, cpu)
			}
		}
	}

	// Warm: one server that holds the image already.
	srv, stop, err := startServer()
	if err != nil {
		return err
	}
	defer stop()
	warm := []tool{{warmBerth, berthPush}, {warmSkopeo, skopeoCopy}}
	for rep := -1; rep < reps; rep++ {
		for i := range warm {
			t := warm[(i+max(rep, 0))%len(warm)]
			wall, cpu, err := timedRun(ctx, t.argv(srv.Host)...)
			if err != nil {
				return fmt.Errorf("%s: %w", t.series.name, err)
			}
			if rep >= 0 {
				t.series.add(wall, cpu)
			}
		}
	}

	rows := []*runSeries{coldBerth, coldSkopeo, warmBerth, warmSkopeo}
	fmt.Printf("\npush of debian, %d runs each, tools in turn (load after: %s)\n\n", reps, loadavg())
	printRunTable(os.Stdout, rows, time.Millisecond)
	fmt.Println("\nberth/this divides berth's time by skopeo's: below 1, berth is faster. cpu is user+system")
	fmt.Println("time of the command and the children it waited for.")
	fmt.Printf("Targets (medians): berth/skopeo <= 0.5: cold %.2f, warm %.2f.\n", berthOver(coldSkopeo), berthOver(warmSkopeo))
	printRunSamples(os.Stdout, rows)
	return nil
}

// Command bench measures blob push and pull throughput and manifest GET
// requests/s of berth next to CNCF Distribution v3 and Debian's
// docker-registry (Distribution 2.8.2), all started on loopback with
// filesystem storage under one temp dir, or of any one running registry
// (-target URL).
//
//	go run ./bench -berth bin/berth -distribution ~/.cache/berth-tools/registry
//	go run ./bench -target http://127.0.0.1:5000
//	go run ./bench -registries berth,docker-registry
//
// Figures: push of a SIZE random blob monolithically (POST, then one PUT
// ?digest= streamed from a file), the same in CHUNK PATCH requests, pulls
// of that blob (GET, body discarded), each repeated -reps times with a fresh
// digest (the file's last bytes change; the blob is deleted after each run);
// and manifest GET-by-tag requests/s with wrk, -conns connections, -rounds
// rounds of -duration each. Registries are measured in turn, never at once,
// in an order that rotates from one repetition (or round) to the next.
//
// Two baselines share the repetitions: "dd" writes the same file into the
// same directory as the registries' roots with dd conv=fdatasync, the
// physical limit of a durable push (the push/dd ratio); "http.FileServer"
// is Go's file server, in this program, serving berth's stored file of the
// blob it just pulled to the same client (the pull/FileServer ratio).
//
// With -cpuprofile DIR, berth writes a CPU profile of its whole run to
// DIR/berth.cpu.pprof and its allocations to DIR/berth.allocs.pprof when it
// stops (run it with -registries berth, and -reps 0 or -rounds 0, to
// profile one phase).
//
// With -versitygw BIN, a second, smaller table follows: the same transfers
// through berth on S3, a versitygw (posix backend, same machine, same disk)
// serving the bucket, once with blob GETs redirected to presigned URLs and
// once served through berth, -s3-reps times each.
//
// Then (bench/gc.go) "berth gc" against "docker-registry garbage-collect",
// both deleting untagged manifests, on fresh copies of one generated root of
// 2,000 images, cold, -gc-reps times each; -only gc runs that case alone:
//
//	go run ./bench -berth bin/berth -only gc
//
// Then (bench/proxy.go) a GET of a 1 GiB blob through berth's pull-through
// cache against docker-registry in proxy mode, both in front of one upstream
// berth: time to first byte and total, cold (fresh storage) and warm, and
// the same GET of the upstream's local content; -only proxy runs it alone.
//
// Then (bench/run.go) berth run and berth pull, and (bench/push.go) berth push
// of the debian test image against skopeo copy, cold and warm; -only run and
// -only push run those alone. Last (bench/build.go), berth build against
// buildctl build (buildkitd) and buildah bud of three Dockerfiles, cold and
// as a no-change rebuild; -only build runs it alone.
package main

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/berth-registry/berth/integration"
)

const repo = "bench/blob"

func main() {
	var (
		target     = flag.String("target", "", "benchmark only the registry at this URL (http://HOST:PORT); starts nothing")
		registries = flag.String("registries", "berth,distribution-v3,docker-registry", "registries to start and compare, in table order (berth first: the ratios are berth's over each other's)")
		berthBin   = flag.String("berth", "", "berth binary (default: build ./cmd/berth into the work dir)")
		drBin      = flag.String("docker-registry", "docker-registry", "docker-registry binary")
		distBin    = flag.String("distribution", "registry", "CNCF Distribution v3 binary (cmd/registry, make bench installs it)")
		dir        = flag.String("dir", "", "work dir for the blob file and the storage roots (default: a new temp dir, removed at exit)")
		sizeMiB    = flag.Int64("size-mib", 512, "blob size in MiB")
		chunkMiB   = flag.Int64("chunk-mib", 64, "PATCH chunk size in MiB")
		reps       = flag.Int("reps", 5, "repetitions of each transfer (median and best reported)")
		pulls      = flag.Int("pulls", 5, "pulls of the blob per repetition")
		ddBase     = flag.Bool("dd", true, "write the blob with dd conv=fdatasync beside the registries, in turn with them (the push/dd ratio)")
		duration   = flag.Duration("duration", 5*time.Second, "manifest GET load duration of one round")
		rounds     = flag.Int("rounds", 4, "manifest GET rounds per registry (in turn)")
		conns      = flag.Int("conns", 16, "manifest GET connections")
		limit      = flag.Duration("timeout", 30*time.Minute, "give up after this long")
		vgwBin     = flag.String("versitygw", "", "versitygw binary: also measure berth on S3 (needs berth among -registries)")
		s3Reps     = flag.Int("s3-reps", 2, "repetitions of each transfer through berth on S3")
		only       = flag.String("only", "", "run only this case: gc (berth gc against docker-registry garbage-collect), run (berth run and pull against runc, crun, skopeo + umoci), proxy (a blob GET through berth's pull-through cache against docker-registry's proxy mode), push (berth push against skopeo copy), ui (the web UI's pages over 1,000 repositories and 10,000 tags), zb (zot's benchmark against berth, with its peak memory), build (berth build against buildctl build and buildah bud), gc-root (only write the gc case's generated root to -dir, for profiling a collection by hand)")
		gcReps     = flag.Int("gc-reps", 3, "repetitions of each collection in the gc case; 0 skips it (unless -only gc)")
		profileDir = flag.String("cpuprofile", "", "berth writes its CPU and allocation profiles into this `DIR`")
	)
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), *limit)
	defer cancel()
	b := &bench{size: *sizeMiB << 20, chunk: *chunkMiB << 20, reps: *reps, pulls: max(*pulls, 1), dd: *ddBase,
		duration: *duration, rounds: *rounds, conns: *conns,
		versitygw: *vgwBin, s3Reps: *s3Reps, gcReps: *gcReps, profileDir: *profileDir}
	var err error
	switch *only {
	case "":
		err = b.run(ctx, *target, *registries, *berthBin, *drBin, *distBin, *dir)
	case "gc":
		err = runAlone(ctx, *berthBin, *dir, func(bin, dir string) error { return runGC(ctx, bin, *drBin, dir, b.gcReps) })
	case "run":
		if os.Geteuid() != 0 {
			err = errors.New("the berth run case needs root (layer store, namespaces, drop_caches)")
			break
		}
		err = runAlone(ctx, *berthBin, *dir, func(bin, dir string) error {
			return runCase(ctx, bin, dir, max(*runReps, 1), max(*pullReps, 1))
		})
	case "push":
		err = runAlone(ctx, *berthBin, *dir, func(bin, dir string) error { return pushCase(ctx, bin, dir, max(*pushReps, 1)) })
	case "build":
		err = runAlone(ctx, *berthBin, *dir, func(bin, dir string) error { return buildCase(ctx, bin, dir, max(*buildReps, 1)) })
	case "proxy":
		err = runAlone(ctx, *berthBin, *dir, func(bin, dir string) error {
			return proxyCase(ctx, bin, *drBin, dir, max(*proxyReps, 1), *proxySizeMiB<<20)
		})
	case "ui":
		err = runAlone(ctx, *berthBin, *dir, func(bin, dir string) error { return uiCase(ctx, bin, dir, 9, b.profileDir) })
	case "zb":
		err = runAlone(ctx, *berthBin, *dir, func(bin, dir string) error { return zbCase(ctx, bin, dir, max(*zbRuns, 1)) })
	case "gc-root":
		err = writeGCRootOnly(*dir)
	default:
		err = fmt.Errorf("-only %q: want gc, proxy, run, push, build, ui, zb or gc-root", *only)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type bench struct {
	size, chunk int64
	reps        int
	pulls       int  // pulls per repetition
	dd          bool // the dd baseline
	duration    time.Duration
	rounds      int
	conns       int
	versitygw   string // "": no S3 table
	s3Reps      int
	gcReps      int    // 0: no gc case
	profileDir  string // "": berth is not profiled

	file   string        // the blob, size bytes; its last 16 bytes change per run
	chunks []string      // the blob cut in chunk-size files, for the chunked push
	prefix []byte        // marshalled sha256 state after all but the last 16 bytes
	rng    *rand.ChaCha8 // random bytes for the file and the tails
	client *http.Client
	dir    string // where the registries' roots are, and dd writes
	// fileServer is the URL of an http.FileServer over berth's storage
	// root ("" if none).
	fileServer string
}

// The baselines' names in the tables.
const (
	ddName         = "dd"
	fileServerName = "http.FileServer"
)

type target struct {
	name string
	url  string
	root string // filesystem storage root; "" if unknown
}

// figure is one row of the table: name, unit and the samples per target.
type figure struct {
	name, unit string
	samples    map[string][]float64
}

func newFigure(name, unit string) *figure {
	return &figure{name: name, unit: unit, samples: map[string][]float64{}}
}

func (b *bench) run(ctx context.Context, targetURL, registries, berthBin, drBin, distBin, dir string) error {
	if _, err := exec.LookPath("wrk"); err != nil {
		return errors.New("wrk not found (make bench installs it: apt-get install wrk)")
	}
	if dir == "" {
		d, err := os.MkdirTemp("", "berth-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	b.dir = dir
	fmt.Printf("bench: %d cores, load before: %s\n", runtime.NumCPU(), loadavg())
	start := time.Now()

	var targets []target
	if targetURL != "" {
		u := strings.TrimRight(targetURL, "/")
		if !strings.Contains(u, "://") {
			u = "http://" + u
		}
		targets = append(targets, target{name: u, url: u})
		b.dd = false
	} else {
		for _, kind := range strings.Split(registries, ",") {
			o := integration.Options{Kind: kind, Driver: integration.Filesystem,
				Root: filepath.Join(dir, kind+"-root"), Dir: dir, Quiet: true}
			switch kind {
			case integration.Berth:
				if berthBin == "" {
					bin, err := integration.BuildBerth(ctx, ".", dir)
					if err != nil {
						return err
					}
					berthBin = bin
				}
				o.Binary = berthBin
				if b.profileDir != "" {
					pd, err := filepath.Abs(b.profileDir)
					if err != nil {
						return err
					}
					o.Args = []string{"--cpuprofile", filepath.Join(pd, "berth.cpu.pprof"),
						"--memprofile", filepath.Join(pd, "berth.allocs.pprof")}
				}
			case integration.DockerRegistry:
				o.Binary = drBin
			case integration.DistributionV3:
				version, err := distributionVersion(distBin)
				if err != nil {
					return err
				}
				fmt.Printf("bench: %s is distribution %s\n", distBin, version)
				o.Binary = distBin
			default:
				return fmt.Errorf("unknown registry %q (berth, distribution-v3, docker-registry)", kind)
			}
			srv, err := integration.Start(ctx, o)
			if err != nil {
				return err
			}
			defer func() {
				if status, err := srv.Stop(); err != nil {
					fmt.Fprintf(os.Stderr, "bench: %v\n", err)
				} else if status != "exit status 0" && kind == integration.Berth {
					fmt.Fprintf(os.Stderr, "bench: berth ended with %s; log:\n%s\n", status, srv.LogTail(20))
				}
			}()
			fmt.Printf("bench: %s on %s (storage %s)\n", kind, srv.URL, o.Root)
			targets = append(targets, target{name: kind, url: srv.URL, root: o.Root})
			if kind == integration.Berth {
				stop, err := b.startFileServer(o.Root)
				if err != nil {
					return err
				}
				defer stop()
			}
		}
	}

	b.client = &http.Client{Transport: &http.Transport{
		DisableCompression: true, MaxIdleConnsPerHost: 4,
		WriteBufferSize: 256 << 10, ReadBufferSize: 256 << 10,
	}}
	if err := b.makeFile(filepath.Join(dir, "blob")); err != nil {
		return err
	}
	defer b.removeFiles()

	sz := sizeName(b.size)
	mono := newFigure("push "+sz+" monolithic (POST + PUT)", "MiB/s")
	chunked := newFigure(fmt.Sprintf("push %s in %s PATCH chunks", sz, sizeName(b.chunk)), "MiB/s")
	pull := newFigure("pull "+sz+" (GET)", "MiB/s")
	manifests := newFigure(fmt.Sprintf("manifest GET by tag, %d conns", b.conns), "req/s")

	if err := b.repeatTransfers(ctx, b.reps, targets, b.dd, mono, chunked, pull); err != nil {
		return err
	}
	if err := b.manifestRounds(ctx, targets, manifests); err != nil {
		return err
	}

	columns := names(targets)
	if b.dd {
		columns = append(columns, ddName)
	}
	if b.fileServer != "" {
		columns = append(columns, fileServerName)
	}
	fmt.Println()
	printTable(os.Stdout, columns, []*figure{mono, chunked, pull, manifests})
	fmt.Println("\nThe first table shows medians; the second, berth's median over the other's median, and in")
	fmt.Println("brackets berth's best run over the other's best. dd: the same file written into the same")
	fmt.Println("directory by dd conv=fdatasync, the limit of a durable push on this disk. http.FileServer:")
	fmt.Println("Go's file server sending berth's stored file of the same blob to the same client. On a")
	fmt.Println("virtual machine that hands freed memory back to its hypervisor (free page reporting), a write")
	fmt.Println("into pages the guest no longer holds pays for them, so push samples can be bimodal.")

	if b.versitygw != "" && targetURL == "" {
		if !slices.Contains(strings.Split(registries, ","), integration.Berth) {
			return errors.New("-versitygw needs berth among -registries")
		}
		if err := b.runS3(ctx, berthBin, dir); err != nil {
			return fmt.Errorf("berth on S3: %w", err)
		}
	}
	if kinds := strings.Split(registries, ","); b.gcReps > 0 && targetURL == "" &&
		slices.Contains(kinds, integration.Berth) && slices.Contains(kinds, integration.DockerRegistry) {
		if err := runGC(ctx, berthBin, drBin, dir, b.gcReps); err != nil {
			return fmt.Errorf("gc: %w", err)
		}
	}
	if kinds := strings.Split(registries, ","); *proxyReps > 0 && targetURL == "" &&
		slices.Contains(kinds, integration.Berth) && slices.Contains(kinds, integration.DockerRegistry) {
		if err := proxyCase(ctx, berthBin, drBin, dir, *proxyReps, *proxySizeMiB<<20); err != nil {
			return fmt.Errorf("proxy: %w", err)
		}
	}
	if targetURL == "" && slices.Contains(strings.Split(registries, ","), integration.Berth) {
		if err := uiCase(ctx, berthBin, dir, 9, b.profileDir); err != nil {
			return fmt.Errorf("ui: %w", err)
		}
	}
	if *zbRuns > 0 && targetURL == "" && slices.Contains(strings.Split(registries, ","), integration.Berth) {
		if err := zbCase(ctx, berthBin, dir, *zbRuns); err != nil {
			return fmt.Errorf("zb: %w", err)
		}
	}
	if *runReps > 0 && targetURL == "" && slices.Contains(strings.Split(registries, ","), integration.Berth) {
		if err := runCase(ctx, berthBin, dir, *runReps, max(*pullReps, 1)); err != nil {
			return fmt.Errorf("berth run: %w", err)
		}
	}
	if *pushReps > 0 && targetURL == "" && slices.Contains(strings.Split(registries, ","), integration.Berth) {
		if err := pushCase(ctx, berthBin, dir, *pushReps); err != nil {
			return fmt.Errorf("berth push: %w", err)
		}
	}
	if *buildReps > 0 && targetURL == "" && slices.Contains(strings.Split(registries, ","), integration.Berth) {
		if err := buildCase(ctx, berthBin, dir, *buildReps); err != nil {
			return fmt.Errorf("berth build: %w", err)
		}
	}
	fmt.Printf("\nbench: load after: %s; took %.0fs\n", loadavg(), time.Since(start).Seconds())
	return nil
}

// distributionVersion returns the module version of the Distribution v3
// binary bin, read from its build information, and fails unless it is a v3
// release.
func distributionVersion(bin string) (string, error) {
	path, err := exec.LookPath(bin)
	if err != nil {
		return "", fmt.Errorf("distribution v3: %w (make bench installs it)", err)
	}
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("distribution v3: %s: %w", path, err)
	}
	if info.Main.Path != "github.com/distribution/distribution/v3" || !strings.HasPrefix(info.Main.Version, "v3.") {
		return "", fmt.Errorf("distribution v3: %s is %s %s, not a v3 release of github.com/distribution/distribution/v3",
			path, info.Main.Path, info.Main.Version)
	}
	return info.Main.Version, nil
}

// startFileServer serves root with Go's http.FileServer on a loopback port
// and sets b.fileServer; it returns the function that stops it.
func (b *bench) startFileServer(root string) (func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(root)), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	b.fileServer = "http://" + ln.Addr().String()
	fmt.Printf("bench: %s on %s (berth's storage)\n", fileServerName, b.fileServer)
	return func() { _ = srv.Close() }, nil
}

func names(targets []target) []string {
	var n []string
	for _, t := range targets {
		n = append(n, t.name)
	}
	return n
}

// runS3 measures the transfers through berth on S3: a versitygw on loopback
// serves one bucket to two berths, one redirecting blob GETs to presigned
// URLs and one serving them, each under its own prefix.
func (b *bench) runS3(ctx context.Context, berthBin, dir string) error {
	var secret [16]byte
	if _, err := crand.Read(secret[:]); err != nil {
		return err
	}
	keys := integration.S3Options{Bucket: "bench", AccessKey: "berthbench", SecretKey: hex.EncodeToString(secret[:])}
	gwDir := filepath.Join(dir, "versitygw")
	if err := os.MkdirAll(gwDir, 0o755); err != nil {
		return err
	}
	gw, err := integration.Start(ctx, integration.Options{Kind: integration.VersityGW, Binary: b.versitygw,
		Root: filepath.Join(gwDir, "root"), Dir: gwDir, S3: keys})
	if err != nil {
		return err
	}
	defer gw.Stop()
	fmt.Printf("\nbench: versitygw on %s (posix, %s)\n", gw.URL, filepath.Join(gwDir, "root"))

	var targets []target
	for _, redirect := range []bool{true, false} {
		name, prefix := "s3, redirect", "s3-redirect"
		if !redirect {
			name, prefix = "s3, no redirect", "s3-no-redirect"
		}
		o := integration.Options{Kind: integration.Berth, Binary: berthBin, Driver: integration.S3,
			Dir: filepath.Join(dir, prefix), Quiet: true, S3: keys}
		o.S3.Endpoint, o.S3.Prefix, o.S3.Redirect = gw.URL, prefix, redirect
		if err := os.MkdirAll(o.Dir, 0o755); err != nil {
			return err
		}
		srv, err := integration.Start(ctx, o)
		if err != nil {
			return err
		}
		defer func() {
			if status, err := srv.Stop(); err != nil || status != "exit status 0" {
				fmt.Fprintf(os.Stderr, "bench: berth (%s) ended with %s %v; log:\n%s\n", name, status, err, srv.LogTail(20))
			}
		}()
		fmt.Printf("bench: berth (%s) on %s, prefix %s\n", name, srv.URL, o.S3.Prefix)
		targets = append(targets, target{name: name, url: srv.URL})
	}

	sz := sizeName(b.size)
	mono := newFigure("push "+sz+" monolithic (POST + PUT)", "MiB/s")
	chunked := newFigure(fmt.Sprintf("push %s in %s PATCH chunks", sz, sizeName(b.chunk)), "MiB/s")
	pull := newFigure("pull "+sz+" (GET, redirect followed)", "MiB/s")
	if err := b.repeatTransfers(ctx, b.s3Reps, targets, false, mono, chunked, pull); err != nil {
		return err
	}
	fmt.Println()
	printTable(os.Stdout, names(targets), []*figure{mono, chunked, pull})
	fmt.Println("\nBerth on S3: versitygw's posix backend on the same disk and cores; redirect only changes")
	fmt.Println("pulls (the client fetches the presigned URL from versitygw), pushes are the same path twice.")
	return nil
}

// repeatTransfers runs the transfers reps times for every target, and with
// dd the dd baseline with them. Each repetition goes through them all in turn, in
// an order that rotates from one repetition to the next, so that no one
// always runs right after another: drift in the machine's state (page
// cache, other load) is shared.
func (b *bench) repeatTransfers(ctx context.Context, reps int, targets []target, dd bool, mono, chunked, pull *figure) error {
	type step struct {
		t  target
		dd bool
	}
	var steps []step
	for _, t := range targets {
		steps = append(steps, step{t: t})
	}
	if dd {
		steps = append(steps, step{dd: true})
	}
	for rep := 1; rep <= reps; rep++ {
		k := (rep - 1) % len(steps)
		order := append(slices.Clone(steps[k:]), steps[:k]...)
		for _, s := range order {
			var err error
			if s.dd {
				err = b.ddRun(rep, mono, chunked)
			} else if err = b.transfers(ctx, s.t, rep, mono, chunked, pull); err != nil {
				err = fmt.Errorf("%s: %w", s.t.name, err)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func (b *bench) transfers(ctx context.Context, t target, rep int, mono, chunked, pull *figure) error {
	mib := float64(b.size) / (1 << 20)
	// monolithic
	dgst, err := b.freshDigest()
	if err != nil {
		return err
	}
	d, err := b.timed(true, []string{b.file}, func() error { return b.pushMonolithic(ctx, t.url, dgst) })
	if err != nil {
		return fmt.Errorf("monolithic push: %w", err)
	}
	mono.samples[t.name] = append(mono.samples[t.name], mib/d.Seconds())
	b.deleteBlob(ctx, t, dgst)
	// chunked, then pull that blob
	if dgst, err = b.freshDigest(); err != nil {
		return err
	}
	dc, err := b.timed(true, b.chunks, func() error { return b.pushChunked(ctx, t.url, dgst) })
	if err != nil {
		return fmt.Errorf("chunked push: %w", err)
	}
	chunked.samples[t.name] = append(chunked.samples[t.name], mib/dc.Seconds())
	// The pulls, and for berth those of its stored file through
	// http.FileServer, alternating (which goes first alternates too).
	type source struct{ name, url string }
	sources := []source{{t.name, t.url + "/v2/" + repo + "/blobs/" + dgst}}
	if t.name == integration.Berth && b.fileServer != "" {
		sources = append(sources, source{fileServerName, b.fileServer + blobFile(dgst)})
		if rep%2 == 0 {
			slices.Reverse(sources)
		}
	}
	var dp time.Duration
	for range b.pulls {
		for _, src := range sources {
			d, err := b.timed(false, nil, func() error { return b.pull(ctx, src.url) })
			if err != nil {
				return fmt.Errorf("pull from %s: %w", src.name, err)
			}
			pull.samples[src.name] = append(pull.samples[src.name], mib/d.Seconds())
			if src.name == t.name {
				dp = max(dp, d)
			}
		}
	}
	b.deleteBlob(ctx, t, dgst)
	fmt.Printf("bench: %-16s run %d: monolithic %.2fs, chunked %.2fs, pull %.2fs (slowest of %d)\n",
		t.name, rep, d.Seconds(), dc.Seconds(), dp.Seconds(), b.pulls)
	return nil
}

// blobFile is the path of blob dgst's bytes under a storage root in
// Distribution's layout.
func blobFile(dgst string) string {
	hex := strings.TrimPrefix(dgst, "sha256:")
	return "/docker/registry/v2/blobs/sha256/" + hex[:2] + "/" + hex + "/data"
}

// ddRun writes the blob file into the work dir, beside the registries'
// roots, with dd conv=fdatasync, timed as a push is, and records it in both
// push figures: what a push must do at least to be durable.
func (b *bench) ddRun(rep int, mono, chunked *figure) error {
	out := filepath.Join(b.dir, "dd-out")
	defer os.Remove(out)
	d, err := b.timed(true, []string{b.file}, func() error {
		cmd := exec.Command("dd", "if="+b.file, "of="+out, "bs=1M", "conv=fdatasync")
		if msg, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("dd: %v: %s", err, bytes.TrimSpace(msg))
		}
		return nil
	})
	if err != nil {
		return err
	}
	mib := float64(b.size) / (1 << 20) / d.Seconds()
	mono.samples[ddName] = append(mono.samples[ddName], mib)
	chunked.samples[ddName] = append(chunked.samples[ddName], mib)
	fmt.Printf("bench: %-16s run %d: %.2fs\n", "dd conv=fdatasync", rep, d.Seconds())
	return nil
}

// timed runs f after flushing dirty pages (the previous run's blob), so that
// no run pays for another's writeback. Before a push (dropCaches) it also
// empties the page cache where it may (root): in a virtual machine whose
// memory the hypervisor backs on first touch, writing 1 GiB into pages no
// run has used yet costs about 3 s more than into pages already used, and
// that would measure the hypervisor, not the registry. The file the client
// sends is then read back into the cache, so that the client does not read
// it from disk while it sends (clients push layers they have just built or
// pulled): the files in warm. The blob a pull reads stays cached, as a
// freshly pushed blob is.
func (b *bench) timed(dropCaches bool, warm []string, f func() error) (time.Duration, error) {
	syscall.Sync()
	if dropCaches {
		_ = os.WriteFile("/proc/sys/vm/drop_caches", []byte("1"), 0)
		for _, p := range warm {
			if err := readAll(p); err != nil {
				return 0, err
			}
		}
	}
	start := time.Now()
	err := f()
	return time.Since(start), err
}

// readAll reads the file at path, leaving it in the page cache.
func readAll(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(io.Discard, f)
	return err
}

// makeFile writes size random bytes and keeps the sha256 state of all but
// the last 16, which freshDigest rewrites for every run; then the same
// bytes cut into chunk-size files, path.0, path.1, ..., which the chunked
// push sends one per request (so that net/http can send a whole file with
// sendfile, as it does for the monolithic push).
func (b *bench) makeFile(path string) error {
	if err := b.writeFile(path); err != nil {
		return err
	}
	src, err := os.Open(path)
	if err != nil {
		return err
	}
	defer src.Close()
	for off := int64(0); off < b.size; off += b.chunk {
		p := fmt.Sprintf("%s.%d", path, len(b.chunks))
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		b.chunks = append(b.chunks, p)
		_, err = io.Copy(f, io.NewSectionReader(src, off, min(b.chunk, b.size-off)))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// removeFiles removes the blob file and its chunks.
func (b *bench) removeFiles() {
	for _, p := range append([]string{b.file}, b.chunks...) {
		_ = os.Remove(p)
	}
}

func (b *bench) writeFile(path string) error {
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		return err
	}
	src := rand.NewChaCha8(seed)
	b.rng = src
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for left := b.size - 16; left > 0; {
		n := min(int64(len(buf)), left)
		src.Read(buf[:n])
		if _, err := f.Write(buf[:n]); err != nil {
			return err
		}
		h.Write(buf[:n])
		left -= n
	}
	if _, err := f.Write(make([]byte, 16)); err != nil {
		return err
	}
	state, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return err
	}
	b.file, b.prefix = path, state
	return f.Close()
}

// freshDigest writes new random last 16 bytes into the file (and its
// chunks) and returns its digest: no run can find its blob already stored.
func (b *bench) freshDigest() (string, error) {
	tail := make([]byte, 16)
	b.rng.Read(tail)
	if err := writeAt(b.file, tail, b.size-16); err != nil {
		return "", err
	}
	for i, p := range b.chunks {
		// The tail's part in chunk i, which holds [start, end) of the file.
		start := int64(i) * b.chunk
		end := min(start+b.chunk, b.size)
		from, to := max(start, b.size-16), end
		if from < to {
			if err := writeAt(p, tail[from-(b.size-16):to-(b.size-16)], from-start); err != nil {
				return "", err
			}
		}
	}
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(b.prefix); err != nil {
		return "", err
	}
	h.Write(tail)
	return digestOf(h), nil
}

// writeAt writes p at offset off of the file at path.
func writeAt(path string, p []byte, off int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(p, off); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func digestOf(h hash.Hash) string { return "sha256:" + hex.EncodeToString(h.Sum(nil)) }

// do sends req and checks the status; it returns the response with its body
// read and closed.
func (b *bench) do(req *http.Request, want int) (*http.Response, error) {
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("%s %s: %s, want %d: %s", req.Method, req.URL.Path, resp.Status, want, bytes.TrimSpace(msg))
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp, nil
}

// startUpload POSTs a new upload session and returns its location.
func (b *bench) startUpload(ctx context.Context, base string) (*url.URL, error) {
	return b.startUploadTo(ctx, base, repo)
}

// startUploadTo POSTs a new upload session to repository name and returns
// its location.
func (b *bench) startUploadTo(ctx context.Context, base, name string) (*url.URL, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v2/"+name+"/blobs/uploads/", nil)
	resp, err := b.do(req, http.StatusAccepted)
	if err != nil {
		return nil, err
	}
	return location(resp)
}

func location(resp *http.Response) (*url.URL, error) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return nil, fmt.Errorf("%s %s: no Location", resp.Request.Method, resp.Request.URL.Path)
	}
	return resp.Request.URL.Parse(loc)
}

func withDigest(u *url.URL, dgst string) string {
	q := u.Query()
	q.Set("digest", dgst)
	v := *u
	v.RawQuery = q.Encode()
	return v.String()
}

func (b *bench) pushMonolithic(ctx context.Context, base, dgst string) error {
	loc, err := b.startUpload(ctx, base)
	if err != nil {
		return err
	}
	f, err := os.Open(b.file)
	if err != nil {
		return err
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, withDigest(loc, dgst), f) // closed by the client
	req.ContentLength = b.size
	req.Header.Set("Content-Type", "application/octet-stream")
	_, err = b.do(req, http.StatusCreated)
	return err
}

// pushChunked pushes the file in b.chunk PATCH requests, the body of each
// one chunk file: net/http sends a file with sendfile, as it does for the
// monolithic push, so the client leaves the CPU to the registry. (A
// section of the whole file would go through a 32 KiB user-space copy,
// which took a third of a core here.)
func (b *bench) pushChunked(ctx context.Context, base, dgst string) error {
	loc, err := b.startUpload(ctx, base)
	if err != nil {
		return err
	}
	for i, p := range b.chunks {
		off := int64(i) * b.chunk
		n := min(b.chunk, b.size-off)
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPatch, loc.String(), f) // closed by the client
		req.ContentLength = n
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", off, off+n-1))
		resp, err := b.do(req, http.StatusAccepted)
		if err != nil {
			return err
		}
		if loc, err = location(resp); err != nil {
			return err
		}
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, withDigest(loc, dgst), nil)
	_, err = b.do(req, http.StatusCreated)
	return err
}

// pull GETs url (a blob) and checks that it holds the blob's size.
func (b *bench) pull(ctx context.Context, url string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := b.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET blob: %s", resp.Status)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return err
	}
	if n != b.size {
		return fmt.Errorf("GET blob: %d bytes, want %d", n, b.size)
	}
	return nil
}

// deleteBlob removes a pushed blob, so the storage stays small; a registry
// that refuses (405) keeps it, which costs only disk.
func (b *bench) deleteBlob(ctx context.Context, t target, dgst string) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, t.url+"/v2/"+repo+"/blobs/"+dgst, nil)
	if _, err := b.do(req, http.StatusAccepted); err != nil {
		fmt.Printf("bench: %s: delete blob: %v\n", t.name, err)
	}
}

// manifestRounds pushes a small image tagged "bench" to every target, then
// measures GET by tag with wrk, b.rounds rounds of b.duration per target,
// the targets in turn in an order that rotates from one round to the next.
func (b *bench) manifestRounds(ctx context.Context, targets []target, manifests *figure) error {
	if b.rounds <= 0 {
		return nil
	}
	urls := map[string]string{}
	for _, t := range targets {
		u, err := b.pushImage(ctx, t)
		if err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		urls[t.name] = u
	}
	for round := range b.rounds {
		k := round % len(targets)
		order := append(slices.Clone(targets[k:]), targets[:k]...)
		var line []string
		for _, t := range order {
			rps, note, err := b.manifestLoad(ctx, urls[t.name])
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			manifests.samples[t.name] = append(manifests.samples[t.name], rps)
			if note != "" {
				fmt.Printf("bench: %s: %s\n", t.name, note)
			}
			line = append(line, fmt.Sprintf("%s %.0f", t.name, rps))
		}
		fmt.Printf("bench: manifest GET round %d: %s req/s\n", round+1, strings.Join(line, ", "))
	}
	return nil
}

const mtManifestOCI = "application/vnd.oci.image.manifest.v1+json"

// pushImage pushes a small image tagged "bench" and returns the URL of its
// manifest by tag, checked with one GET.
func (b *bench) pushImage(ctx context.Context, t target) (string, error) {
	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	layer := make([]byte, 1024)
	b.rng.Read(layer)
	var descs []map[string]any
	for _, blob := range [][]byte{config, layer} {
		sum := sha256.Sum256(blob)
		dgst := "sha256:" + hex.EncodeToString(sum[:])
		loc, err := b.startUpload(ctx, t.url)
		if err != nil {
			return "", err
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, withDigest(loc, dgst), bytes.NewReader(blob))
		req.Header.Set("Content-Type", "application/octet-stream")
		if _, err := b.do(req, http.StatusCreated); err != nil {
			return "", err
		}
		descs = append(descs, map[string]any{"digest": dgst, "size": len(blob)})
	}
	descs[0]["mediaType"] = "application/vnd.oci.image.config.v1+json"
	descs[1]["mediaType"] = "application/vnd.oci.image.layer.v1.tar"
	manifest, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": mtManifestOCI, "config": descs[0], "layers": descs[1:]})
	url := t.url + "/v2/" + repo + "/manifests/bench"
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, url, bytes.NewReader(manifest))
	req.Header.Set("Content-Type", mtManifestOCI)
	if _, err := b.do(req, http.StatusCreated); err != nil {
		return "", err
	}
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set("Accept", mtManifestOCI)
	if _, err := b.do(req, http.StatusOK); err != nil {
		return "", err
	}
	return url, nil
}

// manifestLoad measures GET of url with wrk for b.duration.
func (b *bench) manifestLoad(ctx context.Context, url string) (float64, string, error) {
	secs := max(1, int(b.duration.Seconds()))
	cmd := exec.CommandContext(ctx, "wrk", "-t", strconv.Itoa(min(2, b.conns)), "-c", strconv.Itoa(b.conns),
		"-d", strconv.Itoa(secs)+"s", "--timeout", "5s", "-H", "Accept: "+mtManifestOCI, url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, "", fmt.Errorf("wrk: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		return 0, "", fmt.Errorf("wrk printed no Requests/sec:\n%s", out)
	}
	rps, _ := strconv.ParseFloat(string(m[1]), 64)
	var notes []string
	for _, re := range []string{`Non-2xx or 3xx responses: \d+`, `Socket errors: .*`} {
		if e := regexp.MustCompile(re).Find(out); e != nil {
			notes = append(notes, string(e))
		}
	}
	return rps, strings.Join(notes, "; "), nil
}

// printTable prints the figures' medians for every column that has
// samples, then, when there are several columns, the ratios of the first
// (berth) to each other: median over median, and best over best.
func printTable(w io.Writer, columns []string, figures []*figure) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join(append([]string{"figure", "unit"}, columns...), "\t")+"\t")
	for _, f := range figures {
		row := []string{f.name, f.unit}
		for _, c := range columns {
			if s := f.samples[c]; len(s) > 0 {
				row = append(row, fmt.Sprintf("%.1f", median(s)))
			} else {
				row = append(row, "-")
			}
		}
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	tw.Flush()
	if len(columns) > 1 {
		fmt.Fprintln(w)
		header := []string{"ratio: " + columns[0] + " / other, median (best)"}
		for _, c := range columns[1:] {
			header = append(header, "/ "+c)
		}
		fmt.Fprintln(tw, strings.Join(header, "\t")+"\t")
		for _, f := range figures {
			row := []string{f.name}
			base := f.samples[columns[0]]
			for _, c := range columns[1:] {
				if s := f.samples[c]; len(s) > 0 && len(base) > 0 {
					row = append(row, fmt.Sprintf("%.2f (%.2f)", median(base)/median(s), slices.Max(base)/slices.Max(s)))
				} else {
					row = append(row, "-")
				}
			}
			fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
		}
		tw.Flush()
	}
	fmt.Fprintln(w, "\nsamples:")
	for _, f := range figures {
		for _, c := range columns {
			if len(f.samples[c]) == 0 {
				continue
			}
			var s []string
			for _, v := range f.samples[c] {
				s = append(s, fmt.Sprintf("%.1f", v))
			}
			fmt.Fprintf(w, "  %-45s %-18s %s\n", f.name, c, strings.Join(s, " "))
		}
	}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func sizeName(n int64) string {
	if n >= 1<<30 && n%(1<<30) == 0 {
		return fmt.Sprintf("%d GiB", n>>30)
	}
	return fmt.Sprintf("%d MiB", n>>20)
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return strings.TrimSpace(string(b))
	}
	return strings.Join(f[:3], " ")
}

// runAlone runs one case alone (-only): in dir, or a temporary directory
// removed afterwards, with berthBin or a berth built there, between lines
// giving the load before and after.
func runAlone(ctx context.Context, berthBin, dir string, run func(berthBin, dir string) error) error {
	if dir == "" {
		d, err := os.MkdirTemp("", "berth-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	fmt.Printf("bench: %d cores, load before: %s\n", runtime.NumCPU(), loadavg())
	start := time.Now()
	if berthBin == "" {
		bin, err := integration.BuildBerth(ctx, ".", dir)
		if err != nil {
			return err
		}
		berthBin = bin
	}
	if err := run(berthBin, dir); err != nil {
		return err
	}
	fmt.Printf("\nbench: load after: %s; took %.0fs\n", loadavg(), time.Since(start).Seconds())
	return nil
}

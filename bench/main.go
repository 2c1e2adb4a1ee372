// Command bench measures blob push and pull throughput and manifest GET
// requests/s of berth next to Debian's docker-registry (distribution 2.8.2),
// both started on loopback with filesystem storage under one temp dir, or of
// any one running registry (-target URL).
//
//	go run ./bench -berth bin/berth          # berth and docker-registry side by side
//	go run ./bench -target http://127.0.0.1:5000
//	go run ./bench -registries docker-registry
//
// Figures: push of a SIZE random blob monolithically (POST, then one PUT
// ?digest= streamed from a file), the same in CHUNK PATCH requests, a pull
// (GET, body discarded), each repeated -reps times with a fresh digest (the
// file's last bytes change; the blob is deleted after each run) and reported
// as the median; and manifest GET-by-tag requests/s with wrk, -conns
// connections for -duration. Registries are measured in turn, never at once.
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
package main

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
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
		registries = flag.String("registries", "berth,docker-registry", "registries to start and compare, in table order")
		berthBin   = flag.String("berth", "", "berth binary (default: build ./cmd/berth into the work dir)")
		drBin      = flag.String("docker-registry", "docker-registry", "docker-registry binary")
		dir        = flag.String("dir", "", "work dir for the blob file and the storage roots (default: a new temp dir, removed at exit)")
		sizeMiB    = flag.Int64("size-mib", 1024, "blob size in MiB")
		chunkMiB   = flag.Int64("chunk-mib", 64, "PATCH chunk size in MiB")
		reps       = flag.Int("reps", 5, "repetitions of each transfer (median and best reported)")
		duration   = flag.Duration("duration", 10*time.Second, "manifest GET load duration")
		conns      = flag.Int("conns", 16, "manifest GET connections")
		limit      = flag.Duration("timeout", 10*time.Minute, "give up after this long")
		vgwBin     = flag.String("versitygw", "", "versitygw binary: also measure berth on S3 (needs berth among -registries)")
		s3Reps     = flag.Int("s3-reps", 2, "repetitions of each transfer through berth on S3")
		only       = flag.String("only", "", "run only this case: gc (berth gc against docker-registry garbage-collect), run (berth run and pull against runc, crun, skopeo + umoci), gc-root (only write the gc case's generated root to -dir, for profiling a collection by hand)")
		gcReps     = flag.Int("gc-reps", 3, "repetitions of each collection in the gc case; 0 skips it (unless -only gc)")
	)
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), *limit)
	defer cancel()
	b := &bench{size: *sizeMiB << 20, chunk: *chunkMiB << 20, reps: *reps, duration: *duration, conns: *conns,
		versitygw: *vgwBin, s3Reps: *s3Reps, gcReps: *gcReps}
	var err error
	switch *only {
	case "":
		err = b.run(ctx, *target, *registries, *berthBin, *drBin, *dir)
	case "gc":
		err = b.runGCOnly(ctx, *berthBin, *drBin, *dir)
	case "run":
		err = b.runOnly(ctx, *berthBin, *dir)
	case "gc-root":
		err = writeGCRootOnly(*dir)
	default:
		err = fmt.Errorf("-only %q: want gc, run or gc-root", *only)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type bench struct {
	size, chunk int64
	reps        int
	duration    time.Duration
	conns       int
	versitygw   string // "": no S3 table
	s3Reps      int
	gcReps      int // 0: no gc case

	file   string        // the blob, size bytes; its last 16 bytes change per run
	prefix []byte        // marshalled sha256 state after all but the last 16 bytes
	rng    *rand.ChaCha8 // random bytes for the file and the tails
	client *http.Client
}

type target struct {
	name string
	url  string
}

// figure is one row of the table: name, unit and the samples per target.
type figure struct {
	name, unit string
	samples    map[string][]float64
}

func (b *bench) run(ctx context.Context, targetURL, registries, berthBin, drBin, dir string) error {
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
	fmt.Printf("bench: %d cores, load before: %s\n", runtime.NumCPU(), loadavg())
	start := time.Now()

	var targets []target
	if targetURL != "" {
		u := strings.TrimRight(targetURL, "/")
		if !strings.Contains(u, "://") {
			u = "http://" + u
		}
		targets = append(targets, target{name: u, url: u})
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
			case integration.DockerRegistry:
				o.Binary = drBin
			default:
				return fmt.Errorf("unknown registry %q (berth, docker-registry)", kind)
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
			targets = append(targets, target{name: kind, url: srv.URL})
		}
	}

	b.client = &http.Client{Transport: &http.Transport{
		DisableCompression: true, MaxIdleConnsPerHost: 4,
		WriteBufferSize: 256 << 10, ReadBufferSize: 256 << 10,
	}}
	if err := b.makeFile(filepath.Join(dir, "blob")); err != nil {
		return err
	}
	defer os.Remove(b.file)

	sz := sizeName(b.size)
	mono := &figure{name: "push " + sz + " monolithic (POST + PUT)", unit: "MiB/s", samples: map[string][]float64{}}
	chunked := &figure{name: fmt.Sprintf("push %s in %s PATCH chunks", sz, sizeName(b.chunk)), unit: "MiB/s", samples: map[string][]float64{}}
	pull := &figure{name: "pull " + sz + " (GET)", unit: "MiB/s", samples: map[string][]float64{}}
	manifests := &figure{name: fmt.Sprintf("manifest GET by tag, %d conns, %v", b.conns, b.duration), unit: "req/s", samples: map[string][]float64{}}

	if err := b.repeatTransfers(ctx, b.reps, targets, mono, chunked, pull); err != nil {
		return err
	}
	for _, t := range targets {
		rps, note, err := b.manifestLoad(ctx, t)
		if err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		manifests.samples[t.name] = []float64{rps}
		if note != "" {
			fmt.Printf("bench: %s: %s\n", t.name, note)
		}
	}

	fmt.Println()
	printTable(os.Stdout, targets, []*figure{mono, chunked, pull, manifests})
	fmt.Fprintln(os.Stdout, "\nThe table shows medians; best/best compares each registry's fastest run. On a virtual")
	fmt.Fprintln(os.Stdout, "machine that hands freed memory back to its hypervisor (Linux free page reporting), a push")
	fmt.Fprintln(os.Stdout, "that lands in pages the guest no longer holds pays ~3 s/GiB more, so push samples can be")
	fmt.Fprintln(os.Stdout, "bimodal: the fastest run is then the one that measured the registry rather than the host.")

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
	if *runReps > 0 && targetURL == "" && slices.Contains(strings.Split(registries, ","), integration.Berth) {
		if err := runCase(ctx, berthBin, dir, *runReps, max(*pullReps, 1)); err != nil {
			return fmt.Errorf("berth run: %w", err)
		}
	}
	fmt.Printf("\nbench: load after: %s; took %.0fs\n", loadavg(), time.Since(start).Seconds())
	return nil
}

// runGCOnly runs the gc case alone.
func (b *bench) runGCOnly(ctx context.Context, berthBin, drBin, dir string) error {
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
	if err := runGC(ctx, berthBin, drBin, dir, b.gcReps); err != nil {
		return err
	}
	fmt.Printf("\nbench: load after: %s; took %.0fs\n", loadavg(), time.Since(start).Seconds())
	return nil
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
	mono := &figure{name: "push " + sz + " monolithic (POST + PUT)", unit: "MiB/s", samples: map[string][]float64{}}
	chunked := &figure{name: fmt.Sprintf("push %s in %s PATCH chunks", sz, sizeName(b.chunk)), unit: "MiB/s", samples: map[string][]float64{}}
	pull := &figure{name: "pull " + sz + " (GET, redirect followed)", unit: "MiB/s", samples: map[string][]float64{}}
	if err := b.repeatTransfers(ctx, b.s3Reps, targets, mono, chunked, pull); err != nil {
		return err
	}
	fmt.Println()
	printTable(os.Stdout, targets, []*figure{mono, chunked, pull})
	fmt.Println("\nBerth on S3: versitygw's posix backend on the same disk and cores; redirect only changes")
	fmt.Println("pulls (the client fetches the presigned URL from versitygw), pushes are the same path twice.")
	return nil
}

// transfers runs one repetition of the three transfer figures on t.
// repeatTransfers runs the transfers reps times for every target. The
// registries alternate within each repetition, and which one goes first
// alternates too, so that neither always runs right after the other: drift
// in the machine's state (page cache, other load) is shared.
func (b *bench) repeatTransfers(ctx context.Context, reps int, targets []target, mono, chunked, pull *figure) error {
	for rep := 1; rep <= reps; rep++ {
		order := slices.Clone(targets)
		if rep%2 == 0 {
			slices.Reverse(order)
		}
		for _, t := range order {
			if err := b.transfers(ctx, t, rep, mono, chunked, pull); err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
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
	d, err := b.timed(true, func() error { return b.pushMonolithic(ctx, t.url, dgst) })
	if err != nil {
		return fmt.Errorf("monolithic push: %w", err)
	}
	mono.samples[t.name] = append(mono.samples[t.name], mib/d.Seconds())
	b.deleteBlob(ctx, t, dgst)
	// chunked, then pull that blob
	if dgst, err = b.freshDigest(); err != nil {
		return err
	}
	dc, err := b.timed(true, func() error { return b.pushChunked(ctx, t.url, dgst) })
	if err != nil {
		return fmt.Errorf("chunked push: %w", err)
	}
	chunked.samples[t.name] = append(chunked.samples[t.name], mib/dc.Seconds())
	dp, err := b.timed(false, func() error { return b.pull(ctx, t.url, dgst) })
	if err != nil {
		return fmt.Errorf("pull: %w", err)
	}
	pull.samples[t.name] = append(pull.samples[t.name], mib/dp.Seconds())
	b.deleteBlob(ctx, t, dgst)
	fmt.Printf("bench: %-16s run %d: monolithic %.1fs, chunked %.1fs, pull %.1fs\n", t.name, rep, d.Seconds(), dc.Seconds(), dp.Seconds())
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
// pulled). The blob a pull reads stays cached, as a freshly pushed blob is.
func (b *bench) timed(dropCaches bool, f func() error) (time.Duration, error) {
	syscall.Sync()
	if dropCaches {
		_ = os.WriteFile("/proc/sys/vm/drop_caches", []byte("1"), 0)
		if err := readAll(b.file); err != nil {
			return 0, err
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
// the last 16, which freshDigest rewrites for every run.
func (b *bench) makeFile(path string) error {
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

// freshDigest writes new random last 16 bytes into the file and returns its
// digest: no run can find its blob already stored.
func (b *bench) freshDigest() (string, error) {
	tail := make([]byte, 16)
	b.rng.Read(tail)
	f, err := os.OpenFile(b.file, os.O_WRONLY, 0)
	if err != nil {
		return "", err
	}
	if _, err := f.WriteAt(tail, b.size-16); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(b.prefix); err != nil {
		return "", err
	}
	h.Write(tail)
	return digestOf(h), nil
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
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v2/"+repo+"/blobs/uploads/", nil)
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

func (b *bench) pushChunked(ctx context.Context, base, dgst string) error {
	loc, err := b.startUpload(ctx, base)
	if err != nil {
		return err
	}
	f, err := os.Open(b.file)
	if err != nil {
		return err
	}
	defer f.Close()
	for off := int64(0); off < b.size; off += b.chunk {
		n := min(b.chunk, b.size-off)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPatch, loc.String(), io.NopCloser(io.NewSectionReader(f, off, n)))
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

func (b *bench) pull(ctx context.Context, base, dgst string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/"+repo+"/blobs/"+dgst, nil)
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

// manifestLoad pushes a small image tagged "bench" and measures GET by tag
// with wrk.
func (b *bench) manifestLoad(ctx context.Context, t target) (float64, string, error) {
	const mt = "application/vnd.oci.image.manifest.v1+json"
	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	layer := make([]byte, 1024)
	b.rng.Read(layer)
	var descs []map[string]any
	for _, blob := range [][]byte{config, layer} {
		sum := sha256.Sum256(blob)
		dgst := "sha256:" + hex.EncodeToString(sum[:])
		loc, err := b.startUpload(ctx, t.url)
		if err != nil {
			return 0, "", err
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, withDigest(loc, dgst), bytes.NewReader(blob))
		req.Header.Set("Content-Type", "application/octet-stream")
		if _, err := b.do(req, http.StatusCreated); err != nil {
			return 0, "", err
		}
		descs = append(descs, map[string]any{"digest": dgst, "size": len(blob)})
	}
	descs[0]["mediaType"] = "application/vnd.oci.image.config.v1+json"
	descs[1]["mediaType"] = "application/vnd.oci.image.layer.v1.tar"
	manifest, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": mt, "config": descs[0], "layers": descs[1:]})
	url := t.url + "/v2/" + repo + "/manifests/bench"
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, url, bytes.NewReader(manifest))
	req.Header.Set("Content-Type", mt)
	if _, err := b.do(req, http.StatusCreated); err != nil {
		return 0, "", err
	}
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set("Accept", mt)
	if _, err := b.do(req, http.StatusOK); err != nil {
		return 0, "", err
	}

	secs := max(1, int(b.duration.Seconds()))
	cmd := exec.CommandContext(ctx, "wrk", "-t", strconv.Itoa(min(2, b.conns)), "-c", strconv.Itoa(b.conns),
		"-d", strconv.Itoa(secs)+"s", "--timeout", "5s", "-H", "Accept: "+mt, url)
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

func printTable(w io.Writer, targets []target, figures []*figure) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := []string{"figure", "unit"}
	for _, t := range targets {
		header = append(header, t.name)
	}
	ratio := len(targets) == 2
	if ratio {
		header = append(header, targets[0].name+"/"+targets[1].name, "best/best")
	}
	fmt.Fprintln(tw, strings.Join(header, "\t")+"\t")
	for _, f := range figures {
		row := []string{f.name, f.unit}
		var meds, bests []float64
		for _, t := range targets {
			m := median(f.samples[t.name])
			meds = append(meds, m)
			bests = append(bests, slices.Max(f.samples[t.name]))
			row = append(row, fmt.Sprintf("%.1f", m))
		}
		if ratio {
			row = append(row, fmt.Sprintf("%.2f", meds[0]/meds[1]), fmt.Sprintf("%.2f", bests[0]/bests[1]))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	tw.Flush()
	fmt.Fprintln(w, "\nsamples:")
	for _, f := range figures {
		for _, t := range targets {
			var s []string
			for _, v := range f.samples[t.name] {
				s = append(s, fmt.Sprintf("%.1f", v))
			}
			fmt.Fprintf(w, "  %-45s %-24s %s\n", f.name, t.name, strings.Join(s, " "))
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

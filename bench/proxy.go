package main

// The proxy case (-only proxy, and a case of the full bench): a GET of a
// 1 GiB blob through a pull-through cache, berth's (proxy.upstreams) against
// Debian's docker-registry in proxy mode (proxy.remoteurl), both in front of
// the same upstream, a berth on loopback that holds the blob as local content.
//
//   - Cold: a mirror with fresh storage (a new process on a new root per run)
//     gets the GET; it fetches the blob from the upstream while it sends it.
//     Time to first byte (of the body) and total time.
//   - Warm: the same GET again, once the mirror has stored the blob (for
//     docker-registry, which stores in the background, once its repository
//     link is written): served from the cache.
//   - Local: the same GET of the upstream itself, where the blob is local
//     content pushed to a berth: what a warm GET through berth's cache is
//     compared with.
//
// The page cache cannot be dropped without root, and the upstream's copy of
// the blob stays cached throughout: the mirrors take turns, in an order that
// rotates from one run to the next.

import (
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/berth-registry/berth/integration"
)

var (
	proxyReps    = flag.Int("proxy-reps", 3, "proxy case: cold and warm GETs through each mirror; 0 skips the case (unless -only proxy)")
	proxySizeMiB = flag.Int64("proxy-size-mib", 1024, "proxy case: blob size in MiB")
	proxyPrime   = flag.Bool("proxy-prime", true, "proxy case: write and remove a scratch file of the blob's size and a quarter before each cold GET, so that the mirror's page cache writes land in memory the guest holds (see primeMemory)")
)

// The proxy case's names: the upstream's repository, the prefix berth's
// mirror serves the upstream under, and the columns of its table.
const (
	proxyRepo     = "bench/proxied"
	proxyPrefix   = "upstream"
	proxyBerth    = "berth"
	proxyDR       = "docker-registry"
	proxyLocal    = "local"
	proxyGetLimit = 10 * time.Minute // one GET at most
)

// proxyGet is the timing of one GET: its first body byte and its end,
// from the moment the request was sent.
type proxyGet struct{ first, total time.Duration }

// proxySeries is one row of the table: the GETs of one kind through one
// mirror.
type proxySeries struct {
	name string
	gets []proxyGet
}

func (s *proxySeries) firsts() []time.Duration {
	return s.pick(func(g proxyGet) time.Duration { return g.first })
}
func (s *proxySeries) totals() []time.Duration {
	return s.pick(func(g proxyGet) time.Duration { return g.total })
}

func (s *proxySeries) pick(f func(proxyGet) time.Duration) []time.Duration {
	var v []time.Duration
	for _, g := range s.gets {
		v = append(v, f(g))
	}
	return v
}

// proxyCase measures cold and warm GETs of a size-byte blob through berth's
// and docker-registry's pull-through caches, reps runs each.
func proxyCase(ctx context.Context, berthBin, drBin, dir string, reps int, size int64) error {
	if _, err := exec.LookPath(drBin); err != nil {
		return fmt.Errorf("docker-registry: %w (make bench-proxy installs it)", err)
	}
	work := filepath.Join(dir, "proxy")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(work)

	up, err := integration.Start(ctx, integration.Options{Kind: integration.Berth, Binary: berthBin,
		Root: filepath.Join(work, "upstream", "root"), Dir: mkdir(work, "upstream"), Quiet: true})
	if err != nil {
		return err
	}
	defer stopServer(up, "upstream berth")
	client := &http.Client{Transport: &http.Transport{DisableCompression: true,
		WriteBufferSize: 256 << 10, ReadBufferSize: 256 << 10}}
	pushStart := time.Now()
	dgst, err := pushRandomBlob(ctx, client, up.URL, proxyRepo, size)
	if err != nil {
		return fmt.Errorf("push to the upstream: %w", err)
	}
	fmt.Printf("\nbench: proxy case: %s blob %s in %s on the upstream berth %s (pushed in %.2fs, digest included)\n",
		sizeName(size), dgst, proxyRepo, up.URL, time.Since(pushStart).Seconds())

	type mirror struct {
		name        string
		cold, warm  *proxySeries
		options     func(root, dir string) integration.Options
		blobPath    string // the GET's path on the mirror
		cachedRepo  string // where the mirror stores the blob
		storedAfter []time.Duration
	}
	mirrors := []*mirror{
		{name: proxyBerth, blobPath: "/v2/" + proxyPrefix + "/" + proxyRepo + "/blobs/" + dgst,
			cachedRepo: proxyPrefix + "/" + proxyRepo,
			options: func(root, dir string) integration.Options {
				return integration.Options{Kind: integration.Berth, Binary: berthBin, Root: root, Dir: dir, Quiet: true,
					Extra: fmt.Sprintf("proxy:\n  upstreams:\n    - name: bench\n      url: %s\n      prefix: %s\n", up.URL, proxyPrefix)}
			}},
		{name: proxyDR, blobPath: "/v2/" + proxyRepo + "/blobs/" + dgst, cachedRepo: proxyRepo,
			options: func(root, dir string) integration.Options {
				return integration.Options{Kind: integration.DockerRegistry, Binary: drBin, Root: root, Dir: dir, Quiet: true,
					Extra: fmt.Sprintf("proxy:\n  remoteurl: %s\n", up.URL)}
			}},
	}
	for _, m := range mirrors {
		m.cold = &proxySeries{name: m.name + ", cold"}
		m.warm = &proxySeries{name: m.name + ", warm"}
	}
	local := &proxySeries{name: "berth, local content"}
	localURL := up.URL + "/v2/" + proxyRepo + "/blobs/" + dgst

	// One step of a run: a mirror's cold and warm GET, or the local GET.
	runs := 0
	step := func(m *mirror) (string, error) {
		if m == nil {
			g, err := timedGet(ctx, client, localURL, size)
			if err != nil {
				return "", fmt.Errorf("local GET: %w", err)
			}
			local.gets = append(local.gets, g)
			return fmt.Sprintf("local %s", g), nil
		}
		runs++
		sub := mkdir(work, fmt.Sprintf("%s-%d", m.name, runs))
		defer os.RemoveAll(sub)
		root := filepath.Join(sub, "root")
		srv, err := integration.Start(ctx, m.options(root, sub))
		if err != nil {
			return "", err
		}
		defer stopServer(srv, m.name+" mirror")
		if *proxyPrime {
			if err := primeMemory(filepath.Join(work, "prime"), size+size/4); err != nil {
				return "", err
			}
		}
		cold, err := timedGet(ctx, client, srv.URL+m.blobPath, size)
		if err != nil {
			return "", fmt.Errorf("%s: cold GET: %w\n%s", m.name, err, srv.LogTail(20))
		}
		end := time.Now()
		if err := waitStored(ctx, root, m.cachedRepo, dgst); err != nil {
			return "", fmt.Errorf("%s: %w\n%s", m.name, err, srv.LogTail(20))
		}
		m.storedAfter = append(m.storedAfter, time.Since(end))
		warm, err := timedGet(ctx, client, srv.URL+m.blobPath, size)
		if err != nil {
			return "", fmt.Errorf("%s: warm GET: %w\n%s", m.name, err, srv.LogTail(20))
		}
		m.cold.gets = append(m.cold.gets, cold)
		m.warm.gets = append(m.warm.gets, warm)
		return fmt.Sprintf("%s cold %s, warm %s", m.name, cold, warm), nil
	}
	steps := []*mirror{mirrors[0], mirrors[1], nil}
	for rep := range reps {
		k := rep % len(steps)
		order := append(slices.Clone(steps[k:]), steps[:k]...)
		var line []string
		for _, m := range order {
			s, err := step(m)
			if err != nil {
				return err
			}
			line = append(line, s)
		}
		fmt.Printf("bench: proxy run %d: %s\n", rep+1, strings.Join(line, "; "))
	}

	berth, dr := mirrors[0], mirrors[1]
	fmt.Printf("\nGET of a %s blob through a pull-through cache, %d runs each, mirrors in turn (load after: %s)\n\n",
		sizeName(size), reps, loadavg())
	rows := []*proxySeries{berth.cold, dr.cold, berth.warm, dr.warm, local}
	printProxyTable(os.Stdout, rows, size)
	fmt.Println()
	ratios := []struct {
		name      string
		num, den  *proxySeries
		firstByte bool
	}{
		{"cold: berth / docker-registry", berth.cold, dr.cold, true},
		{"warm: berth / docker-registry", berth.warm, dr.warm, true},
		{"berth: warm / local content", berth.warm, local, true},
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "ratio of times, median (best/best)\tfirst byte\ttotal\t")
	for _, r := range ratios {
		fmt.Fprintf(tw, "%s\t%s\t%s\t\n", r.name, timeRatio(r.num.firsts(), r.den.firsts()), timeRatio(r.num.totals(), r.den.totals()))
	}
	tw.Flush()
	fmt.Println("\nFirst byte: from sending the GET to the first byte of the body. Cold: a new mirror process")
	fmt.Println("on empty storage per run, which fetches the blob from the upstream berth (loopback, blob in")
	fmt.Println("its page cache); berth verifies the digest before the last bytes go out, docker-registry")
	fmt.Println("streams the upstream's bytes unverified and stores a second download in the background.")
	fmt.Println("Warm: the same GET once the mirror has stored the blob. Local: the GET of the upstream")
	fmt.Println("berth, where the blob is local content. Ratios below 1: the first named is faster.")
	fmt.Printf("Targets (medians): cold berth/docker-registry <= 1: first byte %.2f, total %.2f; berth warm/local <= 1: total %.2f.\n",
		medianRatio(berth.cold.firsts(), dr.cold.firsts()), medianRatio(berth.cold.totals(), dr.cold.totals()),
		medianRatio(berth.warm.totals(), local.totals()))
	fmt.Printf("docker-registry's background copy was stored %s (median) after its cold GET ended; berth's, %s.\n",
		ms(medianDuration(dr.storedAfter)), ms(medianDuration(berth.storedAfter)))
	fmt.Println("\nsamples (first byte ms / total ms):")
	for _, r := range rows {
		var s []string
		for _, g := range r.gets {
			s = append(s, fmt.Sprintf("%d/%d", g.first.Milliseconds(), g.total.Milliseconds()))
		}
		fmt.Printf("  %-34s %s\n", r.name, strings.Join(s, " "))
	}
	return nil
}

func (g proxyGet) String() string {
	return fmt.Sprintf("%s/%.2fs", ms(g.first), g.total.Seconds())
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}

// printProxyTable prints each row's median and best first byte and total
// time, and the median throughput.
func printProxyTable(w io.Writer, rows []*proxySeries, size int64) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tfirst byte median ms\tbest ms\ttotal median s\tbest s\tMiB/s median\t")
	for _, r := range rows {
		f, t := r.firsts(), r.totals()
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.2f\t%.2f\t%.0f\t\n", r.name,
			float64(medianDuration(f))/float64(time.Millisecond), float64(slices.Min(f))/float64(time.Millisecond),
			medianDuration(t).Seconds(), slices.Min(t).Seconds(),
			float64(size)/(1<<20)/medianDuration(t).Seconds())
	}
	tw.Flush()
}

func medianRatio(num, den []time.Duration) float64 {
	return float64(medianDuration(num)) / float64(medianDuration(den))
}

// timeRatio is num's median time over den's, and in brackets num's best
// over den's best.
func timeRatio(num, den []time.Duration) string {
	return fmt.Sprintf("%.2f (%.2f)", medianRatio(num, den), float64(slices.Min(num))/float64(slices.Min(den)))
}

// timedGet GETs url, a blob of size bytes, with its body discarded, and
// times its first body byte and its end.
func timedGet(ctx context.Context, client *http.Client, url string, size int64) (proxyGet, error) {
	ctx, cancel := context.WithTimeout(ctx, proxyGetLimit)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return proxyGet{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return proxyGet{}, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	var g proxyGet
	buf := make([]byte, 256<<10)
	var n int64
	for {
		k, err := resp.Body.Read(buf)
		if k > 0 && n == 0 {
			g.first = time.Since(start)
		}
		n += int64(k)
		if err == io.EOF {
			break
		}
		if err != nil {
			return proxyGet{}, fmt.Errorf("after %d bytes: %w", n, err)
		}
	}
	g.total = time.Since(start)
	if n != size {
		return proxyGet{}, fmt.Errorf("%d bytes, want %d", n, size)
	}
	return g, nil
}

// primeMemory writes n bytes of zeros to the file at path and removes it.
// In a virtual machine that hands freed memory back to its hypervisor (free
// page reporting, about 2 s after it is freed), the first write of 1 GiB
// into the page cache after a pause costs seconds (5.3 s against 0.7 s
// right after the same write, measured with dd here): a cold GET stores the
// blob, and without this it would measure the hypervisor's page faults, in
// berth's GET (which stores as it streams) and not in docker-registry's
// (which stores a second download in the background).
func primeMemory(path string, n int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer os.Remove(path)
	buf := make([]byte, 1<<20)
	for left := n; left > 0; left -= int64(len(buf)) {
		if _, err := f.Write(buf[:min(int64(len(buf)), left)]); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// waitStored waits (up to a minute) until the blob dgst is part of repo in
// the Distribution layout under root: its link is written.
func waitStored(ctx context.Context, root, repo, dgst string) error {
	link := filepath.Join(root, "docker/registry/v2/repositories", repo, "_layers/sha256",
		strings.TrimPrefix(dgst, "sha256:"), "link")
	limit := time.Now().Add(time.Minute)
	for {
		if _, err := os.Stat(link); err == nil {
			return nil
		}
		if time.Now().After(limit) {
			return fmt.Errorf("the blob's link %s was not written within a minute of the GET", link)
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// pushRandomBlob pushes size random bytes to repo at base in one POST and
// PUT, streamed from a seeded generator twice (once for the digest, once
// for the body): nothing the size of the blob is held in memory or on disk.
func pushRandomBlob(ctx context.Context, client *http.Client, base, repo string, size int64) (string, error) {
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		return "", err
	}
	stream := func() io.Reader { return io.LimitReader(rand.NewChaCha8(seed), size) }
	h := sha256.New()
	if _, err := io.Copy(h, stream()); err != nil {
		return "", err
	}
	dgst := digestOf(h)
	b := &bench{client: client}
	loc, err := b.startUploadTo(ctx, base, repo)
	if err != nil {
		return "", err
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, withDigest(loc, dgst), stream())
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	if _, err := b.do(req, http.StatusCreated); err != nil {
		return "", err
	}
	return dgst, nil
}

// mkdir creates dir/name and returns its path; the bench's later steps
// report a failure to create it.
func mkdir(dir, name string) string {
	p := filepath.Join(dir, name)
	_ = os.MkdirAll(p, 0o755)
	return p
}

// stopServer stops srv and reports an unclean end with its log (of a
// berth: docker-registry ends on SIGTERM by the signal).
func stopServer(srv *integration.Server, what string) {
	if status, err := srv.Stop(); err != nil || (status != "exit status 0" && srv.Kind == integration.Berth) {
		fmt.Fprintf(os.Stderr, "bench: %s ended with %s %v; log:\n%s\n", what, status, err, srv.LogTail(20))
	}
}

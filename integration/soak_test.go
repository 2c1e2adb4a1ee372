package integration

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// The long-uptime soak: one server, its in-server collector running every
// two seconds, under mixed pushes (monolithic, chunked, cross-repository
// mounts), pulls, deletes, referrers, abandoned uploads and slow clients
// that trickle their bodies or read their answers slowly. It asserts no
// 5xx, no request over a second that is not itself slow, and that
// goroutines, open files and memory come back to their warm-up level once
// the load stops.

// Default durations: the whole test takes about a minute and a half in
// make test; BERTH_SOAK=10m soaks longer (the warm-up stays).
const (
	uptimeWarmup = 15 * time.Second
	uptimeLoad   = 75 * time.Second
)

// Slack allowed over the warm-up level once the load has stopped:
//   - goroutines: the collector's run in progress (a handful) and the
//     HTTP server's per-connection goroutines of the probe itself;
//   - open files: a collection in progress walks the storage, a few
//     directories open at a time;
//   - RSS: the bounded caches fill further than in the warm-up (the
//     manifest cache is bounded at 64 MiB of bodies, the soak's manifests
//     make a few MiB of it; the tag cache at 10000 entries, a few MiB),
//     and the Go runtime gives freed heap back to the system only over
//     minutes (the scavenger), so heap that the load grew may still be
//     resident: 64 MiB covers both; a leak of a buffer per request grows
//     by far more over tens of thousands of requests.
const (
	goroutineSlack = 10
	fdSlack        = 8
	rssSlack       = 64 << 20
)

var soakGC = "gc:\n  interval: 2s\n  grace: 3s\n  deleteUntagged: true\n  uploadMaxAge: 20s\n"

// TestUptimeSoak: see above. BERTH_SOAK sets the length of the load.
func TestUptimeSoak(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	load := uptimeLoad
	if v := os.Getenv("BERTH_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("BERTH_SOAK=%q: want a positive duration such as 10m", v)
		}
		load = d
	}
	srv := startServerWith(t, Options{Kind: Berth, Root: t.TempDir(), Extra: soakGC})
	pid := srv.PID()
	s := newSoak([]string{srv.URL})
	s.maxOps = 1 << 30 // the time bounds the load
	repos := []string{"uptime/app", "uptime/base", "uptime/team/tool"}
	const pushers, pullers, deleters, referrerWriters, tricklers, slowReaders = 3, 3, 1, 1, 2, 1
	for p := range pushers {
		var row []*soakSlot
		for _, r := range repos {
			for i := range 2 {
				row = append(row, &soakSlot{repo: r, tag: fmt.Sprintf("p%d-%d", p, i)})
			}
		}
		s.slots = append(s.slots, row)
	}
	for i, r := range repos {
		slot := s.slots[0][2*i]
		if !s.push(r, slot.tag, s.poolImage(), slot) {
			t.Fatalf("first push to %s failed: %v", r, s.failures)
		}
	}
	slow := &slowClients{s: s, client: &http.Client{Timeout: 2 * time.Minute}}

	run := func(d time.Duration) {
		s.deadline = time.Now().Add(d)
		var wg sync.WaitGroup
		for p := range pushers {
			wg.Go(func() { s.pusher(s.slots[p]) })
		}
		for range pullers {
			wg.Go(s.puller)
		}
		for range deleters {
			wg.Go(s.deleter)
		}
		for range referrerWriters {
			wg.Go(s.referrerWriter)
		}
		for range tricklers {
			wg.Go(slow.trickler)
		}
		for range slowReaders {
			wg.Go(slow.reader)
		}
		wg.Wait()
		// The clients go away: their keep-alive connections with them.
		s.client.CloseIdleConnections()
		slow.client.CloseIdleConnections()
	}
	type level struct {
		goroutines, fds int
		rss             int64
	}
	measure := func() level {
		g := metricsOf(t, srv, "go_goroutines")["go_goroutines"]
		noRedirect.CloseIdleConnections() // the probe's own connection
		return level{int(g), procFDs(t, pid), procStatus(t, pid, "VmRSS")}
	}

	run(uptimeWarmup)
	var warm level
	// Settled: what the warm-up left open has closed.
	settle(func() bool {
		a, b := measure(), measure()
		warm = b
		return a.goroutines == b.goroutines && a.fds == b.fds
	})
	t.Logf("after the warm-up (%s, %d requests): %d goroutines, %d open files, RSS %.1f MiB",
		uptimeWarmup, s.requests, warm.goroutines, warm.fds, float64(warm.rss)/(1<<20))
	hist0 := durationsOver(t, srv, 1)
	warmRequests := s.requests

	start := time.Now()
	run(load)
	t.Logf("load: %.1fs, %d requests measured by the clients besides the slow ones (%d trickled PATCHes, %d slow GETs)",
		time.Since(start).Seconds(), s.requests-warmRequests, slow.patches, slow.gets)

	var after level
	ok := settle(func() bool {
		after = measure()
		return after.goroutines <= warm.goroutines+goroutineSlack && after.fds <= warm.fds+fdSlack && after.rss <= warm.rss+rssSlack
	})
	peak := procStatus(t, pid, "VmHWM")
	t.Logf("after the load: %d goroutines (warm-up %d), %d open files (%d), RSS %.1f MiB (%.1f; peak %.1f)",
		after.goroutines, warm.goroutines, after.fds, warm.fds, float64(after.rss)/(1<<20), float64(warm.rss)/(1<<20), float64(peak)/(1<<20))
	if !ok {
		t.Errorf("a minute after the load, the server holds more than its warm-up level allows (slack: %d goroutines, %d files, %d MiB)",
			goroutineSlack, fdSlack, rssSlack>>20)
	}

	// Zero 5xx: as the clients saw them and as the server counted them.
	if n, which := serverFailures(t, srv); n > 0 {
		t.Errorf("the server counted %v answers 5xx: %v", n, which)
	}
	if bad := serverErrors(t, srv); len(bad) > 0 {
		t.Errorf("the access log has %d 5xx:\n%s", len(bad), strings.Join(head(bad, 10), "\n"))
	}
	// No request over a second but the slow ones, as the server timed
	// them (its histogram of request durations, le="1"): those that
	// trickle their bodies are PATCHes, those that read slowly blob GETs,
	// and no more of those than the slow clients sent.
	over := durationsOver(t, srv, 1)
	for k, n := range over {
		n -= hist0[k]
		allowed := 0
		switch k {
		case `method="PATCH",route="/v2/{name}/blobs/uploads/{id}"`:
			allowed = slow.patches
		case `method="GET",route="/v2/{name}/blobs/{digest}"`:
			allowed = slow.gets
		}
		if n > float64(allowed) {
			t.Errorf("%v requests %s took the server over a second (slow clients: %d)", n, k, allowed)
		}
	}
	// As the clients saw them, on a machine other tests share: a
	// request of the mix takes a few milliseconds; stalls behind a
	// slow client (the bug this guards against) took tens of seconds.
	// Five seconds leaves room for a loaded machine's scheduling and a
	// collection's sweep, and none for a stall.
	s.mu.Lock()
	defer s.mu.Unlock()
	t.Logf("client side: %d requests, slowest %s (%s), %d over 1s", s.requests, s.slowest.Round(time.Millisecond), s.slowestReq, len(s.overSecond))
	for _, r := range head(s.overSecond, 10) {
		t.Logf("  over 1s: %s", r)
	}
	if s.slowest > 5*time.Second {
		t.Errorf("a request took %s (%s): something stalled it", s.slowest, s.slowestReq)
	}
	t.Logf("events:\n%s", formatCounts(s.events))
	t.Logf("answers by method and status:\n%s", formatCounts(s.statuses))
	t.Logf("4xx answers by code:\n%s", formatCounts(s.codes))
	for _, f := range head(s.failures, 40) {
		t.Error(f)
	}
	for _, e := range []string{"push image by tag", "delete of a tagged manifest", "pull of a tagged manifest, whole",
		"upload abandoned", "blob mounted"} {
		if s.events[e] == 0 {
			t.Errorf("the load did no %q", e)
		}
	}
	gc := metricsOf(t, srv, "berth_gc_runs_total")
	t.Logf("in-server gc runs: %v", gc)
	if gc[`berth_gc_runs_total{result="ok"}`] == 0 || gc[`berth_gc_runs_total{result="error"}`] > 0 {
		t.Errorf("the in-server collector did not run cleanly: %v", gc)
	}
}

// slowClients are the soak's slow clients: they push blobs whose PATCH
// body trickles in over seconds, and read blobs slowly.
type slowClients struct {
	s      *soak
	client *http.Client

	mu            sync.Mutex
	patches, gets int // sent
}

// trickleReader gives n bytes of data, piece bytes every pause.
type trickleReader struct {
	data  []byte
	piece int
	pause time.Duration
}

func (r *trickleReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	time.Sleep(r.pause)
	n := copy(p[:min(len(p), r.piece)], r.data)
	r.data = r.data[n:]
	return n, nil
}

// trickler pushes 32 KiB blobs whose PATCH sends 1 KiB every 50-100 ms
// (2-3 s in all), then completes them.
func (c *slowClients) trickler() {
	s := c.s
	for s.running() {
		repo := "uptime/slow"
		loc, err := s.startUpload(repo)
		if err != nil {
			return
		}
		b := randomLayer(32 << 10)
		req, _ := http.NewRequest(http.MethodPatch, s.base()+loc,
			&trickleReader{data: b.data, piece: 1024, pause: time.Duration(50+rand.IntN(50)) * time.Millisecond})
		req.ContentLength = int64(len(b.data))
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("Content-Range", fmt.Sprintf("0-%d", len(b.data)-1))
		c.mu.Lock()
		c.patches++
		c.mu.Unlock()
		res, err := c.client.Do(req)
		if err != nil {
			s.fail("trickled PATCH: %v", err)
			return
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusAccepted {
			s.fail("trickled PATCH: %d", res.StatusCode)
			return
		}
		s.count("trickled PATCH")
		if s.finishUpload(repo, res.Header.Get("Location"), b, nil) == nil {
			s.count("trickled blob completed")
		}
	}
}

// reader GETs layers of the pool that it pushed itself and reads them 4 KiB
// every 20 ms.
func (c *slowClients) reader() {
	s := c.s
	repo := "uptime/slowread"
	for s.running() {
		b := s.pool[rand.IntN(len(s.pool))]
		if s.ensureBlob(repo, b) != nil {
			return
		}
		c.mu.Lock()
		c.gets++
		c.mu.Unlock()
		res, err := c.client.Get(s.base() + "/v2/" + repo + "/blobs/" + b.digest)
		if err != nil {
			s.fail("slow GET: %v", err)
			return
		}
		var got []byte
		buf := make([]byte, 4096)
		for {
			n, err := res.Body.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		res.Body.Close()
		switch {
		case res.StatusCode == http.StatusNotFound: // collected between the push and the GET: untagged
		case res.StatusCode != http.StatusOK || string(got) != string(b.data):
			s.fail("slow GET of %s: %d, %d bytes of %d", b.digest, res.StatusCode, len(got), len(b.data))
		default:
			s.count("slow GET")
		}
	}
}

var bucketLine = regexp.MustCompile(`^berth_http_request_duration_seconds_(bucket|count)\{(method="[^"]*",route="[^"]*")(?:,le="([^"]*)")?\}$`)

// durationsOver is how many requests the server took over secs seconds
// for, by method and route (secs must be one of its histogram's bounds).
func durationsOver(t *testing.T, srv *Server, secs float64) map[string]float64 {
	t.Helper()
	counts, within := map[string]float64{}, map[string]float64{}
	le := fmt.Sprint(secs)
	for k, v := range metricsOf(t, srv, "berth_http_request_duration_seconds_") {
		m := bucketLine.FindStringSubmatch(k)
		switch {
		case m == nil:
		case m[1] == "count":
			counts[m[2]] = v
		case m[3] == le:
			within[m[2]] = v
		}
	}
	out := map[string]float64{}
	for k, n := range counts {
		out[k] = n - within[k]
	}
	return out
}

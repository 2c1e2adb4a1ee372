package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The registry at the limits of its machine: more clients than it has
// file descriptors, and a memory cgroup smaller than the data in flight.

// procFDs is the number of open files of process pid.
func procFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// procStatus is a field of /proc/PID/status in bytes (VmRSS, VmHWM: "kB").
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			f := strings.Fields(v)
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n << 10
		}
	}
	t.Fatalf("/proc/%d/status has no %s", pid, field)
	return 0
}

// metricsOf reads the samples of s's /metrics whose name starts with prefix.
func metricsOf(t *testing.T, s *Server, prefix string) map[string]float64 {
	t.Helper()
	_, body := httpDo(t, noRedirect, http.MethodGet, s.URL+"/metrics", nil, nil, http.StatusOK)
	out := map[string]float64{}
	for l := range strings.Lines(string(body)) {
		l = strings.TrimSpace(l)
		if !strings.HasPrefix(l, prefix) {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if v, err := strconv.ParseFloat(l[i+1:], 64); err == nil {
			out[l[:i]] = v
		}
	}
	return out
}

// serverFailures sums berth_http_requests_total over the 5xx statuses.
func serverFailures(t *testing.T, s *Server) (n float64, which []string) {
	t.Helper()
	for k, v := range metricsOf(t, s, "berth_http_requests_total") {
		if strings.Contains(k, `status="5`) && v > 0 {
			n += v
			which = append(which, fmt.Sprintf("%s %v", k, v))
		}
	}
	return n, which
}

// tally counts what a load's clients got.
type tally struct {
	mu       sync.Mutex
	statuses map[string]int // "METHOD STATUS", or "METHOD error"
	errs     []string
}

func (c *tally) add(method string, status int, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.statuses == nil {
		c.statuses = map[string]int{}
	}
	if err != nil {
		c.statuses[method+" error"]++
		if len(c.errs) < 10 {
			c.errs = append(c.errs, err.Error())
		}
		return
	}
	c.statuses[fmt.Sprintf("%s %d", method, status)]++
}

func (c *tally) count(pred func(key string) bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for k, v := range c.statuses {
		if pred(k) {
			n += v
		}
	}
	return n
}

// do sends one request with client and drains the answer, counting it.
func (c *tally) do(ctx context.Context, client *http.Client, method, url string, body io.Reader, size int64) (int, []byte, http.Header) {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		c.add(method, 0, err)
		return 0, nil, nil
	}
	if body != nil {
		req.ContentLength = size
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	res, err := client.Do(req)
	if err != nil {
		c.add(method, 0, err)
		return 0, nil, nil
	}
	defer res.Body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, res.Body); err != nil {
		c.add(method, 0, err)
		return 0, nil, nil
	}
	c.add(method, res.StatusCode, nil)
	return res.StatusCode, h.Sum(nil), res.Header
}

// pushPull pushes a fresh blob to repo and pulls it back, failing t
// unless both work: the server is healthy.
func pushPull(t *testing.T, s *Server, repo string) {
	t.Helper()
	b := randomBytes(64 << 10)
	putBlob(t, s.URL, repo, b)
	_, got := httpDo(t, noRedirect, http.MethodGet, s.URL+"/v2/"+repo+"/blobs/"+sha256Digest(b), nil, nil, http.StatusOK)
	if !bytes.Equal(got, b) {
		t.Errorf("pulled %d bytes, pushed %d", len(got), len(b))
	}
	httpDo(t, noRedirect, http.MethodGet, s.URL+"/readyz", nil, nil, http.StatusOK)
}

// settle polls until cond holds, for up to a minute (connections closing,
// goroutines ending), and reports whether it did.
func settle(cond func() bool) bool {
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// TestFileLimit: the registry runs with 256 file descriptors
// (RLIMIT_NOFILE, set with prlimit once it listens) and 400 clients each
// on a connection of its own pull a 1 MiB blob and push small ones. With
// http.maxConnections under the limit the connections beyond it wait
// their turn and every request succeeds; without a cap, accept fails with
// EMFILE and the server backs off rather than spinning or stopping. Either
// way it does not crash, and once the clients are gone its open files
// return to where they were, and a push and a pull work.
func TestFileLimit(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	_, err := exec.LookPath("prlimit")
	prerequisite(t, err == nil, "prlimit (util-linux) is not installed")
	const nofile, clients = 256, 400
	for _, tc := range []struct {
		name             string
		maxConns, rounds int
	}{
		// Each connection may hold a stored file open besides its
		// socket (a blob being sent or written): a cap under half
		// the limit leaves room for both and for the server's own.
		{"capped", 100, 3},
		{"uncapped", 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			httpYAML := ""
			if tc.maxConns > 0 {
				httpYAML = fmt.Sprintf("  maxConnections: %d\n", tc.maxConns)
			}
			s := startServerWith(t, Options{Kind: Berth, Root: t.TempDir(), HTTP: httpYAML})
			blob := randomBytes(1 << 20)
			putBlob(t, s.URL, "limits/pull", blob)
			want := sha256.Sum256(blob)
			pushPull(t, s, "limits/warm")
			before := procFDs(t, s.PID())
			if out, err := exec.Command("prlimit", "--pid", strconv.Itoa(s.PID()), fmt.Sprintf("--nofile=%d:%d", nofile, nofile)).CombinedOutput(); err != nil {
				t.Fatalf("prlimit: %v: %s", err, out)
			}

			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute) // bounds the load
			defer cancel()
			var c tally
			var wg sync.WaitGroup
			var transports []*http.Transport
			start := time.Now()
			for i := range clients {
				tr := &http.Transport{MaxConnsPerHost: 1, DisableCompression: true}
				transports = append(transports, tr)
				client := &http.Client{Transport: tr, CheckRedirect: noRedirect.CheckRedirect}
				wg.Go(func() {
					defer tr.CloseIdleConnections() // the client is done: it goes
					for r := range tc.rounds {
						st, sum, _ := c.do(ctx, client, "GET", s.URL+"/v2/limits/pull/blobs/"+sha256Digest(blob), nil, 0)
						if st == 200 && !bytes.Equal(sum, want[:]) {
							c.add("GET wrong bytes", 0, errors.New("a blob GET returned other bytes"))
						}
						small := randomBytes(4096 + i + r)
						c.do(ctx, client, "POST", fmt.Sprintf("%s/v2/limits/c%d/blobs/uploads/?digest=%s", s.URL, i%20, sha256Digest(small)),
							bytes.NewReader(small), int64(len(small)))
					}
				})
			}
			wg.Wait()
			took := time.Since(start)
			for _, tr := range transports {
				tr.CloseIdleConnections()
			}
			t.Logf("%d clients x %d rounds under RLIMIT_NOFILE=%d, maxConnections=%d: %.1fs; answers:\n%s",
				clients, tc.rounds, nofile, tc.maxConns, took.Seconds(), formatCounts(c.statuses))
			for _, e := range c.errs {
				t.Logf("client error: %s", e)
			}
			if s.Exited() {
				t.Fatalf("the server died under the load: %s", s.LogTail(20))
			}
			acceptErrors := strings.Count(grepLog(t, s, "Accept error", 1<<20), "\n")
			t.Logf("accept errors logged: %d (http.Server backs off from 5ms to 1s between them, from 5ms again after an accept)", acceptErrors)
			// A spinning listener logs thousands a second; backing off,
			// at most one series 5ms..1s per accepted connection.
			if max := (int(took.Seconds()) + 1) * 100; acceptErrors > max {
				t.Errorf("%d accept errors in %.0fs: the listener spins", acceptErrors, took.Seconds())
			}
			ok := c.count(func(k string) bool { return k == "GET 200" || k == "POST 201" })
			if tc.maxConns > 0 && ok != 2*clients*tc.rounds {
				t.Errorf("with the cap, %d of %d requests succeeded; want all", ok, 2*clients*tc.rounds)
			}
			if ok == 0 {
				t.Errorf("no request succeeded")
			}
			// Without the cap, what finds no descriptor is told to
			// retry (503), never a 500.
			if n, which := serverFailures(t, s); tc.maxConns > 0 && n > 0 {
				t.Errorf("with the cap, %v answers were 5xx: %v", n, which)
			} else if n > 0 {
				t.Logf("without a cap, 5xx answers: %v", which)
				if c.count(func(k string) bool { return strings.HasSuffix(k, " 500") }) > 0 {
					t.Errorf("out of file descriptors was answered 500, not 503:\n%s", grepLog(t, s, "status=500", 5))
				}
			}

			// The clients are gone: the server recovers.
			var after int
			if !settle(func() bool { after = procFDs(t, s.PID()); return after <= before+5 }) {
				t.Errorf("open files: %d before the load, %d a minute after it", before, after)
			}
			t.Logf("open files: %d before the load, %d after", before, after)
			pushPull(t, s, "limits/after")
		})
	}
}

// memCgroup is a memory cgroup made for one test: v2 (memory.max) where
// the memory controller is on the unified hierarchy, else v1
// (memory.limit_in_bytes, as on hybrid hosts).
type memCgroup struct {
	dir string
	v2  bool
}

// newMemCgroup creates a cgroup limited to limit bytes (swap included on
// v1) and moves pid into it; cleanup moves it back out and removes the
// cgroup.
func newMemCgroup(t *testing.T, pid int, limit int64) *memCgroup {
	t.Helper()
	prerequisite(t, os.Geteuid() == 0, "a memory cgroup needs root")
	name := fmt.Sprintf("berth-test-%d-%d", os.Getpid(), pid)
	var cg memCgroup
	parent := "/sys/fs/cgroup"
	if b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil && strings.Contains(string(b), "memory") {
		cg.v2 = true
	} else {
		parent = "/sys/fs/cgroup/memory"
		_, err := os.Stat(parent + "/memory.limit_in_bytes")
		prerequisite(t, err == nil, "no memory cgroup controller (v2 or v1) under /sys/fs/cgroup")
	}
	cg.dir = parent + "/" + name
	if err := os.Mkdir(cg.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Out first: a cgroup with a process in it cannot be removed.
		os.WriteFile(parent+"/cgroup.procs", []byte(strconv.Itoa(pid)), 0)
		if err := os.Remove(cg.dir); err != nil && !os.IsNotExist(err) {
			t.Errorf("removing the test cgroup: %v", err)
		}
	})
	n := strconv.FormatInt(limit, 10)
	if cg.v2 {
		cg.write(t, "memory.max", n)
		cg.write(t, "memory.swap.max", "0")
	} else {
		cg.write(t, "memory.limit_in_bytes", n)
		if _, err := os.Stat(cg.dir + "/memory.memsw.limit_in_bytes"); err == nil {
			cg.write(t, "memory.memsw.limit_in_bytes", n)
		}
	}
	cg.write(t, "cgroup.procs", strconv.Itoa(pid))
	return &cg
}

func (cg *memCgroup) write(t *testing.T, file, value string) {
	t.Helper()
	if err := os.WriteFile(cg.dir+"/"+file, []byte(value), 0); err != nil {
		t.Fatalf("cgroup %s = %s: %v", file, value, err)
	}
}

// stats are the peak usage and the OOM kills in the cgroup so far.
func (cg *memCgroup) stats(t *testing.T) (peak int64, oomKills int) {
	t.Helper()
	read := func(file string) string {
		b, err := os.ReadFile(cg.dir + "/" + file)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	field := func(text, key string) int {
		for l := range strings.Lines(text) {
			if v, ok := strings.CutPrefix(l, key+" "); ok {
				n, _ := strconv.Atoi(strings.TrimSpace(v))
				return n
			}
		}
		return 0
	}
	peakFile, events := "memory.max_usage_in_bytes", "memory.oom_control"
	if cg.v2 {
		peakFile, events = "memory.peak", "memory.events"
	}
	if _, err := os.Stat(cg.dir + "/" + peakFile); err == nil {
		peak, _ = strconv.ParseInt(strings.TrimSpace(read(peakFile)), 10, 64)
	}
	return peak, field(read(events), "oom_kill")
}

// blobStream is blob i of the memory test: size bytes of a seeded
// stream, made again for each read, so that the test holds none of it.
func blobStream(i int, size int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8([32]byte{byte(i), 'b', 'e', 'r', 't', 'h'}), size)
}

// TestMemoryLimit: in a memory cgroup of 128 MiB (swap excluded), 32
// clients push 16 MiB blobs at once (monolithic or in 4 MiB chunks) and
// pull them back, 1 GiB through a process allowed an eighth of it: no OOM
// kill, every byte right. Buffers are per connection and bounded, so the
// peak stays well under the limit.
func TestMemoryLimit(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	const limit, clients, size, chunk = 128 << 20, 32, 16 << 20, 4 << 20
	s := startServerWith(t, Options{Kind: Berth, Root: t.TempDir(), Quiet: true})
	cg := newMemCgroup(t, s.PID(), limit)

	digests := make([]string, clients)
	for i := range clients {
		h := sha256.New()
		io.Copy(h, blobStream(i, size))
		digests[i] = "sha256:" + fmt.Sprintf("%x", h.Sum(nil))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute) // bounds the load
	defer cancel()
	var c tally
	var wg sync.WaitGroup
	start := time.Now()
	for i := range clients {
		wg.Go(func() {
			client := &http.Client{Transport: &http.Transport{DisableCompression: true}, CheckRedirect: noRedirect.CheckRedirect}
			repo := fmt.Sprintf("%s/v2/mem/c%d", s.URL, i%4)
			st, _, h := c.do(ctx, client, "POST", repo+"/blobs/uploads/", nil, 0)
			if st != http.StatusAccepted {
				return
			}
			loc := s.URL + h.Get("Location")
			if i%2 == 1 { // in chunks
				for off := int64(0); off < size; off += chunk {
					r := io.LimitReader(blobStream(i, size), off+chunk)
					io.CopyN(io.Discard, r, off)
					req, _ := http.NewRequestWithContext(ctx, "PATCH", loc, r)
					req.ContentLength = chunk
					req.Header.Set("Content-Type", "application/octet-stream")
					req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", off, off+chunk-1))
					res, err := client.Do(req)
					if err != nil {
						c.add("PATCH", 0, err)
						return
					}
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
					c.add("PATCH", res.StatusCode, nil)
					if res.StatusCode != http.StatusAccepted {
						return
					}
					loc = s.URL + res.Header.Get("Location")
				}
				c.do(ctx, client, "PUT", withQuery(loc, "digest", digests[i]), nil, 0)
			} else {
				c.do(ctx, client, "PUT", withQuery(loc, "digest", digests[i]), blobStream(i, size), size)
			}
			for _, j := range []int{i, (i + 1) % clients} {
				st, sum, _ := c.do(ctx, client, "GET", fmt.Sprintf("%s/v2/mem/c%d/blobs/%s", s.URL, j%4, digests[j]), nil, 0)
				if st == http.StatusOK && "sha256:"+fmt.Sprintf("%x", sum) != digests[j] {
					c.add("GET wrong bytes", 0, errors.New("a blob GET returned other bytes"))
				}
			}
		})
	}
	wg.Wait()
	peak, kills := cg.stats(t)
	hwm := int64(-1)
	if !s.Exited() {
		hwm = procStatus(t, s.PID(), "VmHWM")
	}
	t.Logf("%d clients, %d MiB each, in a %d MiB cgroup: %.1fs; peak usage %.1f MiB (page cache included), server VmHWM %.1f MiB, oom kills %d; answers:\n%s",
		clients, size>>20, limit>>20, time.Since(start).Seconds(), float64(peak)/(1<<20),
		float64(hwm)/(1<<20), kills, formatCounts(c.statuses))
	for _, e := range c.errs {
		t.Errorf("client error: %s", e)
	}
	if kills != 0 || s.Exited() {
		t.Fatalf("the server was OOM-killed (%d kills; exited: %t)", kills, s.Exited())
	}
	// A GET of the other client's blob may race its push: 404 then.
	okCount := c.count(func(k string) bool { return k == "GET 200" })
	if bad := c.count(func(k string) bool {
		return k != "GET 200" && k != "GET 404" && !strings.HasSuffix(k, " 201") && !strings.HasSuffix(k, " 202")
	}); bad > 0 || okCount < clients {
		t.Errorf("%d answers other than 2xx (and 404 for a blob not pushed yet), %d GETs whole; want none and at least %d", bad, okCount, clients)
	}
	pushPull(t, s, "mem/after")
}

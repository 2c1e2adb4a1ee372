package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/versitygw"
)

// The pull-through cache across replicas (issue 16): two mirror Berths over
// one bucket, in front of an upstream Berth, asked for an uncached 256 MiB
// blob by 20 clients at once, download it from the upstream once.

// proxyBlobSize is the size of the uncached blob the clients pull.
const proxyBlobSize = 256 << 20

// replicaPrefix is the repository prefix the mirrors serve the upstream under.
const replicaPrefix = "origin.test"

// TestProxyReplicas pulls one uncached 256 MiB blob with 20 concurrent
// GETs, 10 through each of two mirror replicas over one bucket: the
// upstream's access log shows one GET of it, every client gets the whole
// blob with the right digest, and both replicas then serve it as a cache
// hit. Once with the mirrors streaming the stored bytes themselves, once
// with them redirecting blob GETs to the bucket.
func TestProxyReplicas(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	for _, redirect := range []bool{false, true} {
		t.Run(redirectName(redirect), func(t *testing.T) { proxyReplicas(t, redirect) })
	}
}

func proxyReplicas(t *testing.T, redirect bool) {
	upstream := startServerWith(t, Options{Kind: Berth, Driver: Filesystem, Root: t.TempDir()})
	const remote = "proxy/big"
	layer := randomLayer(proxyBlobSize)
	img := newImage(layer)
	pushTree(t, upstream.URL, remote, "v1", img)
	t.Logf("upstream %s: %s:v1 (%s), layer %s, %d MiB", upstream.URL, remote, img.digest, layer.digest, proxyBlobSize>>20)
	upstreamBefore := replicaUpstreamBlobGETs(t, upstream, remote)
	if len(upstreamBefore) != 0 {
		t.Fatalf("the upstream's access log shows blob GETs of %s before any pull: %v", remote, upstreamBefore)
	}

	gw := startVersity(t)
	extra := fmt.Sprintf("proxy:\n  upstreams:\n    - name: origin\n      url: %s\n      prefix: %s\n", upstream.URL, replicaPrefix)
	mirror := func() *Server {
		return startServerWith(t, Options{Kind: Berth, Driver: S3, S3: S3Options{
			Endpoint: gw.Endpoint, Bucket: gw.Bucket, Prefix: "mirror",
			AccessKey: gw.AccessKey, SecretKey: gw.SecretKey, Redirect: redirect,
		}, Extra: extra})
	}
	replicas := []*Server{mirror(), mirror()}
	cached := replicaPrefix + "/" + remote

	// A client asks for the manifest first, as a pull does; each replica
	// answers it (the first fetches it, the second finds it stored).
	for i, s := range replicas {
		_, body := httpDo(t, noRedirect, http.MethodGet, s.URL+"/v2/"+cached+"/manifests/v1", nil,
			map[string]string{"Accept": acceptManifests}, http.StatusOK)
		if sha256Digest(body) != img.digest {
			t.Fatalf("manifest through replica %d: digest %s, want %s", i, sha256Digest(body), img.digest)
		}
	}

	// 20 clients at once, 10 per replica, each with its own connection.
	const perReplica = 10
	type result struct {
		replica int
		size    int64
		digest  string
		err     error
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	results := make(chan result, perReplica*len(replicas))
	var start sync.WaitGroup
	start.Add(1)
	var wg sync.WaitGroup
	began := time.Now()
	for i, s := range replicas {
		for range perReplica {
			wg.Go(func() {
				client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
				start.Wait()
				n, d, err := getBlobDigest(ctx, client, s.URL+"/v2/"+cached+"/blobs/"+layer.digest)
				results <- result{replica: i, size: n, digest: d, err: err}
			})
		}
	}
	start.Done()
	wg.Wait()
	close(results)
	elapsed := time.Since(began)
	ok := 0
	for r := range results {
		switch {
		case r.err != nil:
			t.Errorf("GET through replica %d: %v", r.replica, r.err)
		case r.size != proxyBlobSize || r.digest != layer.digest:
			t.Errorf("GET through replica %d: %d bytes, digest %s; want %d bytes, %s", r.replica, r.size, r.digest, proxyBlobSize, layer.digest)
		default:
			ok++
		}
	}
	t.Logf("%d of %d concurrent GETs (%d per replica) received the %d MiB blob with its digest, in %.1fs",
		ok, perReplica*len(replicas), perReplica, proxyBlobSize>>20, elapsed.Seconds())

	// The upstream sent the blob once.
	gets := replicaUpstreamBlobGETs(t, upstream, remote)
	if len(gets) != 1 {
		t.Errorf("the upstream's access log shows %d GETs of blobs of %s, want 1: %v", len(gets), remote, gets)
	} else if gets[0].status != http.StatusOK || gets[0].bytesOut != proxyBlobSize {
		t.Errorf("the upstream's one blob GET: status %d, %d bytes out; want 200 and %d", gets[0].status, gets[0].bytesOut, proxyBlobSize)
	} else {
		t.Logf("upstream: 1 GET of the blob, %d bytes", gets[0].bytesOut)
	}

	// Across the replicas: one request filled the cache (miss), the other
	// 19 were served what it stored (hit).
	counts := map[string]int{}
	for i, s := range replicas {
		c := map[string]int{}
		for _, l := range mirrorBlobGETs(t, s, cached) {
			c[l.cache+" "+strconv.Itoa(l.status)]++
			counts[l.cache]++
		}
		t.Logf("replica %d: blob GETs by cache result and status: %v", i, c)
	}
	if counts["miss"] != 1 || counts["hit"] != perReplica*len(replicas)-1 || len(counts) != 2 {
		t.Errorf("blob GETs by cache result over both replicas: %v; want 1 miss and %d hits", counts, perReplica*len(replicas)-1)
	}

	// No claim is left behind.
	if claims := bucketClaims(t, gw); len(claims) != 0 {
		t.Errorf("download claims left in the bucket: %v", claims)
	}

	// Now cached: each replica serves it again as a hit, and the upstream
	// is not asked.
	for i, s := range replicas {
		before := len(mirrorBlobGETs(t, s, cached))
		client := &http.Client{}
		n, d, err := getBlobDigest(ctx, client, s.URL+"/v2/"+cached+"/blobs/"+layer.digest)
		if err != nil || n != proxyBlobSize || d != layer.digest {
			t.Fatalf("GET of the cached blob through replica %d: %d bytes, digest %s, %v", i, n, d, err)
		}
		after := mirrorBlobGETs(t, s, cached)
		if len(after) != before+1 {
			t.Fatalf("replica %d: %d blob GETs logged after one more, want %d", i, len(after), before+1)
		}
		last := after[len(after)-1]
		wantStatus := http.StatusOK
		if redirect {
			wantStatus = http.StatusTemporaryRedirect
		}
		if last.cache != "hit" || last.status != wantStatus {
			t.Errorf("replica %d served the cached blob with cache=%q, status %d; want cache=hit, status %d", i, last.cache, last.status, wantStatus)
		}
	}
	if gets := replicaUpstreamBlobGETs(t, upstream, remote); len(gets) != 1 {
		t.Errorf("after the cached GETs the upstream's access log shows %d blob GETs, want still 1", len(gets))
	}
}

// getBlobDigest GETs url (following redirects) and returns the size and
// sha256 digest of the body it received.
func getBlobDigest(ctx context.Context, client *http.Client, url string) (int64, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return 0, "", fmt.Errorf("%s: %s", resp.Status, b)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		return n, "", fmt.Errorf("after %d bytes: %w", n, err)
	}
	if resp.ContentLength >= 0 && resp.ContentLength != n {
		return n, "", fmt.Errorf("Content-Length %d, body %d bytes", resp.ContentLength, n)
	}
	return n, "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// accessLine is a blob GET of berth's access log.
type accessLine struct {
	status   int
	bytesOut int64
	upstream string
	cache    string
}

var (
	logStatus   = regexp.MustCompile(` status=(\d+) `)
	logBytesOut = regexp.MustCompile(` bytes_out=(\d+) `)
	logUpstream = regexp.MustCompile(` upstream=(\S*)`)
	logCache    = regexp.MustCompile(` cache=(\S*)`)
)

// blobGETLines returns the blob GETs of repository repo in s's access log.
func blobGETLines(t *testing.T, s *Server, repo string) []accessLine {
	t.Helper()
	b, err := s.ReadLog(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []accessLine
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	want := "msg=request method=GET route=/v2/{name}/blobs/{digest} repository=" + repo + " "
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, want) {
			continue
		}
		var l accessLine
		if m := logStatus.FindStringSubmatch(line); m != nil {
			l.status, _ = strconv.Atoi(m[1])
		}
		if m := logBytesOut.FindStringSubmatch(line); m != nil {
			l.bytesOut, _ = strconv.ParseInt(m[1], 10, 64)
		}
		if m := logUpstream.FindStringSubmatch(line); m != nil {
			l.upstream = strings.Trim(m[1], `"`)
		}
		if m := logCache.FindStringSubmatch(line); m != nil {
			l.cache = strings.Trim(m[1], `"`)
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// replicaUpstreamBlobGETs returns the blob GETs of repo the upstream logged.
func replicaUpstreamBlobGETs(t *testing.T, s *Server, repo string) []accessLine {
	t.Helper()
	return blobGETLines(t, s, repo)
}

// mirrorBlobGETs returns the blob GETs of the cached repository repo that
// a mirror logged; each must name the upstream.
func mirrorBlobGETs(t *testing.T, s *Server, repo string) []accessLine {
	t.Helper()
	lines := blobGETLines(t, s, repo)
	for _, l := range lines {
		if l.upstream != "origin" {
			t.Errorf("%s logged a blob GET of the cached %s with upstream=%q, want origin", s.URL, repo, l.upstream)
		}
	}
	return lines
}

// bucketClaims lists the blob download claims in gw's bucket (versitygw's
// posix backend keeps each object as a file).
func bucketClaims(t *testing.T, gw *versitygw.Server) []string {
	t.Helper()
	var out []string
	root := filepath.Join(gw.Dir, gw.Bucket)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.Contains(filepath.ToSlash(p), "/_berth/proxy/claims/") {
			out = append(out, strings.TrimPrefix(p, root))
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return out
}

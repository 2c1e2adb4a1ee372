package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The soak: clients push, pull, delete and write referrers through two
// replicas over one storage while two collectors run in a loop, the
// in-server loop of replica A and "berth gc" as a separate process (as if
// on another machine). Afterwards every manifest that got 201 and is still
// reachable must pull whole with matching digests, everything else must be
// gone, and no request may have got a 5xx.

const (
	soakDuration     = 30 * time.Second // of the load, per backend
	soakGrace        = 3 * time.Second
	soakUploadMaxAge = 15 * time.Second
	soakMaxOps       = 3000      // per worker, a bound besides the time
	soakChunked      = 200 << 10 // layers this big are uploaded in PATCHes
	soakSignature    = "application/vnd.berth.test.signature.payload"
	soakMaxRetries   = 5 // pushes that got MANIFEST_BLOB_UNKNOWN in a row
)

var soakGCConfig = fmt.Sprintf("gc:\n  interval: 1s\n  grace: %s\n  deleteUntagged: true\n  uploadMaxAge: %s\n",
	soakGrace, soakUploadMaxAge)

// TestGCSoak runs the soak on the filesystem and on S3 (versitygw).
func TestGCSoak(t *testing.T) {
	needIntegration(t)
	t.Run("filesystem", func(t *testing.T) {
		root := t.TempDir()
		a := startServerWith(t, Options{Kind: Berth, Root: root, Extra: soakGCConfig})
		b := startServerWith(t, Options{Kind: Berth, Root: root})
		runSoak(t, a, b, nil)
	})
	t.Run("s3", func(t *testing.T) {
		gw := startVersity(t)
		s3 := S3Options{Endpoint: gw.Endpoint, Bucket: gw.Bucket, Prefix: "soak", AccessKey: gw.AccessKey, SecretKey: gw.SecretKey}
		// A redirects blob GETs to the bucket, B serves the bytes.
		withRedirect := s3
		withRedirect.Redirect = true
		a := startServerWith(t, Options{Kind: Berth, Driver: S3, S3: withRedirect, Extra: soakGCConfig})
		b := startServerWith(t, Options{Kind: Berth, Driver: S3, S3: s3})
		env := append(os.Environ(), "BERTH_STORAGE_S3_ACCESSKEY="+gw.AccessKey, "BERTH_STORAGE_S3_SECRETKEY="+gw.SecretKey)
		runSoak(t, a, b, env)
	})
}

// soak is the load and what it recorded.
type soak struct {
	bases    []string // the replicas: each request goes to one at random
	pool     []gcBlob // layers shared by all images
	deadline time.Time
	maxOps   int          // per worker, a bound besides the time
	client   *http.Client // to the registry: redirects are answers
	bucket   *http.Client // to the presigned URLs of redirects
	slots    [][]*soakSlot

	mu        sync.Mutex
	events    map[string]int // what the clients did
	statuses  map[string]int // "METHOD STATUS" of the registry's answers
	codes     map[string]int // 4xx answers by "STATUS CODE"
	failures  []string
	pushed    []soakPushed             // every manifest that got 201
	deleted   []soakPushed             // tagged manifests deleted by DELETE
	referrers map[string][]*gcManifest // by subject digest: those that got 201
	home      map[string]string        // blob digest -> a repository it was linked into
	pushedAt  map[string]time.Time     // manifest digest -> when its PUT got 201
	// The time each answer took, measured by the client from sending
	// the request to the end of the answer's body.
	requests   int
	slowest    time.Duration
	slowestReq string
	overSecond []string // requests that took over a second
}

// soakSlot is a tag that one pusher writes, guarded so that a puller, a
// deleter or a referrer writer knows what it points at while it works.
type soakSlot struct {
	repo, tag string
	mu        sync.Mutex
	cur       *gcManifest // nil: never pushed, or deleted
}

type soakPushed struct {
	repo string
	m    *gcManifest
}

// errRetry: a manifest PUT got MANIFEST_BLOB_UNKNOWN, which the contract
// allows (a collector deleted a blob the client saw): upload and retry.
// errFailed: the request's failure is recorded.
var errRetry, errFailed = errors.New("retry"), errors.New("failed")

func newSoak(bases []string) *soak {
	s := &soak{
		bases:     bases,
		deadline:  time.Now().Add(soakDuration),
		maxOps:    soakMaxOps,
		events:    map[string]int{},
		statuses:  map[string]int{},
		codes:     map[string]int{},
		referrers: map[string][]*gcManifest{},
		home:      map[string]string{},
		pushedAt:  map[string]time.Time{},
	}
	transport := &http.Transport{MaxIdleConnsPerHost: 32}
	s.client = &http.Client{Transport: transport, Timeout: 2 * time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	s.bucket = &http.Client{Transport: transport, Timeout: 2 * time.Minute}
	// Small layers mostly, and a few uploaded in chunks.
	for i := range 24 {
		s.pool = append(s.pool, randomLayer(512+rand.IntN(64<<10)+i))
	}
	for range 3 {
		s.pool = append(s.pool, randomLayer(soakChunked+rand.IntN(100<<10)))
	}
	return s
}

func (s *soak) count(event string) {
	s.mu.Lock()
	s.events[event]++
	s.mu.Unlock()
}

func (s *soak) fail(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures = append(s.failures, time.Now().Format("15:04:05.000 ")+fmt.Sprintf(format, args...))
}

func (s *soak) base() string { return s.bases[rand.IntN(len(s.bases))] }

func (s *soak) running() bool { return time.Now().Before(s.deadline) }

// send sends one request to a replica and counts the answer; a transport
// error or a 5xx is a failure. It returns the status (0 after a transport
// error), the header and the body.
func (s *soak) send(method, url string, body []byte, header map[string]string) (int, http.Header, []byte) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		s.fail("%s %s: %v", method, url, err)
		return 0, nil, nil
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		s.fail("%s %s: %v", method, url, err)
		return 0, nil, nil
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		s.fail("%s %s: reading the body: %v", method, url, err)
		return 0, nil, nil
	}
	took := time.Since(start)
	s.mu.Lock()
	s.requests++
	if took > s.slowest {
		s.slowest, s.slowestReq = took, method+" "+url
	}
	if took > time.Second {
		s.overSecond = append(s.overSecond, fmt.Sprintf("%s %s %s: %d in %s", start.Format("15:04:05.000"), method, url, resp.StatusCode, took.Round(time.Millisecond)))
	}
	s.statuses[fmt.Sprintf("%s %d", method, resp.StatusCode)]++
	if resp.StatusCode >= 400 && resp.StatusCode < 500 {
		s.codes[fmt.Sprintf("%d %s", resp.StatusCode, errorCode(method, got))]++
	}
	s.mu.Unlock()
	if resp.StatusCode >= 500 {
		s.fail("%s %s: %s: %.300s", method, url, resp.Status, got)
	}
	return resp.StatusCode, resp.Header, got
}

// errorCode is the first OCI error code in body.
func errorCode(method string, body []byte) string {
	if method == http.MethodHead {
		return "(HEAD, no body)"
	}
	var env struct{ Errors []struct{ Code string } }
	if json.Unmarshal(body, &env) != nil || len(env.Errors) == 0 {
		return "(no error code)"
	}
	return env.Errors[0].Code
}

func (s *soak) homeOf(d string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.home[d]
}

func (s *soak) setHome(d, repo string) {
	s.mu.Lock()
	s.home[d] = repo
	s.mu.Unlock()
}

// ensureBlob makes sure b is in repo as docker does: HEAD, then, if
// missing, a mount from a repository it was pushed to (sometimes) or an
// upload: in chunks for large blobs, else monolithic in one or two
// requests.
func (s *soak) ensureBlob(repo string, b gcBlob) error {
	st, _, _ := s.send(http.MethodHead, s.base()+"/v2/"+repo+"/blobs/"+b.digest, nil, nil)
	switch st {
	case http.StatusOK:
		s.count("blob HEAD: present")
		return nil
	case http.StatusNotFound:
	case 0:
		return errFailed
	default:
		s.fail("HEAD %s blob %s: %d", repo, b.digest, st)
		return errFailed
	}
	if from := s.homeOf(b.digest); from != "" && from != repo && rand.IntN(2) == 0 {
		st, h, body := s.send(http.MethodPost, s.base()+"/v2/"+repo+"/blobs/uploads/?mount="+b.digest+"&from="+from, nil, nil)
		switch st {
		case http.StatusCreated:
			s.count("blob mounted")
			s.setHome(b.digest, repo)
			return nil
		case http.StatusAccepted:
			// Not mountable (any more): upload in the session started.
			s.count("blob mount refused: uploaded")
			return s.finishUpload(repo, h.Get("Location"), b, b.data)
		default:
			s.fail("POST mount of %s from %s into %s: %d %.200s", b.digest, from, repo, st, body)
			return errFailed
		}
	}
	if len(b.data) >= soakChunked {
		return s.uploadChunked(repo, b)
	}
	if rand.IntN(4) == 0 {
		st, _, body := s.send(http.MethodPost, s.base()+"/v2/"+repo+"/blobs/uploads/?digest="+b.digest, b.data,
			map[string]string{"Content-Type": "application/octet-stream"})
		if st != http.StatusCreated {
			s.fail("POST %s monolithic upload of %s: %d %.200s", repo, b.digest, st, body)
			return errFailed
		}
		s.count("blob uploaded: one POST")
		s.setHome(b.digest, repo)
		return nil
	}
	loc, err := s.startUpload(repo)
	if err != nil {
		return err
	}
	s.count("blob uploaded: POST and PUT")
	return s.finishUpload(repo, loc, b, b.data)
}

func (s *soak) startUpload(repo string) (string, error) {
	st, h, body := s.send(http.MethodPost, s.base()+"/v2/"+repo+"/blobs/uploads/", nil, nil)
	if st != http.StatusAccepted || h.Get("Location") == "" {
		s.fail("POST %s upload: %d %.200s", repo, st, body)
		return "", errFailed
	}
	return h.Get("Location"), nil
}

// finishUpload PUTs the last bytes of b's upload at loc.
func (s *soak) finishUpload(repo, loc string, b gcBlob, last []byte) error {
	st, _, body := s.send(http.MethodPut, s.base()+withQuery(loc, "digest", b.digest), last,
		map[string]string{"Content-Type": "application/octet-stream"})
	if st != http.StatusCreated {
		s.fail("PUT %s upload of %s: %d %.200s", repo, b.digest, st, body)
		return errFailed
	}
	s.setHome(b.digest, repo)
	return nil
}

// uploadChunked uploads b in three PATCHes and a PUT, each request to a
// replica at random.
func (s *soak) uploadChunked(repo string, b gcBlob) error {
	loc, err := s.startUpload(repo)
	if err != nil {
		return err
	}
	chunk := len(b.data)/3 + 1
	for off := 0; off < len(b.data); off += chunk {
		c := b.data[off:min(off+chunk, len(b.data))]
		st, h, body := s.send(http.MethodPatch, s.base()+loc, c, map[string]string{
			"Content-Type": "application/octet-stream", "Content-Range": fmt.Sprintf("%d-%d", off, off+len(c)-1),
		})
		if st != http.StatusAccepted {
			s.fail("PATCH %s upload of %s at %d: %d %.200s", repo, b.digest, off, st, body)
			return errFailed
		}
		if l := h.Get("Location"); l != "" {
			loc = l
		}
	}
	s.count("blob uploaded: chunked")
	return s.finishUpload(repo, loc, b, nil)
}

// putManifest PUTs m to repo under ref (a tag or its digest).
func (s *soak) putManifest(repo, ref string, m *gcManifest) error {
	st, h, body := s.send(http.MethodPut, s.base()+"/v2/"+repo+"/manifests/"+ref, m.body,
		map[string]string{"Content-Type": m.mediaType})
	switch {
	case st == http.StatusCreated:
		if got := h.Get("Docker-Content-Digest"); got != m.digest {
			s.fail("PUT %s:%s: Docker-Content-Digest %q, want %s", repo, ref, got, m.digest)
		}
		if m.subject != "" && h.Get("OCI-Subject") != m.subject {
			s.fail("PUT %s@%s: OCI-Subject %q, want %s", repo, ref, h.Get("OCI-Subject"), m.subject)
		}
		return nil
	case st == http.StatusBadRequest && errorCode(http.MethodPut, body) == "MANIFEST_BLOB_UNKNOWN":
		s.count("manifest PUT: MANIFEST_BLOB_UNKNOWN, pushed again")
		return errRetry
	case st == 0:
		return errFailed
	default:
		s.fail("PUT %s:%s: %d %.300s", repo, ref, st, body)
		return errFailed
	}
}

// pushContent pushes what m references into repo: its blobs, then its
// children, each by digest.
func (s *soak) pushContent(repo string, m *gcManifest) error {
	for _, b := range m.blobs {
		if err := s.ensureBlob(repo, b); err != nil {
			return err
		}
	}
	for _, c := range m.children {
		if err := s.pushContent(repo, c); err != nil {
			return err
		}
		if err := s.putManifest(repo, c.digest, c); err != nil {
			return err
		}
		s.record(repo, c)
	}
	return nil
}

func (s *soak) record(repo string, m *gcManifest) {
	s.mu.Lock()
	s.pushed = append(s.pushed, soakPushed{repo, m})
	s.pushedAt[m.digest] = time.Now()
	if m.subject != "" {
		s.referrers[m.subject] = append(s.referrers[m.subject], m)
	}
	s.mu.Unlock()
}

// push pushes m and its content to repo, then PUTs it by ref while holding
// slot (if any), pushing again after MANIFEST_BLOB_UNKNOWN. It reports
// whether m got 201.
func (s *soak) push(repo, ref string, m *gcManifest, slot *soakSlot) bool {
	for attempt := 1; ; attempt++ {
		err := s.pushContent(repo, m)
		if err == nil {
			if slot != nil {
				slot.mu.Lock()
			}
			err = s.putManifest(repo, ref, m)
			if err == nil {
				s.record(repo, m)
				if slot != nil {
					slot.cur = m
				}
			}
			if slot != nil {
				slot.mu.Unlock()
			}
		}
		switch {
		case err == nil:
			return true
		case errors.Is(err, errRetry) && attempt < soakMaxRetries:
		case errors.Is(err, errRetry):
			s.fail("push of %s to %s:%s: MANIFEST_BLOB_UNKNOWN %d times in a row", m.digest, repo, ref, attempt)
			return false
		default:
			return false
		}
	}
}

// poolImage is a new image of one to three layers of the pool.
func (s *soak) poolImage() *gcManifest {
	idx := rand.Perm(len(s.pool))[:1+rand.IntN(3)]
	layers := make([]gcBlob, len(idx))
	for i, j := range idx {
		layers[i] = s.pool[j]
	}
	return newImage(layers...)
}

// pusher pushes images, sometimes an index over two, to its own tags,
// overwriting them; sometimes it starts an upload and leaves it.
func (s *soak) pusher(slots []*soakSlot) {
	for n := 0; n < s.maxOps && s.running(); n++ {
		slot := slots[rand.IntN(len(slots))]
		if rand.IntN(20) == 0 {
			if loc, err := s.startUpload(slot.repo); err == nil {
				st, _, _ := s.send(http.MethodPatch, s.base()+loc, randomBytes(1024),
					map[string]string{"Content-Type": "application/octet-stream", "Content-Range": "0-1023"})
				if st != http.StatusAccepted {
					s.fail("PATCH %s: %d", loc, st)
				}
				s.count("upload abandoned")
			}
		}
		m, kind := s.poolImage(), "push image by tag"
		if rand.IntN(5) == 0 {
			m, kind = newIndex(s.poolImage(), s.poolImage()), "push index by tag"
		}
		if s.push(slot.repo, slot.tag, m, slot) {
			s.count(kind)
		}
		time.Sleep(time.Duration(20+rand.IntN(60)) * time.Millisecond)
	}
}

func (s *soak) randomSlot() *soakSlot {
	row := s.slots[rand.IntN(len(s.slots))]
	return row[rand.IntN(len(row))]
}

// pullTree GETs m from repo by ref, its children and blobs. If live (the
// caller holds m's slot: m is tagged), everything must answer 200 with the
// right bytes; else 404 is allowed too.
func (s *soak) pullTree(repo, ref string, m *gcManifest, live bool) bool {
	st, h, body := s.send(http.MethodGet, s.base()+"/v2/"+repo+"/manifests/"+ref, nil, map[string]string{"Accept": acceptManifests})
	switch {
	case st == http.StatusOK && bytes.Equal(body, m.body) && h.Get("Docker-Content-Digest") == m.digest:
	case st == http.StatusNotFound && !live:
		return false
	case st == http.StatusOK:
		s.fail("GET manifest %s:%s (%s, reachable: %t): %d bytes, digest %s, Docker-Content-Digest %s",
			repo, ref, m.digest, live, len(body), sha256Digest(body), h.Get("Docker-Content-Digest"))
		return false
	case st != 0:
		s.fail("GET manifest %s:%s (%s, reachable: %t): %d %.300s", repo, ref, m.digest, live, st, body)
		return false
	default:
		return false
	}
	for _, c := range m.children {
		if !s.pullTree(repo, c.digest, c, live) {
			return false
		}
	}
	for _, b := range m.blobs {
		if !s.pullBlob(repo, b, live) {
			return false
		}
	}
	return true
}

// pullBlob GETs b from repo, following a redirect to the bucket.
func (s *soak) pullBlob(repo string, b gcBlob, live bool) bool {
	st, h, body := s.send(http.MethodGet, s.base()+"/v2/"+repo+"/blobs/"+b.digest, nil, nil)
	if st == http.StatusTemporaryRedirect {
		resp, err := s.bucket.Get(h.Get("Location"))
		if err != nil {
			s.fail("GET %s blob %s, redirected: %v", repo, b.digest, err)
			return false
		}
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			s.fail("GET %s blob %s, redirected: reading: %v", repo, b.digest, err)
			return false
		}
		st = resp.StatusCode
		s.mu.Lock()
		s.statuses[fmt.Sprintf("GET %d (presigned, from the bucket)", st)]++
		s.mu.Unlock()
		if st >= 500 {
			s.fail("GET %s blob %s, redirected to the bucket: %d %.200s", repo, b.digest, st, body)
			return false
		}
	}
	switch {
	case st == http.StatusOK && bytes.Equal(body, b.data):
		return true
	case st == http.StatusNotFound && !live:
		return false
	case st == http.StatusOK:
		s.fail("GET %s blob %s (reachable: %t): %d bytes, digest %s", repo, b.digest, live, len(body), sha256Digest(body))
	case st != 0:
		s.fail("GET %s blob %s (reachable: %t): %d %.300s", repo, b.digest, live, st, body)
	}
	return false
}

// puller pulls tagged images whole while holding their slot, and now and
// then anything ever pushed, which may be gone.
func (s *soak) puller() {
	for n := 0; n < s.maxOps && s.running(); n++ {
		if rand.IntN(10) < 7 {
			slot := s.randomSlot()
			slot.mu.Lock()
			if m := slot.cur; m != nil {
				if s.pullTree(slot.repo, slot.tag, m, true) {
					s.count("pull of a tagged manifest, whole")
				} else {
					s.mu.Lock()
					at := s.pushedAt[m.digest]
					s.mu.Unlock()
					s.fail("  (the pull of %s:%s = %s, pushed at %s)", slot.repo, slot.tag, m.digest, at.Format("15:04:05.000"))
				}
			}
			slot.mu.Unlock()
		} else {
			s.mu.Lock()
			p := s.pushed[rand.IntN(len(s.pushed))]
			s.mu.Unlock()
			if s.pullTree(p.repo, p.m.digest, p.m, false) {
				s.count("pull of any manifest: whole")
			} else {
				s.count("pull of any manifest: gone")
			}
		}
		time.Sleep(time.Duration(10+rand.IntN(30)) * time.Millisecond)
	}
}

// deleter DELETEs tagged manifests by digest.
func (s *soak) deleter() {
	for n := 0; n < s.maxOps && s.running(); n++ {
		time.Sleep(time.Duration(100+rand.IntN(200)) * time.Millisecond)
		slot := s.randomSlot()
		slot.mu.Lock()
		if m := slot.cur; m != nil {
			st, _, body := s.send(http.MethodDelete, s.base()+"/v2/"+slot.repo+"/manifests/"+m.digest, nil, nil)
			if st == http.StatusAccepted {
				slot.cur = nil
				s.mu.Lock()
				s.deleted = append(s.deleted, soakPushed{slot.repo, m})
				s.mu.Unlock()
				s.count("delete of a tagged manifest")
			} else if st != 0 {
				s.fail("DELETE %s@%s (tagged %s): %d %.200s", slot.repo, m.digest, slot.tag, st, body)
			}
		}
		slot.mu.Unlock()
	}
}

// referrers lists the referrers of subject in repo.
func (s *soak) listReferrers(repo, subject string) (map[string]bool, bool) {
	st, _, body := s.send(http.MethodGet, s.base()+"/v2/"+repo+"/referrers/"+subject, nil, nil)
	var idx struct{ Manifests []struct{ Digest string } }
	if st != http.StatusOK || json.Unmarshal(body, &idx) != nil {
		if st != 0 {
			s.fail("GET referrers of %s@%s: %d %.200s", repo, subject, st, body)
		}
		return nil, false
	}
	out := map[string]bool{}
	for _, m := range idx.Manifests {
		out[m.Digest] = true
	}
	return out, true
}

// checkReferrers fails unless the referrers of the tagged subject m in
// repo are exactly those pushed.
func (s *soak) checkReferrers(repo string, m *gcManifest) {
	got, ok := s.listReferrers(repo, m.digest)
	if !ok {
		return
	}
	s.mu.Lock()
	want := map[string]bool{}
	for _, r := range s.referrers[m.digest] {
		want[r.digest] = true
	}
	s.mu.Unlock()
	if !maps.Equal(got, want) {
		s.fail("referrers of tagged %s@%s: listed %v, pushed %v", repo, m.digest, sortedKeys(got), sortedKeys(want))
	}
}

// referrerWriter pushes artifacts whose subject is a tagged manifest (then
// checks the referrers list) or a deleted one.
func (s *soak) referrerWriter() {
	for n := 0; n < s.maxOps && s.running(); n++ {
		time.Sleep(time.Duration(50+rand.IntN(100)) * time.Millisecond)
		payload := newGCBlob(soakSignature, randomBytes(200+rand.IntN(300)))
		if rand.IntN(10) < 7 {
			slot := s.randomSlot()
			slot.mu.Lock()
			if m := slot.cur; m != nil {
				art := newArtifact(m, payload)
				if s.push(slot.repo, art.digest, art, nil) {
					s.count("referrer of a tagged manifest")
					s.checkReferrers(slot.repo, m)
				}
			}
			slot.mu.Unlock()
			continue
		}
		s.mu.Lock()
		var d soakPushed
		if len(s.deleted) > 0 {
			d = s.deleted[rand.IntN(len(s.deleted))]
		}
		s.mu.Unlock()
		if d.m == nil {
			continue
		}
		art := newArtifact(d.m, payload)
		if s.push(d.repo, art.digest, art, nil) {
			s.count("referrer of a deleted manifest")
			s.listReferrers(d.repo, d.m.digest)
		}
	}
}

// runSoak runs the load against replicas a (whose config runs the gc
// loop) and b, with "berth gc" looping beside them (env: its environment,
// nil for ours), then checks the outcome.
func runSoak(t *testing.T, a, b *Server, env []string) {
	bin := berthBinary(t)
	gcArgs := []string{"--config", a.ConfigPath, "--grace", soakGrace.String(), "--delete-untagged",
		"--upload-max-age", soakUploadMaxAge.String()}
	// The logs stay, for whoever looks into a failure.
	logDir, err := os.MkdirTemp("", "berth-gc-soak-")
	if err != nil {
		t.Fatal(err)
	}
	gcLog, err := os.Create(logDir + "/berth-gc.log")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gcLog.Close() }) // after the berth gc loop stopped
	t.Cleanup(func() {
		if !t.Failed() {
			os.RemoveAll(logDir)
			return
		}
		for name, srv := range map[string]*Server{"a": a, "b": b} {
			if data, err := os.ReadFile(srv.LogPath); err == nil {
				os.WriteFile(logDir+"/berth-"+name+".log", data, 0o644)
			}
		}
		t.Logf("logs of the replicas and of every berth gc run (-v) kept in %s", logDir)
	})
	s := newSoak([]string{a.URL, b.URL})
	repos := []string{"soak/app", "soak/base", "soak/team/tool"}
	const pushers, pullers, deleters, referrerWriters = 4, 3, 1, 2
	for p := range pushers {
		var row []*soakSlot
		for _, r := range repos {
			for i := range 2 {
				row = append(row, &soakSlot{repo: r, tag: fmt.Sprintf("p%d-%d", p, i)})
			}
		}
		s.slots = append(s.slots, row)
	}
	// One image per repository first, so that every worker has something.
	for i, r := range repos {
		slot := s.slots[0][2*i]
		if !s.push(r, slot.tag, s.poolImage(), slot) {
			t.Fatalf("first push to %s failed: %v", r, s.failures)
		}
	}

	// "berth gc" in a loop, as if on another machine.
	var (
		gcStop    atomic.Bool
		gcRuns    int
		gcDeleted gcCounts
		gcSpared  gcCounts
		gcErrs    []error
	)
	gcDone := make(chan struct{})
	go func() {
		defer close(gcDone)
		for !gcStop.Load() {
			fmt.Fprintf(gcLog, "=== berth gc at %s\n", time.Now().Format(time.RFC3339Nano))
			rep, err := runBerthGCLog(context.Background(), env, gcLog, bin, append(gcArgs, "-v")...)
			if err != nil {
				gcErrs = append(gcErrs, err)
			} else {
				gcRuns++
				gcDeleted.add(rep.Deleted)
				gcSpared.add(rep.Spared)
			}
			time.Sleep(time.Duration(200+rand.IntN(400)) * time.Millisecond)
		}
	}()
	stopGC := sync.OnceFunc(func() { gcStop.Store(true); <-gcDone })
	t.Cleanup(stopGC)

	start := time.Now()
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
	wg.Wait()
	t.Logf("load: %.1fs with %d pushers, %d pullers, %d deleter, %d referrer writers over %s and %s",
		time.Since(start).Seconds(), pushers, pullers, deleters, referrerWriters, a.URL, b.URL)

	// Stop the collectors: replica A (its loop) and the berth gc loop.
	metrics := gcMetrics(t, a)
	stopServer(t, a)
	stopGC()
	loopDeleted := gcCounts{Manifests: int(metrics[`berth_gc_deleted_total{kind="manifests"}`]),
		Blobs: int(metrics[`berth_gc_deleted_total{kind="blobs"}`]), Bytes: int64(metrics["berth_gc_deleted_bytes_total"]),
		LayerLinks: int(metrics[`berth_gc_deleted_total{kind="layer_links"}`]), Uploads: int(metrics[`berth_gc_deleted_total{kind="uploads"}`])}
	t.Logf("in-server gc loop of A: %v runs ok, %v failed; deleted %s; spared %v items",
		metrics[`berth_gc_runs_total{result="ok"}`], metrics[`berth_gc_runs_total{result="error"}`], loopDeleted,
		metrics[`berth_gc_spared_total{kind="manifests"}`]+metrics[`berth_gc_spared_total{kind="blobs"}`]+
			metrics[`berth_gc_spared_total{kind="layer_links"}`])
	t.Logf("berth gc process: %d runs ok, %d failed; deleted %s; spared %s", gcRuns, len(gcErrs), gcDeleted, gcSpared)
	for _, err := range gcErrs[:min(len(gcErrs), 5)] {
		t.Errorf("berth gc during the load: %v", err)
	}
	if n := metrics[`berth_gc_runs_total{result="error"}`]; n > 0 {
		t.Errorf("the in-server gc loop of A failed %v times:\n%s", n, grepLog(t, a, `msg="gc: run failed"`, 10))
	}
	if metrics[`berth_gc_runs_total{result="ok"}`] == 0 || gcRuns == 0 {
		t.Errorf("a collector never finished a run: in-server loop %v runs, berth gc %d", metrics[`berth_gc_runs_total{result="ok"}`], gcRuns)
	}
	if loopDeleted.Manifests+loopDeleted.Blobs+gcDeleted.Manifests+gcDeleted.Blobs == 0 {
		t.Errorf("the collectors deleted no manifest and no blob during the load")
	}

	// Once the grace has passed, one more run must leave nothing for the
	// next to do.
	time.Sleep(soakGrace + time.Second)
	final, err := runBerthGCLog(t.Context(), env, gcLog, bin, append(gcArgs, "-v")...)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("final berth gc: deleted %s; spared %s", final.Deleted, final.Spared)
	if dry, err := runBerthGC(t.Context(), env, bin, append(gcArgs, "--dry-run")...); err != nil {
		t.Error(err)
	} else if dry.planned() != 0 {
		t.Errorf("a dry run after the final run still plans %d manifests, %d blobs, %d layer links",
			len(dry.Manifests), len(dry.Blobs), len(dry.LayerLinks))
	}

	s.verify(t, b)

	s.mu.Lock()
	defer s.mu.Unlock()
	t.Logf("events:\n%s", formatCounts(s.events))
	t.Logf("answers by method and status:\n%s", formatCounts(s.statuses))
	t.Logf("4xx answers by code:\n%s", formatCounts(s.codes))
	for _, srv := range []*Server{a, b} {
		if bad := serverErrors(t, srv); len(bad) > 0 {
			t.Errorf("%s (%s) answered %d requests with a 5xx:\n%s", srv.Host, srv.LogPath, len(bad), strings.Join(head(bad, 10), "\n"))
		}
		// The load pushes every blob before its manifest: a manifest
		// accepted without one (sparse manifests are on) lacks what a
		// collection deleted after the pusher's HEAD.
		if sparse := grepLog(t, srv, `msg="sparse manifest accepted"`, 5); sparse != "" {
			t.Errorf("%s accepted manifests without a blob the pusher had seen:\n%s", srv.Host, sparse)
		}
	}
	fivexx := 0
	for k, n := range s.statuses {
		if strings.Contains(k, " 5") {
			fivexx += n
		}
	}
	t.Logf("5xx answers: %d; failures: %d", fivexx, len(s.failures))
	for _, f := range head(s.failures, 40) {
		t.Error(f)
	}
	for _, e := range []string{"push image by tag", "push index by tag", "delete of a tagged manifest",
		"referrer of a tagged manifest", "referrer of a deleted manifest", "pull of a tagged manifest, whole"} {
		if s.events[e] == 0 {
			t.Errorf("the load did no %q", e)
		}
	}
}

// verify checks, through b alone, once the load and the collectors have
// stopped: every tag holds what its pusher last put there, and pulls whole
// with its children; the referrers of tagged manifests are exactly those
// pushed and pull whole; the catalog lists no other tag; and every other
// manifest that got 201 is gone.
func (s *soak) verify(t *testing.T, b *Server) {
	s.bases = []string{b.URL}
	before := len(s.failures)
	reachable := map[string]bool{} // repo@digest
	wantTags := map[string]bool{}
	var mark func(repo string, m *gcManifest)
	mark = func(repo string, m *gcManifest) {
		reachable[repo+"@"+m.digest] = true
		for _, c := range m.children {
			mark(repo, c)
		}
	}
	tagged, referrers := 0, 0
	for _, row := range s.slots {
		for _, slot := range row {
			m := slot.cur
			if m == nil {
				continue
			}
			tagged++
			wantTags[slot.repo+":"+slot.tag] = true
			mark(slot.repo, m)
			s.pullTree(slot.repo, slot.tag, m, true)
			s.checkReferrers(slot.repo, m)
			for _, r := range s.referrers[m.digest] {
				referrers++
				mark(slot.repo, r)
				s.pullTree(slot.repo, r.digest, r, true)
			}
		}
	}

	gotTags := map[string]bool{}
	_, _, body := s.send(http.MethodGet, b.URL+"/v2/_catalog?n=1000", nil, nil)
	var catalog struct{ Repositories []string }
	if err := json.Unmarshal(body, &catalog); err != nil {
		t.Errorf("catalog: %v: %.200s", err, body)
	}
	for _, repo := range catalog.Repositories {
		st, _, body := s.send(http.MethodGet, b.URL+"/v2/"+repo+"/tags/list?n=1000", nil, nil)
		var list struct{ Tags []string }
		if st == http.StatusOK && json.Unmarshal(body, &list) == nil {
			for _, tag := range list.Tags {
				gotTags[repo+":"+tag] = true
			}
		} else if st != http.StatusNotFound {
			t.Errorf("tags of %s: %d %.200s", repo, st, body)
		}
	}
	compareSets(t, "tags listed by the registry (got) and last pushed, not deleted (want)", gotTags, wantTags)

	var present []string
	dead := 0
	for _, p := range s.pushed {
		if reachable[p.repo+"@"+p.m.digest] {
			continue
		}
		dead++
		st, _, _ := s.send(http.MethodGet, b.URL+"/v2/"+p.repo+"/manifests/"+p.m.digest, nil, map[string]string{"Accept": acceptManifests})
		if st != http.StatusNotFound {
			present = append(present, fmt.Sprintf("%s@%s: %d", p.repo, p.m.digest, st))
		}
	}
	if len(present) > 0 {
		t.Errorf("%d of %d unreachable manifests are still there after the final gc:\n  %s", len(present), dead,
			strings.Join(head(present, 20), "\n  "))
	}
	t.Logf("verified through B: %d tagged manifests and %d manifests reachable from them (children, referrers) pulled whole "+
		"(%d failures); %d tags listed; %d unreachable manifests that got 201, all gone but %d",
		tagged, len(reachable)-tagged, len(s.failures)-before, len(gotTags), dead, len(present))
}

// gcMetrics reads the berth_gc_ metrics of s.
func gcMetrics(t *testing.T, s *Server) map[string]float64 {
	t.Helper()
	_, body := httpDo(t, noRedirect, http.MethodGet, s.URL+"/metrics", nil, nil, http.StatusOK)
	out := map[string]float64{}
	for l := range strings.Lines(string(body)) {
		name, value, ok := strings.Cut(strings.TrimSpace(l), " ")
		if !ok || !strings.HasPrefix(name, "berth_gc_") {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			out[name] = v
		}
	}
	return out
}

var accessStatus = regexp.MustCompile(` status=(\d{3}) `)

// serverErrors returns the access log lines of s with a 5xx status.
func serverErrors(t *testing.T, s *Server) []string {
	t.Helper()
	b, err := s.ReadLog(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if m := accessStatus.FindStringSubmatch(sc.Text()); m != nil && m[1][0] == '5' {
			out = append(out, sc.Text())
		}
	}
	return out
}

// grepLog returns up to n lines of s's log that contain substr.
func grepLog(t *testing.T, s *Server, substr string, n int) string {
	t.Helper()
	b, err := os.ReadFile(s.LogPath)
	if err != nil {
		return err.Error()
	}
	var out []string
	for l := range strings.Lines(string(b)) {
		if strings.Contains(l, substr) {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return strings.Join(head(out, n), "\n")
}

func formatCounts(m map[string]int) string {
	keys := slices.Sorted(maps.Keys(m))
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  %-60s %7d\n", k, m[k])
	}
	return strings.TrimRight(b.String(), "\n")
}

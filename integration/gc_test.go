package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Garbage collection end to end, with the real binary: what "berth gc"
// keeps and collects after content pushed through the HTTP API
// (TestGCKeepsWhatIsReachable), a collector killed mid-sweep
// (TestGCKilledSweepConverges), Distribution's own garbage-collect as a
// second opinion (TestGCDistributionAgrees), and a soak under load with
// replicas (TestGCSoak, gcsoak_test.go).

const (
	ociIndex  = "application/vnd.oci.image.index.v1+json"
	ociConfig = "application/vnd.oci.image.config.v1+json"
	ociLayer  = "application/vnd.oci.image.layer.v1.tar"
	// acceptManifests is the Accept header of a manifest GET.
	acceptManifests = ociManifest + ", " + ociIndex
)

// gcBlob is a blob the GC tests push.
type gcBlob struct {
	mediaType string
	data      []byte
	digest    string
}

func newGCBlob(mediaType string, data []byte) gcBlob {
	return gcBlob{mediaType: mediaType, data: data, digest: sha256Digest(data)}
}

func randomLayer(n int) gcBlob { return newGCBlob(ociLayer, randomBytes(n)) }

func (b gcBlob) descriptor() map[string]any {
	return map[string]any{"mediaType": b.mediaType, "digest": b.digest, "size": len(b.data)}
}

// gcManifest is an image manifest, an index or an artifact, with what it
// references: the GC tests push it, pull it whole, or expect it gone.
type gcManifest struct {
	mediaType string
	body      []byte
	digest    string
	blobs     []gcBlob      // config and layers
	children  []*gcManifest // an index's manifests
	subject   string        // an artifact's subject ("" for none)
}

func (m *gcManifest) descriptor() map[string]any {
	return map[string]any{"mediaType": m.mediaType, "digest": m.digest, "size": len(m.body)}
}

func newGCManifest(mediaType string, v map[string]any) *gcManifest {
	body, err := json.Marshal(v)
	if err != nil {
		panic(err) // maps of strings, numbers and slices always marshal
	}
	return &gcManifest{mediaType: mediaType, body: body, digest: sha256Digest(body)}
}

// newImage is an image of the layers with a config of its own, so that
// every image has a digest of its own.
func newImage(layers ...gcBlob) *gcManifest {
	config := newGCBlob(ociConfig, fmt.Appendf(nil,
		`{"architecture":"amd64","os":"linux","config":{"Labels":{"nonce":%q}},"rootfs":{"type":"layers","diff_ids":[]}}`,
		strings.ToLower(randomHex(8))))
	descs := make([]any, len(layers))
	for i, l := range layers {
		descs[i] = l.descriptor()
	}
	m := newGCManifest(ociManifest, map[string]any{
		"schemaVersion": 2, "mediaType": ociManifest, "config": config.descriptor(), "layers": descs,
	})
	m.blobs = append([]gcBlob{config}, layers...)
	return m
}

// newIndex is an index over children (images or indexes).
func newIndex(children ...*gcManifest) *gcManifest {
	descs := make([]any, len(children))
	archs := []string{"amd64", "arm64", "riscv64", "s390x"}
	for i, c := range children {
		d := c.descriptor()
		d["platform"] = map[string]any{"architecture": archs[i%len(archs)], "os": "linux"}
		descs[i] = d
	}
	m := newGCManifest(ociIndex, map[string]any{"schemaVersion": 2, "mediaType": ociIndex, "manifests": descs})
	m.children = children
	return m
}

var emptyBlob = newGCBlob(ociEmpty, []byte("{}"))

// newArtifact is an artifact whose subject is subject, carrying payload.
func newArtifact(subject *gcManifest, payload gcBlob) *gcManifest {
	m := newGCManifest(ociManifest, map[string]any{
		"schemaVersion": 2, "mediaType": ociManifest,
		"artifactType": "application/vnd.berth.test.signature",
		"config":       emptyBlob.descriptor(),
		"layers":       []any{payload.descriptor()},
		"subject":      subject.descriptor(),
	})
	m.blobs = []gcBlob{emptyBlob, payload}
	m.subject = subject.digest
	return m
}

func randomHex(n int) string {
	return fmt.Sprintf("%x", randomBytes(n))
}

// digests adds to set the digests of m's body, blobs and children.
func (m *gcManifest) digests(set map[string]bool) {
	set[m.digest] = true
	for _, b := range m.blobs {
		set[b.digest] = true
	}
	for _, c := range m.children {
		c.digests(set)
	}
}

// pushTree pushes m to repo under ref (a tag or m's digest): its blobs,
// then its children by digest, then m.
func pushTree(t *testing.T, base, repo, ref string, m *gcManifest) {
	t.Helper()
	for _, c := range m.children {
		pushTree(t, base, repo, c.digest, c)
	}
	for _, b := range m.blobs {
		putBlob(t, base, repo, b.data)
	}
	resp, _ := httpDo(t, noRedirect, http.MethodPut, base+"/v2/"+repo+"/manifests/"+ref, m.body,
		map[string]string{"Content-Type": m.mediaType}, http.StatusCreated)
	if got := resp.Header.Get("Docker-Content-Digest"); got != m.digest {
		t.Fatalf("PUT %s:%s: Docker-Content-Digest %q, want %s", repo, ref, got, m.digest)
	}
	if m.subject != "" && resp.Header.Get("OCI-Subject") != m.subject {
		t.Fatalf("PUT %s@%s: OCI-Subject %q, want %s", repo, m.digest, resp.Header.Get("OCI-Subject"), m.subject)
	}
}

// pullTree pulls m from repo by ref, its children by digest and every
// blob (following redirects), and fails t unless all bytes match.
func pullTree(t *testing.T, base, repo, ref string, m *gcManifest) {
	t.Helper()
	_, body := httpDo(t, noRedirect, http.MethodGet, base+"/v2/"+repo+"/manifests/"+ref, nil,
		map[string]string{"Accept": acceptManifests}, http.StatusOK)
	if !bytes.Equal(body, m.body) {
		t.Errorf("GET %s:%s: %d bytes, digest %s; want %s", repo, ref, len(body), sha256Digest(body), m.digest)
	}
	for _, c := range m.children {
		pullTree(t, base, repo, c.digest, c)
	}
	for _, b := range m.blobs {
		_, got := httpDo(t, http.DefaultClient, http.MethodGet, base+"/v2/"+repo+"/blobs/"+b.digest, nil, nil, http.StatusOK)
		if !bytes.Equal(got, b.data) {
			t.Errorf("GET %s blob %s: %d bytes, digest %s", repo, b.digest, len(got), sha256Digest(got))
		}
	}
}

// gcReport is the part of "berth gc --json" the tests read, spelled with
// the report's documented field names.
type gcReport struct {
	DryRun    bool `json:"dryRun"`
	Tags      []struct{ Repository, Tag string }
	Manifests []struct{ Repository, Digest string } `json:"manifests"`
	Blobs     []struct {
		Digest string `json:"digest"`
		Size   int64  `json:"size"`
	} `json:"blobs"`
	LayerLinks []struct{ Repository, Digest string } `json:"layerLinks"`
	Uploads    []struct{ Repository, ID string }     `json:"uploads"`
	Deleted    gcCounts                              `json:"deleted"`
	Spared     gcCounts                              `json:"spared"`
	// ReferrersIndexed: entries added to the referrers index.
	ReferrersIndexed int `json:"referrersIndexed"`
}

type gcCounts struct {
	Tags       int   `json:"tags"`
	Manifests  int   `json:"manifests"`
	Blobs      int   `json:"blobs"`
	Bytes      int64 `json:"bytes"`
	LayerLinks int   `json:"layerLinks"`
	Uploads    int   `json:"uploads"`
}

func (c *gcCounts) add(o gcCounts) {
	c.Tags += o.Tags
	c.Manifests += o.Manifests
	c.Blobs += o.Blobs
	c.Bytes += o.Bytes
	c.LayerLinks += o.LayerLinks
	c.Uploads += o.Uploads
}

func (c gcCounts) String() string {
	return fmt.Sprintf("%d tags, %d manifests, %d blobs (%d bytes), %d layer links, %d uploads",
		c.Tags, c.Manifests, c.Blobs, c.Bytes, c.LayerLinks, c.Uploads)
}

// planned counts the items a report plans to delete, uploads left out.
func (r gcReport) planned() int {
	return len(r.Tags) + len(r.Manifests) + len(r.Blobs) + len(r.LayerLinks)
}

// runBerthGC runs "berth gc --json" with args (and env, nil for ours) and
// returns its report; the error carries the end of its log.
func runBerthGC(ctx context.Context, env []string, bin string, args ...string) (gcReport, error) {
	return runBerthGCLog(ctx, env, nil, bin, args...)
}

// runBerthGCLog is runBerthGC that also copies the log to log (if not nil).
func runBerthGCLog(ctx context.Context, env []string, log io.Writer, bin string, args ...string) (gcReport, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"gc", "--json"}, args...)...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if log != nil {
		cmd.Stderr = io.MultiWriter(&stderr, log)
	}
	var rep gcReport
	if err := cmd.Run(); err != nil {
		return rep, fmt.Errorf("berth gc %s: %v\n%s", strings.Join(args, " "), err, tail(stderr.String(), 20))
	}
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		return rep, fmt.Errorf("berth gc %s: reading its JSON report: %v\n%.500s", strings.Join(args, " "), err, stdout.String())
	}
	return rep, nil
}

// mustBerthGC is runBerthGC that fails t on error.
func mustBerthGC(t *testing.T, args ...string) gcReport {
	t.Helper()
	rep, err := runBerthGC(t.Context(), nil, berthBinary(t), args...)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// manifestGone fails t unless repo@d answers 404.
func manifestGone(t *testing.T, base, repo, d, what string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/v2/"+repo+"/manifests/"+d, nil)
	req.Header.Set("Accept", acceptManifests)
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("%s %s@%s: GET answers %s after gc, want 404", what, repo, d, resp.Status)
	}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// compareSets fails t unless got and want hold the same strings.
func compareSets(t *testing.T, what string, got, want map[string]bool) {
	t.Helper()
	var missing, extra []string
	for k := range want {
		if !got[k] {
			missing = append(missing, k)
		}
	}
	for k := range got {
		if !want[k] {
			extra = append(extra, k)
		}
	}
	slices.Sort(missing)
	slices.Sort(extra)
	if len(missing)+len(extra) > 0 {
		t.Errorf("%s: %d expected but missing:\n  %s\n%d unexpected:\n  %s", what, len(missing),
			strings.Join(head(missing, 20), "\n  "), len(extra), strings.Join(head(extra, 20), "\n  "))
	}
}

// TestGCKeepsWhatIsReachable pushes through the API a tagged multi-arch
// index with untagged children, a nested index, an image with a referrer
// (which has a referrer of its own), an image whose tag moved on, an
// untagged image, and a referrer whose subject is then deleted; "berth gc
// --delete-untagged" keeps everything until the grace has passed, then
// deletes exactly the unreachable manifests and blobs, and every kept
// manifest still pulls whole.
func TestGCKeepsWhatIsReachable(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	root := t.TempDir()
	srv := startServer(t, Berth, Filesystem, root)
	base := srv.URL

	shared, l2, l3 := randomLayer(64<<10), randomLayer(3<<10), randomLayer(5<<10)
	type ref struct {
		repo, ref string
		m         *gcManifest
	}
	// Kept: tagged, children of tagged indexes, referrers of kept manifests.
	multi := newIndex(newImage(shared, l2), newImage(shared, l3))
	nested := newIndex(newIndex(newImage(l2), newImage(randomLayer(2<<10))), newImage(l3))
	app := newImage(shared, randomLayer(7<<10))
	sig := newArtifact(app, randomLayer(300))
	sigOfSig := newArtifact(sig, randomLayer(200))
	moved := newImage(randomLayer(4 << 10))
	kept := []ref{
		{"gc/multi", "v1", multi}, {"gc/nested", "v1", nested}, {"gc/app", "v1", app},
		{"gc/app", sig.digest, sig}, {"gc/app", sigOfSig.digest, sigOfSig}, {"gc/app", "v0", moved},
	}
	// Collected once the grace has passed.
	old := newImage(shared, randomLayer(6<<10))
	untagged := newImage(randomLayer(8 << 10))
	gone := newImage(randomLayer(9 << 10))
	orphan := newArtifact(gone, randomLayer(100))

	pushTree(t, base, "gc/app", "v0", old)
	for _, k := range kept {
		pushTree(t, base, k.repo, k.ref, k.m)
	}
	pushTree(t, base, "gc/app", untagged.digest, untagged)
	pushTree(t, base, "gc/gone", "v1", gone)
	pushTree(t, base, "gc/gone", orphan.digest, orphan)
	httpDo(t, noRedirect, http.MethodDelete, base+"/v2/gc/gone/manifests/"+gone.digest, nil, nil, http.StatusAccepted)
	pushed := time.Now()

	// Long enough that the pushes above fall within it on a busy machine.
	const grace = 5 * time.Second
	args := []string{"--config", srv.ConfigPath, "--grace", grace.String(), "--delete-untagged"}
	rep := mustBerthGC(t, args...)
	if rep.planned() != 0 {
		t.Errorf("berth gc right after the pushes planned %d items (%d manifests, %d blobs, %d layer links); within the grace, want none",
			rep.planned(), len(rep.Manifests), len(rep.Blobs), len(rep.LayerLinks))
	}
	pullTree(t, base, "gc/gone", orphan.digest, orphan)

	time.Sleep(time.Until(pushed.Add(grace + 500*time.Millisecond)))
	rep = mustBerthGC(t, args...)
	t.Logf("berth gc after the grace: deleted %s; spared %s", rep.Deleted, rep.Spared)

	// What goes: the revisions of old, untagged and orphan (gone's was
	// deleted by the API), and every blob (manifest bodies included) no
	// kept manifest reaches.
	keptBlobs := map[string]bool{}
	for _, k := range kept {
		k.m.digests(keptBlobs)
	}
	wantBlobs := map[string]bool{}
	for _, m := range []*gcManifest{old, untagged, gone, orphan} {
		all := map[string]bool{}
		m.digests(all)
		for d := range all {
			if !keptBlobs[d] {
				wantBlobs[d] = true
			}
		}
	}
	gotManifests, gotBlobs := map[string]bool{}, map[string]bool{}
	for _, m := range rep.Manifests {
		gotManifests[m.Repository+"@"+m.Digest] = true
	}
	for _, b := range rep.Blobs {
		gotBlobs[b.Digest] = true
	}
	compareSets(t, "manifests deleted", gotManifests, map[string]bool{
		"gc/app@" + old.digest: true, "gc/app@" + untagged.digest: true, "gc/gone@" + orphan.digest: true})
	compareSets(t, "blobs deleted", gotBlobs, wantBlobs)
	if rep.Deleted.Manifests != 3 || rep.Deleted.Blobs != len(wantBlobs) {
		t.Errorf("report counts %d manifests and %d blobs deleted, want 3 and %d", rep.Deleted.Manifests, rep.Deleted.Blobs, len(wantBlobs))
	}

	for _, k := range kept {
		pullTree(t, base, k.repo, k.ref, k.m)
	}
	for _, c := range []struct {
		repo, subject string
		want          *gcManifest
	}{{"gc/app", app.digest, sig}, {"gc/app", sig.digest, sigOfSig}} {
		_, body := httpDo(t, noRedirect, http.MethodGet, base+"/v2/"+c.repo+"/referrers/"+c.subject, nil, nil, http.StatusOK)
		var idx struct{ Manifests []struct{ Digest string } }
		if err := json.Unmarshal(body, &idx); err != nil || len(idx.Manifests) != 1 || idx.Manifests[0].Digest != c.want.digest {
			t.Errorf("referrers of %s@%s: %s (err %v), want just %s", c.repo, c.subject, body, err, c.want.digest)
		}
	}
	manifestGone(t, base, "gc/app", old.digest, "untagged (tag moved on)")
	manifestGone(t, base, "gc/app", untagged.digest, "untagged")
	manifestGone(t, base, "gc/gone", orphan.digest, "referrer of a deleted subject")
	httpDo(t, noRedirect, http.MethodGet, base+"/v2/gc/gone/blobs/"+gone.blobs[1].digest, nil, nil, http.StatusNotFound)

	if rep := mustBerthGC(t, append(args, "--dry-run")...); rep.planned() != 0 {
		t.Errorf("a dry run after the collection still plans %d items: %+v", rep.planned(), rep)
	}
}

// TestGCKilledSweepConverges kills "berth gc" with SIGKILL at several
// moments of its sweep over a root holding 1500 unreferenced blobs beside
// tagged images; each run goes on from what the last one left, the last
// one finishes, a dry run then plans nothing, and every tagged image pulls
// whole through "berth serve" on the root.
func TestGCKilledSweepConverges(t *testing.T) {
	needIntegration(t)
	bin := berthBinary(t)
	root := t.TempDir()
	srv := startServer(t, Berth, Filesystem, root)

	shared := randomLayer(32 << 10)
	type ref struct {
		repo, tag string
		m         *gcManifest
	}
	kept := []ref{
		{"keep/a", "v1", newImage(shared, randomLayer(8<<10))},
		{"keep/b", "v1", newIndex(newImage(shared), newImage(randomLayer(4<<10)))},
		{"keep/c", "latest", newImage(shared, randomLayer(1<<10))},
	}
	for _, k := range kept {
		pushTree(t, srv.URL, k.repo, k.tag, k.m)
	}
	// Garbage: untagged images, and 1500 blobs linked into five
	// repositories (1500 layer links), by one-request monolithic uploads.
	for i := range 20 {
		m := newImage(shared, randomLayer(512))
		pushTree(t, srv.URL, fmt.Sprintf("junk/%d", i%5), m.digest, m)
	}
	const junk = 1500
	for i := range junk {
		b := randomBytes(256 + i%512)
		url := fmt.Sprintf("%s/v2/junk/%d/blobs/uploads/?digest=%s", srv.URL, i%5, sha256Digest(b))
		httpDo(t, noRedirect, http.MethodPost, url, b, map[string]string{"Content-Type": "application/octet-stream"}, http.StatusCreated)
	}
	stopServer(t, srv)

	gcArgs := []string{"--root", root, "--grace", "0", "--delete-untagged"}
	dry := func() gcReport {
		t.Helper()
		rep, err := runBerthGC(t.Context(), nil, bin, append(gcArgs, "--dry-run")...)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	left := dry().planned()
	t.Logf("before any run: %d items planned", left)
	if left < 3000 {
		t.Fatalf("only %d items planned on the junk root; want more than 3000 (two sweep rounds)", left)
	}

	// Three kills: while the first round marks its items; as the first
	// round has deleted its items (the second is under way); and at a
	// random moment in the time the second kill's run took from planning
	// to its first deletions, in the one round left.
	partial := 0
	var toFirstDelete time.Duration
	for i, trigger := range []string{`msg="gc: planned"`, `msg="gc: deleted"`, `msg="gc: planned"`} {
		var delay time.Duration
		if i == 2 {
			// The time scales with the items of the round.
			delay = toFirstDelete * time.Duration(left) / 2000 * time.Duration(40+rand.IntN(55)) / 100
		}
		before := left
		outcome, lines := killBerthGC(t, bin, gcArgs, trigger, delay)
		deleted := 0
		var planned, firstDelete time.Time
		for _, l := range lines {
			if strings.Contains(l, `msg="gc: planned"`) {
				planned = logTime(l)
			}
			if strings.Contains(l, `msg="gc: deleted"`) {
				if deleted == 0 {
					firstDelete = logTime(l)
				}
				deleted++
			}
		}
		if i == 1 {
			toFirstDelete = firstDelete.Sub(planned)
		}
		left = dry().planned()
		t.Logf("kill %d, %s after %q: %s; %d \"gc: deleted\" lines logged; %d of %d items left",
			i+1, delay, trigger, outcome, deleted, left, before)
		if left > before {
			t.Errorf("kill %d: %d items planned after it, %d before", i+1, left, before)
		}
		if 0 < left && left < before {
			partial++
		}
	}
	if partial == 0 {
		t.Errorf("no kill interrupted a sweep partway (each left all or none of its plan)")
	}

	rep, err := runBerthGC(t.Context(), nil, bin, gcArgs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the run after the kills: deleted %s; spared %s", rep.Deleted, rep.Spared)
	if rep := dry(); rep.planned() != 0 || len(rep.Uploads) != 0 {
		t.Errorf("a dry run after the last run still plans %d items and %d uploads: %d manifests, %d blobs, %d layer links",
			rep.planned(), len(rep.Uploads), len(rep.Manifests), len(rep.Blobs), len(rep.LayerLinks))
	}
	// A killed run's doom lists are "void after DoomTTL, removed by the next
	// run" (gc/doc.go): a run within DoomTTL leaves those of the items
	// already deleted. Until they are void, a manifest PUT relying on a
	// blob they name waits for them (store.settle): re-pushing a deleted
	// junk blob in an image at this point took 1m58s when tried.
	markers := 0
	filepath.WalkDir(filepath.Join(root, "docker/registry/v2/_berth/gc/doomed"), func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			markers++
		}
		return nil
	})
	t.Logf("doom lists of the killed runs left after the run that finished: %d (void after store.DoomTTL)", markers)

	srv = startServer(t, Berth, Filesystem, root)
	for _, k := range kept {
		pullTree(t, srv.URL, k.repo, k.tag, k.m)
	}
	for i := range 5 {
		resp, err := http.Get(fmt.Sprintf("%s/v2/junk/%d/tags/list", srv.URL, i))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		// Every manifest of junk/N was untagged: the repository is gone,
		// or empty.
		if resp.StatusCode != http.StatusNotFound && !strings.Contains(string(body), `"tags":[]`) {
			t.Errorf("junk/%d after gc: %s %s", i, resp.Status, body)
		}
	}
}

// killBerthGC runs "berth gc -v" with args and sends it SIGKILL delay after
// its log shows a line containing trigger. It returns how the process
// ended and its log lines. A run that ends before the kill fails t unless
// it succeeded (then there was nothing left to interrupt).
func killBerthGC(t *testing.T, bin string, args []string, trigger string, delay time.Duration) (string, []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"gc", "-v"}, args...)...)
	cmd.Stdout = io.Discard
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	killed := false
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if !killed && strings.Contains(sc.Text(), trigger) {
			killed = true
			if delay > 0 {
				time.AfterFunc(delay, func() { _ = cmd.Process.Signal(syscall.SIGKILL) })
			} else {
				_ = cmd.Process.Signal(syscall.SIGKILL)
			}
		}
	}
	err = cmd.Wait()
	var ws syscall.WaitStatus
	if cmd.ProcessState != nil {
		ws, _ = cmd.ProcessState.Sys().(syscall.WaitStatus)
	}
	switch {
	case ws.Signaled() && ws.Signal() == syscall.SIGKILL && killed:
		return "killed by SIGKILL", lines
	case err == nil:
		return "finished before the kill", lines
	default:
		t.Fatalf("berth gc %s: %v (trigger %q seen: %t)\n%s", strings.Join(args, " "), err, trigger, killed,
			strings.Join(lines[max(0, len(lines)-20):], "\n"))
		return "", nil
	}
}

// logTime is the time= of a text log line (zero if none).
func logTime(line string) time.Time {
	v, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
	ts, _ := time.Parse(time.RFC3339Nano, v)
	return ts
}

// distributionGC is what Distribution's "garbage-collect --dry-run
// --delete-untagged" would delete.
type distributionGC struct {
	manifests, blobs map[string]bool
	summary          string // "N blobs marked, N blobs and N manifests eligible for deletion"
}

var distributionSummary = regexp.MustCompile(`(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible for deletion`)

// distributionDryRun runs Debian's docker-registry garbage-collect
// --dry-run --delete-untagged over root and parses its output.
func distributionDryRun(t *testing.T, root string) distributionGC {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yml")
	// As integration.Start writes docker-registry's config (registry.go).
	config := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %q\n  delete:\n    enabled: true\n", root)
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker-registry", "garbage-collect", "--dry-run", "--delete-untagged", cfg)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("docker-registry garbage-collect: %v\n%s\n%s", err, tail(stdout.String(), 20), tail(stderr.String(), 20))
	}
	out := distributionGC{manifests: map[string]bool{}, blobs: map[string]bool{}}
	for _, l := range strings.Split(stdout.String(), "\n") {
		if d, ok := strings.CutPrefix(l, "manifest eligible for deletion: "); ok {
			out.manifests[strings.TrimSpace(d)] = true
		}
		if d, ok := strings.CutPrefix(l, "blob eligible for deletion: "); ok {
			out.blobs[strings.TrimSpace(d)] = true
		}
	}
	m := distributionSummary.FindStringSubmatch(stdout.String())
	if m == nil {
		t.Fatalf("docker-registry garbage-collect printed no summary line:\n%s", tail(stdout.String(), 30))
	}
	out.summary = m[0]
	if n, _ := strconv.Atoi(m[2]); n != len(out.blobs) {
		t.Fatalf("docker-registry garbage-collect: summary %q, but %d blob lines", m[0], len(out.blobs))
	}
	if n, _ := strconv.Atoi(m[3]); n != len(out.manifests) {
		t.Fatalf("docker-registry garbage-collect: summary %q, but %d manifest lines", m[0], len(out.manifests))
	}
	return out
}

// TestGCDistributionAgrees builds a Distribution-layout root through berth
// (tagged images sharing layers, a tag moved on, a deleted manifest, an
// untagged image, a tagged index whose children are tagged too, an
// untagged index, a blob no manifest references, a cross-repository
// mount). Debian's docker-registry garbage-collect --dry-run
// --delete-untagged first plans what "berth gc --dry-run --delete-untagged"
// plans; after "berth gc --grace 0 --delete-untagged" it finds nothing
// left to delete.
//
// Then content Distribution 2.8 does not understand is added: a tagged
// index with untagged children, and a referrer of a tagged image. berth gc
// keeps it (it is reachable); docker-registry would delete exactly the
// children and the referrer (2.8's --delete-untagged ignores both
// relations), which the test checks so that it documents that difference.
func TestGCDistributionAgrees(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	_, err := exec.LookPath("docker-registry")
	prerequisite(t, err == nil, "docker-registry not installed (install-clients.sh docker-registry)")
	root := t.TempDir()
	srv := startServer(t, Berth, Filesystem, root)
	base := srv.URL

	l1, l2, l3 := randomLayer(48<<10), randomLayer(6<<10), randomLayer(9<<10)
	type ref struct {
		repo, ref string
		m         *gcManifest
	}
	amd, arm := newImage(l1, l2), newImage(l1, l3)
	kept := []ref{
		{"dist/app", "v1", newImage(l1, l2)},
		{"dist/app", "v2", newImage(l2, l3)},
		{"dist/app", "multi-amd64", amd},
		{"dist/app", "multi-arm64", arm},
		{"dist/app", "multi", newIndex(amd, arm)},
	}
	moved := newImage(l1, randomLayer(2<<10))
	pushTree(t, base, "dist/app", "v3", moved)
	movedTo := newImage(l3)
	kept = append(kept, ref{"dist/app", "v3", movedTo})
	deleted := newImage(l2, randomLayer(3<<10))
	untagged := newImage(l1, randomLayer(1<<10))
	untaggedIndex := newIndex(newImage(randomLayer(1<<10)), newImage(l2))
	for _, k := range kept {
		pushTree(t, base, k.repo, k.ref, k.m)
	}
	pushTree(t, base, "dist/app", "old", deleted)
	httpDo(t, noRedirect, http.MethodDelete, base+"/v2/dist/app/manifests/"+deleted.digest, nil, nil, http.StatusAccepted)
	pushTree(t, base, "dist/app", untagged.digest, untagged)
	pushTree(t, base, "dist/app", untaggedIndex.digest, untaggedIndex)
	putBlob(t, base, "dist/app", randomBytes(5<<10)) // referenced by nothing
	// A second repository gets l1 by mount.
	httpDo(t, noRedirect, http.MethodPost, base+"/v2/dist/other/blobs/uploads/?mount="+l1.digest+"&from=dist/app",
		nil, nil, http.StatusCreated)
	other := newImage(l1)
	pushTree(t, base, "dist/other", "v1", other)
	kept = append(kept, ref{"dist/other", "v1", other})
	stopServer(t, srv)

	gcArgs := []string{"--root", root, "--grace", "0", "--delete-untagged"}
	before := distributionDryRun(t, root)
	t.Logf("docker-registry before berth gc: %s", before.summary)
	if len(before.manifests) == 0 || len(before.blobs) == 0 {
		t.Errorf("docker-registry finds nothing to delete before berth gc (%s): the check below could not fail", before.summary)
	}
	plan := mustBerthGC(t, append(gcArgs, "--dry-run")...)
	planManifests, planBlobs := map[string]bool{}, map[string]bool{}
	for _, m := range plan.Manifests {
		planManifests[m.Digest] = true
	}
	for _, b := range plan.Blobs {
		planBlobs[b.Digest] = true
	}
	compareSets(t, "manifests berth gc plans (got) vs docker-registry's (want)", planManifests, before.manifests)
	compareSets(t, "blobs berth gc plans (got) vs docker-registry's (want)", planBlobs, before.blobs)

	rep := mustBerthGC(t, gcArgs...)
	t.Logf("berth gc: deleted %s", rep.Deleted)
	after := distributionDryRun(t, root)
	t.Logf("docker-registry after berth gc: %s", after.summary)
	if len(after.manifests)+len(after.blobs) != 0 {
		t.Errorf("docker-registry still finds things to delete after berth gc (%s):\nmanifests %v\nblobs %v",
			after.summary, sortedKeys(after.manifests), sortedKeys(after.blobs))
	}

	// Content only Berth's collector understands.
	srv = startServer(t, Berth, Filesystem, root)
	base = srv.URL
	children := []*gcManifest{newImage(l1, randomLayer(2<<10)), newImage(randomLayer(3 << 10))}
	index := newIndex(children...)
	sig := newArtifact(kept[0].m, randomLayer(256))
	pushTree(t, base, "dist/app", "multi2", index)
	pushTree(t, base, "dist/app", sig.digest, sig)
	stopServer(t, srv)
	rep = mustBerthGC(t, gcArgs...)
	if rep.planned() != 0 {
		t.Errorf("berth gc --grace 0 planned %d items of reachable content: %+v", rep.planned(), rep)
	}
	srv = startServer(t, Berth, Filesystem, root)
	for _, k := range append(kept, ref{"dist/app", "multi2", index}, ref{"dist/app", sig.digest, sig}) {
		pullTree(t, srv.URL, k.repo, k.ref, k.m)
	}
	stopServer(t, srv)

	wantManifests := map[string]bool{children[0].digest: true, children[1].digest: true, sig.digest: true}
	wantBlobs := map[string]bool{}
	for _, m := range []*gcManifest{children[0], children[1], sig} {
		m.digests(wantBlobs)
	}
	keptBlobs := map[string]bool{index.digest: true}
	for _, k := range kept {
		k.m.digests(keptBlobs)
	}
	for d := range keptBlobs {
		delete(wantBlobs, d)
	}
	// Distribution marks an index's references as blobs: the children's
	// own bytes stay.
	delete(wantBlobs, children[0].digest)
	delete(wantBlobs, children[1].digest)
	diverged := distributionDryRun(t, root)
	t.Logf("docker-registry over content it does not understand: %s (Distribution 2.8's --delete-untagged "+
		"ignores index children and referrers; berth keeps them)", diverged.summary)
	compareSets(t, "manifests docker-registry would delete after berth gc", diverged.manifests, wantManifests)
	compareSets(t, "blobs docker-registry would delete after berth gc", diverged.blobs, wantBlobs)
}

// TestGCIndexesAdoptedReferrers: an artifact whose subject is an image,
// pushed through docker-registry 2.8.2 (which keeps no referrers index), is
// unknown to berth's referrers API on that root until one "berth gc" (a
// dry run is enough) completes the index; a second run adds nothing.
func TestGCIndexesAdoptedReferrers(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	needTools(t, toolEnv(t), "docker-registry")
	root := t.TempDir()
	peer := startServer(t, DockerRegistry, Filesystem, root)
	img := newRawImage(t, "adopted/app", 4096)
	img.push(t, peer.URL, peer.URL, 0)
	putBlob(t, peer.URL, img.repo, img.empty)
	putManifest(t, peer.URL, img.repo, img.referrerDigest, img.referrer)
	stopServer(t, peer)

	srv := startServer(t, Berth, Filesystem, root)
	referrers := func() []string {
		t.Helper()
		_, body := httpDo(t, noRedirect, http.MethodGet, srv.URL+"/v2/"+img.repo+"/referrers/"+img.manifestDigest, nil, nil, http.StatusOK)
		var idx struct {
			Manifests []struct {
				Digest       string `json:"digest"`
				ArtifactType string `json:"artifactType"`
			} `json:"manifests"`
		}
		if err := json.Unmarshal(body, &idx); err != nil {
			t.Fatalf("referrers: %v: %s", err, body)
		}
		var out []string
		for _, m := range idx.Manifests {
			out = append(out, m.Digest+" "+m.ArtifactType)
		}
		return out
	}
	if got := referrers(); len(got) != 0 {
		t.Fatalf("before gc the index cannot list the adopted referrer, yet it lists %q", got)
	}
	rep := mustBerthGC(t, "--root", root, "--dry-run")
	if rep.ReferrersIndexed != 1 {
		t.Errorf("dry run indexed %d referrers, want 1", rep.ReferrersIndexed)
	}
	want := []string{img.referrerDigest + " application/vnd.berth.test.signature"}
	if got := referrers(); !slices.Equal(got, want) {
		t.Errorf("referrers after gc: %q, want %q", got, want)
	}
	if rep := mustBerthGC(t, "--root", root); rep.ReferrersIndexed != 0 || rep.planned() != 0 {
		t.Errorf("second run: indexed %d, planned %d; want nothing", rep.ReferrersIndexed, rep.planned())
	}
}

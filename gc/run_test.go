package gc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/versitygw"
	"github.com/berth-registry/berth/manifest"
	"github.com/berth-registry/berth/storage"
	"github.com/berth-registry/berth/storage/filesystem"
	"github.com/berth-registry/berth/storage/inmemory"
	"github.com/berth-registry/berth/storage/s3"
	"github.com/berth-registry/berth/storage/store"
)

// drivers runs f on every backend: in-memory, filesystem, and S3 when
// versitygw is available (make test requires it).
func drivers(t *testing.T, f func(t *testing.T, d storage.Driver)) {
	t.Run("inmemory", func(t *testing.T) { f(t, inmemory.New()) })
	t.Run("filesystem", func(t *testing.T) {
		d, err := filesystem.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		f(t, d)
	})
	t.Run("s3", func(t *testing.T) {
		gw := versitygw.Start(t, "berth-gc")
		d, err := s3.New(t.Context(), s3.Config{
			Bucket: gw.Bucket, Endpoint: gw.Endpoint, PathStyle: true,
			AccessKey: gw.AccessKey, SecretKey: gw.SecretKey, Prefix: "gc",
		})
		if err != nil {
			t.Fatal(err)
		}
		f(t, d)
	})
}

var discard = slog.New(slog.DiscardHandler)

// unit is a duration long enough for the driver's clock to tell apart.
func unit(d storage.Driver) time.Duration {
	if _, ok := d.(*s3.Driver); ok {
		return time.Second
	}
	return 20 * time.Millisecond
}

// tick waits until what was just written is older than anything the
// driver stamps from now on: file times come from the kernel's coarse
// clock, and S3 gives times to the second.
func tick(d storage.Driver) {
	switch d.(type) {
	case *s3.Driver:
		time.Sleep(1100 * time.Millisecond)
	case *filesystem.Driver:
		time.Sleep(20 * time.Millisecond)
	}
}

func newStore(d storage.Driver) *store.Store {
	return store.New(d, store.Options{ManifestCacheBytes: -1, Logger: discard})
}

// run collects with no grace (everything written before the start is old)
// unless opts says otherwise.
func run(t *testing.T, st *store.Store, opts Options) Report {
	t.Helper()
	if opts.Grace == 0 {
		opts.Grace = NoGrace
		tick(st.Driver())
	}
	opts.Logger = discard
	rep, err := Run(t.Context(), st, opts)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return rep
}

func pushBlob(t *testing.T, st *store.Store, repo string, b []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(b)
	if _, err := st.PutBlob(context.Background(), repo, bytes.NewReader(b), d); err != nil {
		t.Fatal(err)
	}
	return d
}

const (
	ociManifest = "application/vnd.oci.image.manifest.v1+json"
	ociIndex    = "application/vnd.oci.image.index.v1+json"
)

func imageBody(config digest.Digest, cs int, layers []digest.Digest, sizes []int, subject string) []byte {
	var ls []string
	for i, d := range layers {
		ls = append(ls, fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%d}`, d, sizes[i]))
	}
	return fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[%s]%s}`,
		ociManifest, config, cs, strings.Join(ls, ","), subject)
}

// image is a pushed manifest with what it references.
type image struct {
	repo   string
	digest digest.Digest
	size   int
	blobs  []digest.Digest // config and layers
}

// pushImage pushes a config and the layers and a manifest (tagged when tag
// is not empty), with a subject when subject is not nil.
func pushImage(t *testing.T, st *store.Store, repo, tag string, subject *image, layers ...[]byte) image {
	t.Helper()
	cfg := fmt.Appendf(nil, `{"architecture":"amd64","os":"linux","id":%d}`, rand.Int64())
	cd := pushBlob(t, st, repo, cfg)
	var ds []digest.Digest
	var sizes []int
	for _, l := range layers {
		ds = append(ds, pushBlob(t, st, repo, l))
		sizes = append(sizes, len(l))
	}
	subj := ""
	if subject != nil {
		subj = fmt.Sprintf(`,"subject":{"mediaType":%q,"digest":"%s","size":%d}`, ociManifest, subject.digest, subject.size)
	}
	body := imageBody(cd, len(cfg), ds, sizes, subj)
	res, err := st.PutManifest(context.Background(), repo, tagList(tag), "", ociManifest, body)
	if err != nil {
		t.Fatal(err)
	}
	return image{repo: repo, digest: res.Digest, size: len(body), blobs: append([]digest.Digest{cd}, ds...)}
}

// pushIndex pushes an index of children, tagged when tag is not empty.
func pushIndex(t *testing.T, st *store.Store, repo, tag string, children ...image) image {
	t.Helper()
	var ms []string
	for i, c := range children {
		mt := ociManifest
		if len(c.blobs) == 0 {
			mt = ociIndex
		}
		ms = append(ms, fmt.Sprintf(`{"mediaType":%q,"digest":"%s","size":%d,"platform":{"os":"linux","architecture":"arch%d"}}`, mt, c.digest, c.size, i))
	}
	body := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"manifests":[%s]}`, ociIndex, strings.Join(ms, ","))
	res, err := st.PutManifest(context.Background(), repo, tagList(tag), "", ociIndex, body)
	if err != nil {
		t.Fatal(err)
	}
	return image{repo: repo, digest: res.Digest, size: len(body)}
}

// pull reads manifest d of repo and everything it references back,
// through child manifests, checking digests.
func pull(t *testing.T, st *store.Store, repo string, d digest.Digest) {
	t.Helper()
	if err := tryPull(st, repo, d); err != nil {
		t.Fatal(err)
	}
}

func tryPull(st *store.Store, repo string, d digest.Digest) error {
	ctx := context.Background()
	m, err := st.GetManifest(ctx, repo, d)
	if err != nil {
		return fmt.Errorf("pull %s@%s: %w", repo, d, err)
	}
	parsed, err := manifest.Parse("", m.Body)
	if err != nil {
		return err
	}
	for _, c := range parsed.Manifests {
		if err := tryPull(st, repo, c.Digest); err != nil {
			return err
		}
	}
	for _, b := range parsed.BlobReferences() {
		r, _, err := st.OpenBlob(ctx, repo, b.Digest, 0)
		if err != nil {
			return fmt.Errorf("pull %s@%s: blob %s: %w", repo, d, b.Digest, err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || digest.FromBytes(got) != b.Digest {
			return fmt.Errorf("pull %s@%s: blob %s reads back as %s (%v)", repo, d, b.Digest, digest.FromBytes(got), err)
		}
	}
	return nil
}

func blobExists(t *testing.T, d storage.Driver, b digest.Digest) bool {
	t.Helper()
	_, err := d.Stat(context.Background(), "/docker/registry/v2/blobs/sha256/"+b.Encoded()[:2]+"/"+b.Encoded()+"/data")
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

func manifestExists(t *testing.T, st *store.Store, repo string, d digest.Digest) bool {
	t.Helper()
	_, err := st.GetManifest(context.Background(), repo, d)
	if err != nil && !errors.Is(err, store.ErrManifestUnknown) {
		t.Fatal(err)
	}
	return err == nil
}

func TestDeleteUntaggedKeepsWhatRootsReach(t *testing.T) {
	drivers(t, func(t *testing.T, d storage.Driver) {
		st := newStore(d)
		ctx := context.Background()
		const repo = "team/app"
		shared := []byte("a layer every image shares")
		// A tagged multi-arch index whose children are untagged.
		amd := pushImage(t, st, repo, "", nil, shared, []byte("amd64 layer"))
		arm := pushImage(t, st, repo, "", nil, shared, []byte("arm64 layer"))
		multi := pushIndex(t, st, repo, "multi", amd, arm)
		// A nested index: tagged outer, untagged inner, untagged leaf.
		leaf := pushImage(t, st, repo, "", nil, []byte("leaf layer"))
		inner := pushIndex(t, st, repo, "", leaf)
		outer := pushIndex(t, st, repo, "nested", inner)
		// An artifact whose subject is tagged, and one whose subject is an
		// untagged image that goes.
		tagged := pushImage(t, st, repo, "v1", nil, shared)
		sig := pushImage(t, st, repo, "", &tagged, []byte("signature"))
		orphanSubject := pushImage(t, st, repo, "", nil, []byte("untagged image"))
		orphanSig := pushImage(t, st, repo, "", &orphanSubject, []byte("signature of nothing kept"))
		// A second repository sharing a layer, untagged: it goes, the
		// shared layer stays (team/app needs it).
		other := pushImage(t, st, "other", "", nil, shared, []byte("other layer"))

		rep := run(t, st, Options{DeleteUntagged: true})

		for _, img := range []image{multi, amd, arm, outer, inner, leaf, tagged, sig} {
			pull(t, st, img.repo, img.digest)
		}
		for _, img := range []image{orphanSubject, orphanSig, other} {
			if manifestExists(t, st, img.repo, img.digest) {
				t.Errorf("untagged, unreachable manifest %s@%s survived", img.repo, img.digest)
			}
			for _, b := range img.blobs[1:] {
				if b != digest.FromBytes(shared) && blobExists(t, d, b) {
					t.Errorf("layer %s of %s survived", b, img.digest)
				}
			}
			if blobExists(t, d, img.digest) {
				t.Errorf("bytes of manifest %s survived", img.digest)
			}
		}
		if !blobExists(t, d, digest.FromBytes(shared)) {
			t.Error("the shared layer went")
		}
		// The referrers index no longer lists the collected referrer.
		refs, err := st.Referrers(ctx, repo, orphanSubject.digest, "")
		if err != nil || len(refs) != 0 {
			t.Errorf("referrers of the deleted subject: %v, %v; want none", refs, err)
		}
		refs, err = st.Referrers(ctx, repo, tagged.digest, "")
		if err != nil || len(refs) != 1 || refs[0].Digest != sig.digest {
			t.Errorf("referrers of the tagged image: %v, %v; want the signature", refs, err)
		}
		if rep.Deleted.Manifests != 3 || rep.Spared != (Counts{}) {
			t.Errorf("deleted %+v, spared %+v; want 3 manifests deleted, nothing spared", rep.Deleted, rep.Spared)
		}
		// The catalog no longer lists the emptied repository.
		repos, err := st.Repositories(ctx)
		if err != nil || !slices.Equal(repos, []string{repo}) {
			t.Errorf("repositories after gc: %v, %v", repos, err)
		}
		// Converged: a second run plans nothing.
		if again := run(t, st, Options{DeleteUntagged: true, DryRun: true}); again.Deleted != (Counts{}) {
			t.Errorf("second run plans %+v", again.Deleted)
		}
	})
}

func TestUntaggedKeptByDefault(t *testing.T) {
	drivers(t, func(t *testing.T, d storage.Driver) {
		st := newStore(d)
		img := pushImage(t, st, "a", "", nil, []byte("layer"))
		gone := pushImage(t, st, "a", "x", nil, []byte("deleted image's layer"))
		if err := st.DeleteManifest(context.Background(), "a", gone.digest); err != nil {
			t.Fatal(err)
		}
		rep := run(t, st, Options{})
		pull(t, st, "a", img.digest)
		for _, b := range append(gone.blobs, gone.digest) {
			if blobExists(t, d, b) {
				t.Errorf("blob %s of the deleted manifest survived", b)
			}
		}
		if rep.Deleted.Blobs != 3 || rep.Deleted.Manifests != 0 || rep.Deleted.LayerLinks != 2 {
			t.Errorf("deleted %+v; want 3 blobs (config, layer, manifest) and 2 layer links", rep.Deleted)
		}
	})
}

func TestDryRunPlansExactlyWhatTheRunDoes(t *testing.T) {
	drivers(t, func(t *testing.T, d storage.Driver) {
		st := newStore(d)
		for i := range 5 {
			tag := ""
			if i%2 == 0 {
				tag = fmt.Sprint("t", i)
			}
			pushImage(t, st, "r", tag, nil, []byte("common"), fmt.Appendf(nil, "layer %d", i))
		}
		pushImage(t, st, "r", "old", nil, []byte("old one"))
		rules := []RetentionRule{{Repositories: "**", KeepTags: []string{"t.*"}, OlderThan: time.Nanosecond}}
		dry := run(t, st, Options{DeleteUntagged: true, Retention: rules, DryRun: true, Explain: true})
		if len(dry.Kept) == 0 || len(dry.Tags) != 1 || dry.Tags[0].Tag != "old" {
			t.Fatalf("dry run: tags %+v, %d kept explained", dry.Tags, len(dry.Kept))
		}
		real := run(t, st, Options{DeleteUntagged: true, Retention: rules})
		for name, pair := range map[string][2]any{
			"tags": {dry.Tags, real.Tags}, "manifests": {dry.Manifests, real.Manifests}, "blobs": {dry.Blobs, real.Blobs},
			"layer links": {dry.LayerLinks, real.LayerLinks}, "uploads": {dry.Uploads, real.Uploads},
		} {
			if fmt.Sprint(pair[0]) != fmt.Sprint(pair[1]) {
				t.Errorf("%s: dry run planned %v, the run planned %v", name, pair[0], pair[1])
			}
		}
		if dry.Deleted != real.Deleted || real.Spared != (Counts{}) {
			t.Errorf("dry run would delete %+v; the run deleted %+v and spared %+v", dry.Deleted, real.Deleted, real.Spared)
		}
		if dry.Deleted.Manifests != 3 || dry.Deleted.Tags != 1 {
			t.Errorf("planned %+v; want 3 manifests (2 untagged, 1 retention) and 1 tag", dry.Deleted)
		}
		if again := run(t, st, Options{DeleteUntagged: true, Retention: rules, DryRun: true}); again.Deleted != (Counts{}) {
			t.Errorf("after the run, a dry run still plans %+v", again.Deleted)
		}
	})
}

// waitForLeases waits until at least n leases exist in d (a client that
// leased is then blocked on a doom list or done).
func waitForLeases(t *testing.T, d storage.Driver, n int) {
	t.Helper()
	for range 2000 {
		var got int
		err := d.Walk(context.Background(), "/docker/registry/v2/_berth/gc/leases", func(fi storage.FileInfo) error {
			if !fi.IsDir {
				got++
			}
			return nil
		})
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			t.Fatal(err)
		}
		if got >= n {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no lease %d appeared", n)
}

func countLeases(t *testing.T, d storage.Driver) int {
	t.Helper()
	n := 0
	_ = d.Walk(context.Background(), "/docker/registry/v2/_berth/gc/leases", func(fi storage.FileInfo) error {
		if !fi.IsDir {
			n++
		}
		return nil
	})
	return n
}

// TestHeadThenManifestRace drives the race of the safety contract at each
// point of a sweep round: a client saw blob x exist and pushes a manifest
// referencing x. It gets 201 with x kept, or MANIFEST_BLOB_UNKNOWN; never
// 201 and a loss.
func TestHeadThenManifestRace(t *testing.T) {
	drivers(t, func(t *testing.T, d storage.Driver) {
		st := newStore(d)
		ctx := context.Background()
		const repo = "library/app"
		layer := []byte("an old layer nobody references yet")
		x := pushBlob(t, st, repo, layer)
		cfg := []byte(`{"os":"linux"}`)
		cd := pushBlob(t, st, repo, cfg)
		body := imageBody(cd, len(cfg), []digest.Digest{x}, []int{len(layer)}, "")
		if _, err := st.StatBlob(ctx, repo, x); err != nil { // the client's HEAD
			t.Fatal(err)
		}

		type result struct {
			err error
		}
		put := func(tag string) chan result {
			ch := make(chan result, 1)
			go func() {
				_, err := st.PutManifest(ctx, repo, tagList(tag), "", ociManifest, body)
				ch <- result{err}
			}()
			return ch
		}

		// 1. The PUT's lease lands after the doom list, before the leases are
		// read: the collector spares x, the PUT waits, then gets 201.
		var early chan result
		rep := run(t, st, Options{hooks: hooks{afterDoom: func() {
			// HEAD and mount of a doomed blob answer unknown at once.
			if _, err := st.StatBlob(ctx, repo, x); !errors.Is(err, store.ErrBlobUnknown) {
				t.Errorf("HEAD of a doomed blob: %v, want unknown", err)
			}
			if _, err := st.MountBlob(ctx, "elsewhere", repo, x); !errors.Is(err, store.ErrBlobUnknown) {
				t.Errorf("mount of a doomed blob: %v, want unknown", err)
			}
			n := countLeases(t, d)
			early = put("early")
			waitForLeases(t, d, n+1)
		}}})
		if early == nil {
			t.Fatalf("the run doomed nothing: %+v", rep)
		}
		if r := <-early; r.err != nil {
			t.Fatalf("PUT whose lease the collector read: %v, want 201", r.err)
		}
		if rep.Spared.Blobs != 2 || rep.Deleted.Blobs != 0 {
			t.Errorf("first run: deleted %+v, spared %+v; want x and its config spared", rep.Deleted, rep.Spared)
		}
		pull(t, st, repo, digest.FromBytes(body))

		// 2. Untag and delete the manifest; the PUT's lease lands after the
		// collector read the leases: it deletes x and the PUT is told
		// MANIFEST_BLOB_UNKNOWN, storing nothing.
		if err := st.DeleteManifest(ctx, repo, digest.FromBytes(body)); err != nil {
			t.Fatal(err)
		}
		var late chan result
		rep = run(t, st, Options{hooks: hooks{beforeDelete: func() {
			n := countLeases(t, d)
			late = put("late")
			waitForLeases(t, d, n+1)
		}}})
		if late == nil {
			t.Fatalf("the run doomed nothing: %+v", rep)
		}
		if r := <-late; !errors.Is(r.err, store.ErrManifestBlobUnknown) {
			t.Fatalf("PUT whose lease came after the collector read them: %v, want MANIFEST_BLOB_UNKNOWN", r.err)
		}
		if blobExists(t, d, x) || rep.Deleted.Blobs != 3 {
			t.Errorf("x exists %v; deleted %+v (want x, config and manifest bytes)", blobExists(t, d, x), rep.Deleted)
		}
		if manifestExists(t, st, repo, digest.FromBytes(body)) {
			t.Error("the refused manifest is stored")
		}
		if _, err := st.ResolveTag(ctx, repo, "late"); !errors.Is(err, store.ErrManifestUnknown) {
			t.Errorf("tag of the refused manifest: %v", err)
		}
	})
}

// TestHeadLeaseKeepsBlobForNextPush: a HEAD before the run leases an old
// blob, so the run spares it and the manifest pushed after gets 201.
func TestHeadLeaseKeepsBlobForNextPush(t *testing.T) {
	drivers(t, func(t *testing.T, d storage.Driver) {
		st := store.New(d, store.Options{ManifestCacheBytes: -1, Logger: discard, LeaseAfter: time.Millisecond})
		ctx := context.Background()
		layer := []byte("layer pushed long ago")
		x := pushBlob(t, st, "r", layer)
		time.Sleep(3 * unit(d)) // older than the grace below
		if _, err := st.StatBlob(ctx, "r", x); err != nil {
			t.Fatal(err)
		}
		rep := run(t, st, Options{Grace: 2 * unit(d)})
		if !blobExists(t, d, x) || rep.Spared.Blobs != 1 {
			t.Fatalf("x after the run: exists %v, spared %+v", blobExists(t, d, x), rep.Spared)
		}
		cfg := []byte(`{}`)
		cd := pushBlob(t, st, "r", cfg)
		if _, err := st.PutManifest(ctx, "r", []string{"v1"}, "", ociManifest, imageBody(cd, 2, []digest.Digest{x}, []int{len(layer)}, "")); err != nil {
			t.Fatalf("PUT after HEAD and gc: %v", err)
		}
	})
}

// TestRepushOfManifestBeingDeleted: pushing again, by tag, an untagged
// manifest the collector has marked waits for it and ends tagged and whole.
func TestRepushOfManifestBeingDeleted(t *testing.T) {
	drivers(t, func(t *testing.T, d storage.Driver) {
		st := newStore(d)
		ctx := context.Background()
		img := pushImage(t, st, "r", "", nil, []byte("layer of an untagged image"))
		m, err := st.GetManifest(ctx, "r", img.digest)
		if err != nil {
			t.Fatal(err)
		}
		var done chan error
		for _, hook := range []string{"afterDoom", "beforeDelete"} {
			h := func() {
				n := countLeases(t, d)
				done = make(chan error, 1)
				go func() {
					_, err := st.PutManifest(ctx, "r", []string{"again"}, "", ociManifest, m.Body)
					done <- err
				}()
				waitForLeases(t, d, n+1)
			}
			opts := Options{DeleteUntagged: true}
			if hook == "afterDoom" {
				opts.hooks.afterDoom = h
			} else {
				opts.hooks.beforeDelete = h
			}
			run(t, st, opts)
			if done == nil {
				t.Fatalf("%s: the run doomed nothing", hook)
			}
			err := <-done
			if hook == "afterDoom" && err != nil {
				t.Fatalf("%s: re-push: %v", hook, err)
			}
			// After beforeDelete the collector deleted the image's blobs:
			// the re-push of the manifest alone is refused.
			if hook == "beforeDelete" {
				if !errors.Is(err, store.ErrManifestBlobUnknown) {
					t.Fatalf("%s: re-push: %v, want MANIFEST_BLOB_UNKNOWN", hook, err)
				}
				break
			}
			if d, err := st.ResolveTag(ctx, "r", "again"); err != nil || d != img.digest {
				t.Fatalf("tag after re-push: %s, %v", d, err)
			}
			pull(t, st, "r", img.digest)
			if err := st.DeleteTag(ctx, "r", "again"); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// failingDriver stops working (every call fails) after a number of
// deletes, as if the process had been killed mid-sweep.
type failingDriver struct {
	storage.Driver
	deletes atomic.Int64
	after   int64
}

var errKilled = errors.New("killed")

func (f *failingDriver) dead() bool { return f.deletes.Load() >= f.after }

func (f *failingDriver) Delete(ctx context.Context, p string) error {
	if f.deletes.Add(1) > f.after {
		return errKilled
	}
	return f.Driver.Delete(ctx, p)
}

func (f *failingDriver) Writer(ctx context.Context, p string, a bool) (storage.FileWriter, error) {
	if f.dead() {
		return nil, errKilled
	}
	return f.Driver.Writer(ctx, p, a)
}

func TestKilledSweepConverges(t *testing.T) {
	for _, after := range []int64{3, 10, 25} {
		t.Run(fmt.Sprint("after", after), func(t *testing.T) {
			d := inmemory.New()
			st := newStore(d)
			var keep []image
			for i := range 12 {
				tag := ""
				if i%3 == 0 {
					tag = fmt.Sprint("v", i)
				}
				img := pushImage(t, st, "r", tag, nil, []byte("base"), fmt.Appendf(nil, "layer %d", i))
				if tag != "" {
					keep = append(keep, img)
				}
			}
			plan := run(t, st, Options{DeleteUntagged: true, DryRun: true})
			killed := &failingDriver{Driver: d, after: after}
			_, err := Run(context.Background(), newStore(killed), Options{Grace: NoGrace, DeleteUntagged: true, Logger: discard, hooks: hooks{batch: 7}})
			if !errors.Is(err, errKilled) {
				t.Fatalf("killed run: %v", err)
			}
			for _, img := range keep {
				pull(t, st, "r", img.digest)
			}
			rep := run(t, st, Options{DeleteUntagged: true})
			for _, img := range keep {
				pull(t, st, "r", img.digest)
			}
			if again := run(t, st, Options{DeleteUntagged: true, DryRun: true}); again.Deleted != (Counts{}) {
				t.Errorf("after the re-run a dry run plans %+v", again.Deleted)
			}
			if rep.Deleted.Manifests+rep.Spared.Manifests > plan.Deleted.Manifests || rep.Deleted.Blobs == 0 && plan.Deleted.Blobs > int(after) {
				t.Errorf("plan %+v, re-run %+v", plan.Deleted, rep.Deleted)
			}
		})
	}
}

func TestIdleUploadsPurged(t *testing.T) {
	drivers(t, func(t *testing.T, d storage.Driver) {
		st := newStore(d)
		ctx := context.Background()
		idle, err := st.StartUpload(ctx, "r")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.AppendUpload(ctx, "r", idle.ID, 0, strings.NewReader("some bytes")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * unit(d))
		active, err := st.StartUpload(ctx, "r")
		if err != nil {
			t.Fatal(err)
		}
		rep := run(t, st, Options{Grace: unit(d), UploadMaxAge: 2 * unit(d)})
		if len(rep.Uploads) != 1 || rep.Uploads[0].ID != idle.ID || rep.Deleted.Uploads != 1 {
			t.Fatalf("uploads planned %+v, deleted %d", rep.Uploads, rep.Deleted.Uploads)
		}
		if _, err := st.StatUpload(ctx, "r", idle.ID); !errors.Is(err, store.ErrUploadUnknown) {
			t.Errorf("idle upload: %v", err)
		}
		if _, err := st.StatUpload(ctx, "r", active.ID); err != nil {
			t.Errorf("active upload: %v", err)
		}
	})
}

// TestConcurrentClientsNeverLoseAnImage runs pushers (reusing old layers,
// HEAD first like docker), deleters and a collector looping with a short
// grace, then checks that every manifest that got 201 and was not deleted
// pulls whole. The integration soak test does the same through HTTP with
// replicas; this one is in-process and covers every driver.
func TestConcurrentClientsNeverLoseAnImage(t *testing.T) {
	if testing.Short() {
		t.Skip("soak")
	}
	drivers(t, func(t *testing.T, d storage.Driver) {
		st := newStore(d)
		ctx := context.Background()
		pool := make([][]byte, 8)
		for i := range pool {
			pool[i] = fmt.Appendf(nil, "pooled layer %d", i)
		}
		var mu sync.Mutex
		live := map[digest.Digest]string{} // manifest -> repo
		var refused atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(w), 1))
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					repo := fmt.Sprint("team/app", r.IntN(3))
					var ds []digest.Digest
					var sizes []int
					failed := false
					for _, l := range [][]byte{pool[r.IntN(len(pool))], pool[r.IntN(len(pool))], fmt.Appendf(nil, "unique %d %d", w, i)} {
						ld := digest.FromBytes(l)
						if _, err := st.StatBlob(ctx, repo, ld); err != nil {
							if _, err := st.PutBlob(ctx, repo, bytes.NewReader(l), ld); err != nil {
								t.Errorf("push blob: %v", err)
								failed = true
							}
						}
						ds, sizes = append(ds, ld), append(sizes, len(l))
					}
					cfg := fmt.Appendf(nil, `{"w":%d,"i":%d}`, w, i)
					cd := digest.FromBytes(cfg)
					if _, err := st.PutBlob(ctx, repo, bytes.NewReader(cfg), cd); err != nil || failed {
						continue
					}
					res, err := st.PutManifest(ctx, repo, []string{fmt.Sprint("t", r.IntN(4))}, "", ociManifest, imageBody(cd, len(cfg), ds, sizes, ""))
					if errors.Is(err, store.ErrManifestBlobUnknown) {
						refused.Add(1)
						continue
					}
					if err != nil {
						t.Errorf("push manifest: %v", err)
						continue
					}
					mu.Lock()
					live[res.Digest] = repo
					mu.Unlock()
					if r.IntN(3) == 0 {
						mu.Lock()
						delete(live, res.Digest)
						mu.Unlock()
						if err := st.DeleteManifest(ctx, repo, res.Digest); err != nil && !errors.Is(err, store.ErrManifestUnknown) {
							t.Errorf("delete: %v", err)
						}
					}
				}
			}()
		}
		// The grace must exceed the longest push (the contract's
		// assumption A): on S3, whose times have whole seconds and whose
		// pushes take several round trips, a loaded host needs more.
		grace := 150 * time.Millisecond
		if _, ok := d.(*s3.Driver); ok {
			grace = 1500 * time.Millisecond
		}
		runs := 0
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			if _, err := Run(ctx, st, Options{Grace: grace, DeleteUntagged: runs%2 == 0, Logger: discard}); err != nil {
				t.Errorf("gc: %v", err)
			}
			runs++
		}
		close(stop)
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		// Only tagged manifests are roots under DeleteUntagged: a manifest
		// whose tag moved may go. Check those still tagged, and, before a
		// final run keeping untagged ones, every one still stored.
		if _, err := Run(ctx, st, Options{Grace: grace, Logger: discard}); err != nil {
			t.Fatal(err)
		}
		checked := 0
		for m, repo := range live {
			if !manifestExists(t, st, repo, m) {
				continue // untagged and collected: allowed
			}
			checked++
			if err := tryPull(st, repo, m); err != nil {
				t.Errorf("a manifest that got 201 lost content: %v", err)
			}
		}
		t.Logf("%d gc runs, %d manifests checked, %d pushes refused with MANIFEST_BLOB_UNKNOWN", runs, checked, refused.Load())
		if checked == 0 {
			t.Error("nothing checked")
		}
	})
}

// tagList is the tags argument of PutManifest for one tag, or none.
func tagList(tag string) []string {
	if tag == "" {
		return nil
	}
	return []string{tag}
}

// TestSparseManifestsCollected: a sparse index (a child not in the
// repository) and a sparse image (a layer not in it) are collected
// without error; what they reference and is present stays, and so does
// what is pushed later, even untagged.
func TestSparseManifestsCollected(t *testing.T) {
	drivers(t, func(t *testing.T, d storage.Driver) {
		st := store.New(d, store.Options{ManifestCacheBytes: -1, Logger: discard, SparseManifests: true})
		ctx := t.Context()
		const repo = "mirror/app"
		amd := pushImage(t, st, repo, "", nil, []byte("amd64 layer"))
		// The arm64 child and its blobs are not pushed yet.
		armCfg, armLayer := []byte(`{"architecture":"arm64","os":"linux"}`), []byte("arm64 layer")
		armBody := imageBody(digest.FromBytes(armCfg), len(armCfg), []digest.Digest{digest.FromBytes(armLayer)}, []int{len(armLayer)}, "")
		arm := image{repo: repo, digest: digest.FromBytes(armBody), size: len(armBody)}
		multi := pushIndex(t, st, repo, "multi", amd, arm)
		// An image with a layer that is not pushed (yet).
		present, later := []byte("present layer"), []byte("layer pushed later")
		cfg := []byte(`{"architecture":"amd64","os":"linux","partial":true}`)
		cd, pd := pushBlob(t, st, repo, cfg), pushBlob(t, st, repo, present)
		partialBody := imageBody(cd, len(cfg), []digest.Digest{pd, digest.FromBytes(later)}, []int{len(present), len(later)}, "")
		if _, err := st.PutManifest(ctx, repo, []string{"partial"}, "", ociManifest, partialBody); err != nil {
			t.Fatal(err)
		}

		run(t, st, Options{DeleteUntagged: true})
		pull(t, st, repo, amd.digest)
		for _, b := range []digest.Digest{cd, pd, multi.digest, amd.digest} {
			if !blobExists(t, d, b) {
				t.Errorf("%s went", b)
			}
		}

		// The absent parts arrive, untagged: the tagged index and image
		// keep them.
		pushBlob(t, st, repo, armCfg)
		pushBlob(t, st, repo, armLayer)
		if _, err := st.PutManifest(ctx, repo, nil, arm.digest, ociManifest, armBody); err != nil {
			t.Fatal(err)
		}
		pushBlob(t, st, repo, later)
		run(t, st, Options{DeleteUntagged: true})
		pull(t, st, repo, multi.digest)
		pull(t, st, repo, digest.FromBytes(partialBody))
		if again := run(t, st, Options{DeleteUntagged: true, DryRun: true}); again.Deleted != (Counts{}) {
			t.Errorf("second run plans %+v", again.Deleted)
		}
	})
}

// TestReferrersIndexCompleted: manifests with a subject that the referrers
// index does not list (as in a root CNCF Distribution wrote: it keeps no
// index) are indexed by a run, a dry run too, except those the run deletes.
func TestReferrersIndexCompleted(t *testing.T) {
	drivers(t, func(t *testing.T, d storage.Driver) {
		st := newStore(d)
		ctx := t.Context()
		const repo = "adopted/app"
		subject := pushImage(t, st, repo, "v1", nil, []byte("layer"))
		sig := pushImage(t, st, repo, "", &subject, []byte("signature"))
		orphan := pushImage(t, st, repo, "", nil, []byte("untagged"))
		orphanSig := pushImage(t, st, repo, "", &orphan, []byte("signature of an untagged image"))
		// What Distribution would have written: no index at all.
		if err := d.Delete(ctx, "/docker/registry/v2/repositories/"+repo+"/_referrers"); err != nil {
			t.Fatal(err)
		}
		if refs, err := st.Referrers(ctx, repo, subject.digest, ""); err != nil || len(refs) != 0 {
			t.Fatalf("referrers before: %v, %v", refs, err)
		}

		rep := run(t, st, Options{DryRun: true, DeleteUntagged: true})
		if rep.ReferrersIndexed != 1 {
			t.Errorf("dry run indexed %d, want 1 (the untagged image's signature is planned for deletion)", rep.ReferrersIndexed)
		}
		refs, err := st.Referrers(ctx, repo, subject.digest, "")
		if err != nil || len(refs) != 1 || refs[0].Digest != sig.digest || refs[0].Size != int64(sig.size) ||
			refs[0].MediaType != ociManifest || refs[0].ArtifactType != "application/vnd.oci.image.config.v1+json" {
			t.Errorf("referrers after a dry run: %+v, %v; want the signature's descriptor", refs, err)
		}
		if refs, _ := st.Referrers(ctx, repo, orphan.digest, ""); len(refs) != 0 {
			t.Errorf("a referrer planned for deletion was indexed: %+v", refs)
		}

		// Without deleting untagged manifests, the other one is indexed
		// too, and once indexed nothing is written again.
		if rep := run(t, st, Options{}); rep.ReferrersIndexed != 1 {
			t.Errorf("second run indexed %d, want 1", rep.ReferrersIndexed)
		}
		if refs, _ := st.Referrers(ctx, repo, orphan.digest, ""); len(refs) != 1 || refs[0].Digest != orphanSig.digest {
			t.Errorf("referrers of the untagged image: %+v", refs)
		}
		if rep := run(t, st, Options{}); rep.ReferrersIndexed != 0 {
			t.Errorf("third run indexed %d, want 0", rep.ReferrersIndexed)
		}
	})
}

// TestRunWritesMissingSummaries: a tagged repository without a summary
// (written by Distribution, or before Berth kept them) gets one from a
// run, dry or not; one that has a summary is left as it is.
func TestRunWritesMissingSummaries(t *testing.T) {
	drivers(t, func(t *testing.T, d storage.Driver) {
		ctx := context.Background()
		st := newStore(d)
		img := pushImage(t, st, "a", "v1", nil, []byte("layer"))
		other := pushImage(t, st, "b", "v1", nil, []byte("other layer"))
		if err := d.Delete(ctx, "/docker/registry/v2/repositories/a/_berth"); err != nil {
			t.Fatal(err)
		}
		// b's as Berth wrote it before summaries held manifest facts.
		old := fmt.Sprintf(`{"tags":{"v1":{"digest":%q,"pushed":"2026-01-01T00:00:00Z"}}}`, other.digest)
		if err := storage.WriteAll(ctx, d, "/docker/registry/v2/repositories/b/_berth/summary", []byte(old)); err != nil {
			t.Fatal(err)
		}
		rep := run(t, st, Options{DryRun: true})
		if rep.SummariesWritten != 2 {
			t.Errorf("SummariesWritten = %d, want 2", rep.SummariesWritten)
		}
		sum, ok, err := st.ReadSummary(ctx, "a")
		if err != nil || !ok || sum.Tags["v1"].Digest != img.digest || sum.Manifests[img.digest].Bytes() == 0 {
			t.Errorf("summary of a after the run: %+v, %v, %v", sum, ok, err)
		}
		sum, ok, err = st.ReadSummary(ctx, "b")
		if err != nil || !ok || sum.Manifests[other.digest].Bytes() == 0 {
			t.Errorf("summary of b after the run: %+v, %v, %v", sum, ok, err)
		}
		if rep := run(t, st, Options{}); rep.SummariesWritten != 0 {
			t.Errorf("second run: SummariesWritten = %d, want 0", rep.SummariesWritten)
		}
	})
}

// TestRunRecord: a run with RecordAs leaves its record (what it deleted),
// which LastRun reads back; a dry run leaves none.
func TestRunRecord(t *testing.T) {
	ctx := context.Background()
	st := newStore(inmemory.New())
	gone := pushImage(t, st, "a", "x", nil, []byte("deleted image's layer"))
	if err := st.DeleteManifest(ctx, "a", gone.digest); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := LastRun(ctx, st); ok || err != nil {
		t.Fatalf("LastRun before any run: %v, %v", ok, err)
	}
	run(t, st, Options{DryRun: true, RecordAs: "berth gc", Grace: NoGrace})
	if _, ok, _ := LastRun(ctx, st); ok {
		t.Fatal("a dry run left a record")
	}
	rep := run(t, st, Options{RecordAs: "berth serve", Grace: NoGrace})
	r, ok, err := LastRun(ctx, st)
	if err != nil || !ok {
		t.Fatalf("LastRun after a run: %v, %v", ok, err)
	}
	if r.By != "berth serve" || r.Deleted != rep.Deleted || r.Deleted.Blobs != 3 || !r.Start.Equal(rep.Start) {
		t.Errorf("record %+v, want by berth serve and the report's %+v", r, rep.Deleted)
	}
}

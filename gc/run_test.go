package gc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/manifest"
	"github.com/berth-registry/berth/storage"
	"github.com/berth-registry/berth/storage/filesystem"
	"github.com/berth-registry/berth/storage/inmemory"
	"github.com/berth-registry/berth/storage/store"
)

// Short times so that content ages in a test: a blob becomes old for the
// sweep after grace, and a client's reliance touches anything older than
// touchAfter.
const (
	touchAfter = 100 * time.Millisecond
	grace      = time.Second
)

func age() { time.Sleep(grace + 200*time.Millisecond) }

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
}

func newStore(d storage.Driver) *store.Store {
	return store.New(d, store.Options{TouchAfter: touchAfter, ManifestCacheBytes: -1, Logger: discard})
}

var discard = slog.New(slog.DiscardHandler)

func run(t *testing.T, st *store.Store, opts Options) Result {
	t.Helper()
	opts.Grace, opts.TouchAfter, opts.Logger = grace, touchAfter, discard
	res, err := Run(t.Context(), st, opts)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

func pushBlob(t *testing.T, st *store.Store, repo string, b []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(b)
	if _, err := st.PutBlob(t.Context(), repo, bytes.NewReader(b), d); err != nil {
		t.Fatal(err)
	}
	return d
}

const ociManifest = "application/vnd.oci.image.manifest.v1+json"

func imageBody(config digest.Digest, cs int, layers map[digest.Digest]int) []byte {
	ls := ""
	for d, n := range layers {
		if ls != "" {
			ls += ","
		}
		ls += fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%d}`, d, n)
	}
	return fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[%s]}`,
		ociManifest, config, cs, ls)
}

// pushImage pushes a config and the given layers (already pushed or not)
// and a manifest tagged tag; it returns the manifest and config digests.
func pushImage(t *testing.T, st *store.Store, repo, tag string, layers ...[]byte) (digest.Digest, digest.Digest) {
	t.Helper()
	cfg := fmt.Appendf(nil, `{"architecture":"amd64","os":"linux","tag":%q}`, tag)
	cd := pushBlob(t, st, repo, cfg)
	ls := map[digest.Digest]int{}
	for _, l := range layers {
		ls[pushBlob(t, st, repo, l)] = len(l)
	}
	res, err := st.PutManifest(t.Context(), repo, tag, "", ociManifest, imageBody(cd, len(cfg), ls))
	if err != nil {
		t.Fatal(err)
	}
	return res.Digest, cd
}

// pull reads manifest d of repo and every blob it references back, checking digests.
func pull(t *testing.T, st *store.Store, repo string, d digest.Digest) {
	t.Helper()
	m, err := st.GetManifest(t.Context(), repo, d)
	if err != nil {
		t.Fatalf("pull %s: %v", d, err)
	}
	parsed, err := manifest.Parse("", m.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range parsed.BlobReferences() {
		r, _, err := st.OpenBlob(t.Context(), repo, b.Digest, 0)
		if err != nil {
			t.Fatalf("pull %s: blob %s: %v", d, b.Digest, err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || digest.FromBytes(got) != b.Digest {
			t.Fatalf("pull %s: blob %s reads back as %s (%v)", d, b.Digest, digest.FromBytes(got), err)
		}
	}
}

func blobExists(t *testing.T, d storage.Driver, b digest.Digest) bool {
	t.Helper()
	_, err := d.Stat(t.Context(), "/docker/registry/v2/blobs/sha256/"+b.Encoded()[:2]+"/"+b.Encoded()+"/data")
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

// snapshot maps every file path to its content and ModTime.
func snapshot(t *testing.T, d storage.Driver) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := d.Walk(t.Context(), "/", func(fi storage.FileInfo) error {
		if fi.IsDir {
			return nil
		}
		b, err := storage.ReadAll(t.Context(), d, fi.Path)
		out[fi.Path] = fmt.Sprintf("%x %s", digest.FromBytes(b), fi.ModTime)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// twoImages pushes images a and b sharing a layer into one repository and
// deletes a. It returns b, and a's exclusive layer, config and manifest.
func twoImages(t *testing.T, st *store.Store) (b, shared digest.Digest, aOnly []digest.Digest) {
	sharedL, onlyA, onlyB := []byte("shared layer"), []byte("layer of a"), []byte("layer of b")
	ma, ca := pushImage(t, st, "library/app", "a", sharedL, onlyA)
	mb, _ := pushImage(t, st, "library/app", "b", sharedL, onlyB)
	if err := st.DeleteManifest(t.Context(), "library/app", ma); err != nil {
		t.Fatal(err)
	}
	return mb, digest.FromBytes(sharedL), []digest.Digest{digest.FromBytes(onlyA), ca, ma}
}

func TestCollectDeletedImage(t *testing.T) {
	drivers(t, func(t *testing.T, d storage.Driver) {
		st := newStore(d)
		mb, shared, aOnly := twoImages(t, st)
		if res := run(t, st, Options{}); res.Deleted != 0 || res.LinksRemoved != 0 {
			t.Errorf("fresh content: %+v, want nothing deleted within the grace period", res)
		}
		age()
		res := run(t, st, Options{})
		if res.Deleted != 3 || res.LinksRemoved != 2 || res.Kept != 4 {
			t.Errorf("got %d deleted, %d links removed, %d kept; want 3, 2 (a's layer and config), 4", res.Deleted, res.LinksRemoved, res.Kept)
		}
		for _, b := range aOnly {
			if blobExists(t, d, b) {
				t.Errorf("blob %s of the deleted image survived", b)
			}
		}
		if !blobExists(t, d, shared) {
			t.Error("shared layer was deleted")
		}
		pull(t, st, "library/app", mb)
		if res := run(t, st, Options{}); res.Deleted != 0 || res.LinksRemoved != 0 {
			t.Errorf("second run: %+v, want nothing left to delete", res)
		}
	})
}

func TestDryRunDeletesNothingAndPlansTheRun(t *testing.T) {
	drivers(t, func(t *testing.T, d storage.Driver) {
		st := newStore(d)
		twoImages(t, st)
		age()
		before := snapshot(t, d)
		dry := run(t, st, Options{DryRun: true})
		after := snapshot(t, d)
		if fmt.Sprint(before) != fmt.Sprint(after) {
			t.Errorf("dry run changed the storage:\nbefore %v\nafter  %v", before, after)
		}
		real := run(t, st, Options{})
		if dry.Deleted != real.Deleted || dry.DeletedBytes != real.DeletedBytes || dry.LinksRemoved != real.LinksRemoved || dry.Kept != real.Kept {
			t.Errorf("dry run %+v differs from the run %+v", dry, real)
		}
	})
}

// TestHeadThenPushRace: an old blob nothing references is marked garbage;
// before the sweep a client HEADs it, skips the upload and pushes a
// manifest referencing it. The manifest got 201, so the blob must stay.
// A blob pushed while GC runs survives too, and an old unreferenced blob
// nobody asked for is still collected.
func TestHeadThenPushRace(t *testing.T) {
	drivers(t, func(t *testing.T, d storage.Driver) {
		st := newStore(d)
		ctx := t.Context()
		x := pushBlob(t, st, "library/app", []byte("old layer someone will reuse"))
		y := pushBlob(t, st, "library/app", []byte("old layer nobody wants"))
		age()
		var pushedDuring, m digest.Digest
		res := run(t, st, Options{
			afterStart: func() {
				pushedDuring = pushBlob(t, st, "library/app", []byte("pushed while GC runs"))
			},
			beforeSweep: func() {
				size, err := st.StatBlob(ctx, "library/app", x) // HEAD: exists, skip upload
				if err != nil {
					t.Errorf("HEAD: %v", err)
				}
				cfg := []byte(`{"os":"linux"}`)
				cd := pushBlob(t, st, "library/app", cfg)
				r, err := st.PutManifest(ctx, "library/app", "v1", "", ociManifest,
					imageBody(cd, len(cfg), map[digest.Digest]int{x: int(size)}))
				if err != nil {
					t.Errorf("PutManifest: %v", err)
				}
				m = r.Digest
			},
		})
		planned := map[digest.Digest]bool{}
		for _, b := range res.Plan.Blobs {
			planned[b] = true
		}
		if !planned[x] || !planned[y] || planned[pushedDuring] {
			t.Errorf("plan %v: want x and y (old, unreferenced at mark time), not the blob pushed during GC", res.Plan.Blobs)
		}
		if !blobExists(t, d, x) {
			t.Fatal("the blob the client relied on was deleted")
		}
		if blobExists(t, d, y) {
			t.Error("old unreferenced blob survived")
		}
		if !blobExists(t, d, pushedDuring) {
			t.Error("blob pushed during GC was deleted")
		}
		pull(t, st, "library/app", m)
		// The next run keeps it too: now it is referenced.
		age()
		run(t, st, Options{})
		pull(t, st, "library/app", m)
	})
}

// TestSweptBlobIsUnknown: once the sweep has taken a blob, a client that
// relies on it is told it is unknown (and re-uploads), never 201.
func TestSweptBlobIsUnknown(t *testing.T) {
	drivers(t, func(t *testing.T, d storage.Driver) {
		st := newStore(d)
		x := pushBlob(t, st, "library/app", []byte("old layer"))
		age()
		run(t, st, Options{})
		if _, err := st.StatBlob(t.Context(), "library/app", x); !errors.Is(err, store.ErrBlobUnknown) {
			t.Errorf("HEAD after sweep: %v, want blob unknown", err)
		}
		cfg := []byte(`{}`)
		cd := pushBlob(t, st, "library/app", cfg)
		_, err := st.PutManifest(t.Context(), "library/app", "v1", "", ociManifest, imageBody(cd, len(cfg), map[digest.Digest]int{x: 9}))
		if !errors.Is(err, store.ErrManifestBlobUnknown) {
			t.Errorf("PutManifest after sweep: %v, want manifest blob unknown", err)
		}
	})
}

// TestInterruptedSweepConverges: a sweep killed between moving a blob aside
// and deleting it leaves it aside; the next run puts it back.
func TestInterruptedSweepConverges(t *testing.T) {
	drivers(t, func(t *testing.T, d storage.Driver) {
		st := newStore(d)
		m, cd := pushImage(t, st, "library/app", "v1", []byte("layer"))
		p := "/docker/registry/v2/blobs/sha256/" + cd.Encoded()[:2] + "/" + cd.Encoded() + "/data"
		if err := d.Move(t.Context(), p, path.Dir(p)+"/gc-doomed"); err != nil {
			t.Fatal(err)
		}
		age()
		res := run(t, st, Options{})
		if res.Deleted != 0 {
			t.Errorf("deleted %d blobs, want 0", res.Deleted)
		}
		pull(t, st, "library/app", m)
	})
}

// hiddenToucher is a driver without the Toucher ability.
type hiddenToucher struct{ storage.Driver }

func TestRefusesToSweepWithoutToucher(t *testing.T) {
	st := store.New(hiddenToucher{inmemory.New()}, store.Options{})
	_, err := Run(context.Background(), st, Options{Logger: discard})
	if !errors.Is(err, ErrCannotSweep) {
		t.Errorf("Run: %v, want ErrCannotSweep", err)
	}
	if _, err := Run(context.Background(), st, Options{DryRun: true, Logger: discard}); err != nil {
		t.Errorf("dry run: %v", err)
	}
	if _, err := Run(context.Background(), newStore(inmemory.New()), Options{Grace: time.Minute, Logger: discard}); err == nil {
		t.Error("grace shorter than the touch threshold accepted")
	}
}

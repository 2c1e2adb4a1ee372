package store_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/versitygw"
	"github.com/berth-registry/berth/storage"
	"github.com/berth-registry/berth/storage/filesystem"
	"github.com/berth-registry/berth/storage/inmemory"
	"github.com/berth-registry/berth/storage/s3"
	"github.com/berth-registry/berth/storage/store"
)

// drivers runs f once per backend, so the store is checked on every one.
// The S3 case runs against a versitygw the test starts; without one it
// skips, unless versitygw.Require() (make test), where that is a failure.
func drivers(t *testing.T, f func(t *testing.T, d storage.Driver)) {
	t.Run("inmemory", func(t *testing.T) { f(t, inmemory.New()) })
	t.Run("filesystem", func(t *testing.T) {
		d, err := filesystem.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		f(t, d)
	})
	t.Run("s3", func(t *testing.T) {
		gw := versitygw.Start(t, "berth-store")
		d, err := s3.New(t.Context(), s3.Config{
			Bucket: gw.Bucket, Endpoint: gw.Endpoint, PathStyle: true,
			AccessKey: gw.AccessKey, SecretKey: gw.SecretKey, Prefix: "store",
		})
		if err != nil {
			t.Fatal(err)
		}
		f(t, d)
	})
}

// snapshot lists every file in d with its content, to show that a failed
// operation wrote nothing. Garbage-collection leases are left out: a
// successful operation leaves one, and they expire by themselves.
func snapshot(t *testing.T, d storage.Driver) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	err := d.Walk(ctx, "/", func(fi storage.FileInfo) error {
		if fi.IsDir || strings.HasPrefix(fi.Path, "/docker/registry/v2/_berth/gc/leases/") {
			return nil
		}
		b, err := storage.ReadAll(ctx, d, fi.Path)
		out[fi.Path] = string(b)
		return err
	})
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		t.Fatal(err)
	}
	return out
}

func sameSnapshot(t *testing.T, before, after map[string]string) {
	t.Helper()
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("new file %s", p)
		}
	}
	for p, c := range before {
		if after[p] != c {
			t.Errorf("file %s changed or vanished", p)
		}
	}
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func pushBlob(t *testing.T, s *store.Store, repo string, b []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(b)
	if _, err := s.PutBlob(context.Background(), repo, bytes.NewReader(b), d); err != nil {
		t.Fatal(err)
	}
	return d
}

func readBlob(t *testing.T, s *store.Store, repo string, d digest.Digest) []byte {
	t.Helper()
	r, _, err := s.OpenBlob(context.Background(), repo, d, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func imageManifest(config, layer digest.Digest, cs, ls int, extra string) []byte {
	return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%d}]%s}`,
		config, cs, layer, ls, extra))
}

func TestLayoutIsDistributions(t *testing.T) {
	drivers(t, func(t *testing.T, d storage.Driver) {
		ctx := context.Background()
		s := store.New(d, store.Options{})
		blob := []byte("layer bytes")
		bd := pushBlob(t, s, "library/app", blob)
		cfg := []byte(`{"architecture":"amd64","os":"linux"}`)
		cd := pushBlob(t, s, "library/app", cfg)
		body := imageManifest(cd, bd, len(cfg), len(blob), "")
		res, err := s.PutManifest(ctx, "library/app", []string{"v1"}, "", "application/vnd.oci.image.manifest.v1+json", body)
		if err != nil {
			t.Fatal(err)
		}
		md := res.Digest
		root := "/docker/registry/v2"
		want := map[string]string{
			root + "/blobs/sha256/" + bd.Encoded()[:2] + "/" + bd.Encoded() + "/data":                    string(blob),
			root + "/blobs/sha256/" + cd.Encoded()[:2] + "/" + cd.Encoded() + "/data":                    string(cfg),
			root + "/blobs/sha256/" + md.Encoded()[:2] + "/" + md.Encoded() + "/data":                    string(body),
			root + "/repositories/library/app/_layers/sha256/" + bd.Encoded() + "/link":                  bd.String(),
			root + "/repositories/library/app/_layers/sha256/" + cd.Encoded() + "/link":                  cd.String(),
			root + "/repositories/library/app/_manifests/revisions/sha256/" + md.Encoded() + "/link":     md.String(),
			root + "/repositories/library/app/_manifests/tags/v1/current/link":                           md.String(),
			root + "/repositories/library/app/_manifests/tags/v1/index/sha256/" + md.Encoded() + "/link": md.String(),
		}
		got := snapshot(t, d)
		for p, c := range want {
			if got[p] != c {
				t.Errorf("%s = %q, want %q", p, got[p], c)
			}
		}
		// Berth's own: the repository's summary, which Distribution ignores
		// (its name starts with "_").
		summary := root + "/repositories/library/app/_berth/summary"
		if !strings.Contains(got[summary], `"v1":{"digest":"`+md.String()+`"`) {
			t.Errorf("summary = %q, want v1 pointing at %s", got[summary], md)
		}
		for p := range got {
			if _, ok := want[p]; !ok && p != summary {
				t.Errorf("unexpected file %s", p)
			}
		}
	})
}

func TestChunkedUploadResumesAcrossRestart(t *testing.T) {
	drivers(t, func(t *testing.T, d storage.Driver) {
		ctx := context.Background()
		content := randomBytes(t, 3<<20+17)
		want := digest.FromBytes(content)
		s := store.New(d, store.Options{})
		u, err := s.StartUpload(ctx, "a/b")
		if err != nil {
			t.Fatal(err)
		}
		u, err = s.AppendUpload(ctx, "a/b", u.ID, 0, bytes.NewReader(content[:1<<20]))
		if err != nil || u.Size != 1<<20 {
			t.Fatalf("append: size %d, %v", u.Size, err)
		}
		// Out of order: rejected, nothing added.
		_, err = s.AppendUpload(ctx, "a/b", u.ID, 5, bytes.NewReader(content[5:10]))
		var re *store.RangeError
		if !errors.As(err, &re) || !errors.Is(err, store.ErrRangeInvalid) || re.Size != 1<<20 {
			t.Fatalf("out-of-order append: %v", err)
		}
		// A new process over the same storage carries on.
		s2 := store.New(d, store.Options{})
		u, err = s2.AppendUpload(ctx, "a/b", u.ID, 1<<20, bytes.NewReader(content[1<<20:2<<20]))
		if err != nil || u.Size != 2<<20 {
			t.Fatalf("append after restart: size %d, %v", u.Size, err)
		}
		if st, err := s2.StatUpload(ctx, "a/b", u.ID); err != nil || st.Size != 2<<20 {
			t.Fatalf("stat: %+v %v", st, err)
		}
		size, err := s2.FinishUpload(ctx, "a/b", u.ID, bytes.NewReader(content[2<<20:]), want)
		if err != nil || size != int64(len(content)) {
			t.Fatalf("finish: %d %v", size, err)
		}
		if !bytes.Equal(readBlob(t, s2, "a/b", want), content) {
			t.Fatal("blob content differs")
		}
		if _, err := s2.StatUpload(ctx, "a/b", u.ID); !errors.Is(err, store.ErrUploadUnknown) {
			t.Fatalf("finished upload still there: %v", err)
		}
	})
}

func TestResumeWithoutHashStateRehashes(t *testing.T) {
	drivers(t, func(t *testing.T, d storage.Driver) {
		ctx := context.Background()
		content := randomBytes(t, 100_000)
		s := store.New(d, store.Options{})
		u, _ := s.StartUpload(ctx, "r")
		if _, err := s.AppendUpload(ctx, "r", u.ID, -1, bytes.NewReader(content[:60_000])); err != nil {
			t.Fatal(err)
		}
		// Lose the hash state, as after a crash between data and state writes,
		// or an upload begun by Distribution.
		if err := d.Delete(ctx, "/docker/registry/v2/repositories/r/_uploads/"+u.ID+"/hashstates"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.FinishUpload(ctx, "r", u.ID, bytes.NewReader(content[60_000:]), digest.FromBytes(content)); err != nil {
			t.Fatal(err)
		}
	})
}

func TestDigestMismatchStoresNothing(t *testing.T) {
	drivers(t, func(t *testing.T, d storage.Driver) {
		ctx := context.Background()
		s := store.New(d, store.Options{})
		before := snapshot(t, d)
		wrong := digest.FromString("something else")
		_, err := s.PutBlob(ctx, "r", strings.NewReader("content"), wrong)
		if !errors.Is(err, store.ErrDigestMismatch) {
			t.Fatalf("got %v", err)
		}
		if _, err := s.StatBlob(ctx, "r", wrong); !errors.Is(err, store.ErrBlobUnknown) {
			t.Fatalf("stat after mismatch: %v", err)
		}
		sameSnapshot(t, before, snapshot(t, d))
	})
}

func TestSHA512(t *testing.T) {
	drivers(t, func(t *testing.T, d storage.Driver) {
		ctx := context.Background()
		s := store.New(d, store.Options{})
		b := []byte("sha512 content")
		want := digest.SHA512.FromBytes(b)
		if _, err := s.PutBlob(ctx, "r", bytes.NewReader(b), want); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(readBlob(t, s, "r", want), b) {
			t.Fatal("content differs")
		}
		if _, err := s.PutBlob(ctx, "r", bytes.NewReader(b), digest.SHA512.FromString("x")); !errors.Is(err, store.ErrDigestMismatch) {
			t.Fatalf("mismatch: %v", err)
		}
	})
}

func TestManifestReferencingMissingBlobStoresNothing(t *testing.T) {
	drivers(t, func(t *testing.T, d storage.Driver) {
		ctx := context.Background()
		s := store.New(d, store.Options{})
		cfg := []byte(`{}`)
		cd := pushBlob(t, s, "r", cfg)
		pushBlob(t, s, "other", []byte("layer")) // present, but in another repository
		before := snapshot(t, d)
		body := imageManifest(cd, digest.FromString("layer"), 2, 5, "")
		_, err := s.PutManifest(ctx, "r", []string{"v1"}, "", "", body)
		if !errors.Is(err, store.ErrManifestBlobUnknown) {
			t.Fatalf("got %v", err)
		}
		sameSnapshot(t, before, snapshot(t, d))
	})
}

func TestTagsDeletesAndReferrers(t *testing.T) {
	drivers(t, func(t *testing.T, d storage.Driver) {
		ctx := context.Background()
		s := store.New(d, store.Options{})
		cfg, layer := []byte(`{}`), []byte("layer")
		cd, ld := pushBlob(t, s, "r", cfg), pushBlob(t, s, "r", layer)
		subject, err := s.PutManifest(ctx, "r", []string{"v1"}, "", "", imageManifest(cd, ld, 2, 5, ""))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.PutManifest(ctx, "r", []string{"v2"}, "", "", imageManifest(cd, ld, 2, 5, "")); err != nil {
			t.Fatal(err)
		}
		sub := fmt.Sprintf(`,"artifactType":"application/vnd.example.sig","subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":1},"annotations":{"k":"v"}`, subject.Digest)
		sig, err := s.PutManifest(ctx, "r", nil, "", "", imageManifest(cd, ld, 2, 5, sub))
		if err != nil {
			t.Fatal(err)
		}
		tags, err := s.Tags(ctx, "r")
		if err != nil || strings.Join(tags, ",") != "v1,v2" {
			t.Fatalf("tags %v %v", tags, err)
		}
		refs, err := s.Referrers(ctx, "r", subject.Digest, "")
		if err != nil || len(refs) != 1 || refs[0].Digest != sig.Digest || refs[0].ArtifactType != "application/vnd.example.sig" || refs[0].Annotations["k"] != "v" {
			j, _ := json.Marshal(refs)
			t.Fatalf("referrers %s %v", j, err)
		}
		if refs, _ := s.Referrers(ctx, "r", subject.Digest, "application/other"); len(refs) != 0 {
			t.Fatalf("filter kept %v", refs)
		}
		if refs, err := s.Referrers(ctx, "nope", subject.Digest, ""); err != nil || refs == nil || len(refs) != 0 {
			t.Fatalf("unknown repo: %v %v", refs, err)
		}
		// Deleting the manifest both tags point at removes both tags.
		if err := s.DeleteManifest(ctx, "r", subject.Digest); err != nil {
			t.Fatal(err)
		}
		if tags, _ := s.Tags(ctx, "r"); len(tags) != 0 {
			t.Fatalf("tags after delete: %v", tags)
		}
		if _, err := s.GetManifest(ctx, "r", subject.Digest); !errors.Is(err, store.ErrManifestUnknown) {
			t.Fatalf("get after delete: %v", err)
		}
		if err := s.DeleteManifest(ctx, "r", sig.Digest); err != nil {
			t.Fatal(err)
		}
		if refs, _ := s.Referrers(ctx, "r", subject.Digest, ""); len(refs) != 0 {
			t.Fatalf("referrer survived its deletion: %v", refs)
		}
		if err := s.DeleteTag(ctx, "r", "v1"); !errors.Is(err, store.ErrManifestUnknown) {
			t.Fatalf("delete missing tag: %v", err)
		}
		if _, err := s.Tags(ctx, "never"); !errors.Is(err, store.ErrNameUnknown) {
			t.Fatalf("tags of unknown repo: %v", err)
		}
	})
}

func TestRepositoriesAndMount(t *testing.T) {
	drivers(t, func(t *testing.T, d storage.Driver) {
		ctx := context.Background()
		s := store.New(d, store.Options{})
		cfg := []byte(`{}`)
		for _, r := range []string{"b", "a/b", "a-c", "a/b/c"} {
			cd := pushBlob(t, s, r, cfg)
			if _, err := s.PutManifest(ctx, r, []string{"t"}, "", "", imageManifest(cd, cd, 2, 2, "")); err != nil {
				t.Fatal(err)
			}
		}
		pushBlob(t, s, "only-blobs", []byte("x")) // no manifests: not a repository
		repos, err := s.Repositories(ctx)
		if err != nil || strings.Join(repos, " ") != "a-c a/b a/b/c b" {
			t.Fatalf("repositories %v %v", repos, err)
		}
		xd := digest.FromString("x")
		if _, err := s.MountBlob(ctx, "target", "b", xd); !errors.Is(err, store.ErrBlobUnknown) {
			t.Fatalf("mount from a repo without the blob: %v", err)
		}
		if n, err := s.MountBlob(ctx, "target", "only-blobs", xd); err != nil || n != 1 {
			t.Fatalf("mount: %d %v", n, err)
		}
		if n, err := s.MountBlob(ctx, "auto", "", xd); err != nil || n != 1 {
			t.Fatalf("automatic mount: %d %v", n, err)
		}
		if _, err := s.MountBlob(ctx, "auto", "", digest.FromString("absent")); !errors.Is(err, store.ErrBlobUnknown) {
			t.Fatalf("automatic mount of absent blob: %v", err)
		}
		if err := s.DeleteBlob(ctx, "target", xd); err != nil {
			t.Fatal(err)
		}
		if _, err := s.StatBlob(ctx, "target", xd); !errors.Is(err, store.ErrBlobUnknown) {
			t.Fatalf("stat after delete: %v", err)
		}
		if _, err := s.StatBlob(ctx, "auto", xd); err != nil {
			t.Fatalf("delete in one repo removed it from another: %v", err)
		}
	})
}

// agedDriver reports the paths old matches by as older than they are,
// so that a test can have old and fresh content side by side without
// waiting. Everything else goes to the driver it wraps.
type agedDriver struct {
	storage.Driver
	old func(p string) bool
	by  time.Duration
}

func (a agedDriver) age(fi storage.FileInfo) storage.FileInfo {
	if a.old(fi.Path) {
		fi.ModTime = fi.ModTime.Add(-a.by)
	}
	return fi
}

// uploadsAged is an agedDriver making the uploads ids two hours older.
func uploadsAged(d storage.Driver, ids ...string) agedDriver {
	return agedDriver{Driver: d, by: 2 * time.Hour, old: func(p string) bool {
		for _, id := range ids {
			if strings.Contains(p+"/", "/_uploads/"+id+"/") {
				return true
			}
		}
		return false
	}}
}

func (a agedDriver) Stat(ctx context.Context, p string) (storage.FileInfo, error) {
	fi, err := a.Driver.Stat(ctx, p)
	return a.age(fi), err
}

func (a agedDriver) Walk(ctx context.Context, p string, fn storage.WalkFunc) error {
	return a.Driver.Walk(ctx, p, func(fi storage.FileInfo) error { return fn(a.age(fi)) })
}

func TestPurgeUploads(t *testing.T) {
	drivers(t, func(t *testing.T, d storage.Driver) {
		ctx := context.Background()
		s := store.New(d, store.Options{})
		// Content that a purge must not touch, referrer included.
		layer := randomBytes(t, 300_000)
		ld := pushBlob(t, s, "library/app", layer)
		cfg := []byte(`{"architecture":"amd64","os":"linux"}`)
		cd := pushBlob(t, s, "library/app", cfg)
		img, err := s.PutManifest(ctx, "library/app", []string{"v1"}, "", "", imageManifest(cd, ld, len(cfg), len(layer), ""))
		if err != nil {
			t.Fatal(err)
		}
		sig := imageManifest(cd, ld, len(cfg), len(layer), fmt.Sprintf(`,"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":1}`, img.Digest))
		if _, err := s.PutManifest(ctx, "library/app", []string{"sig"}, "", "", sig); err != nil {
			t.Fatal(err)
		}
		before := snapshot(t, d)

		start := func(repo string, chunk []byte) store.Upload {
			t.Helper()
			u, err := s.StartUpload(ctx, repo)
			if err != nil {
				t.Fatal(err)
			}
			if chunk != nil {
				if u, err = s.AppendUpload(ctx, repo, u.ID, 0, bytes.NewReader(chunk)); err != nil {
					t.Fatal(err)
				}
			}
			return u
		}
		oldChunked := start("library/app", randomBytes(t, 100_000))
		oldEmpty := start("library/app/nested", nil)
		oldNoStart := start("other", randomBytes(t, 1000))
		// An upload that lost its startedat is aged by its newest file.
		if err := d.Delete(ctx, "/docker/registry/v2/repositories/other/_uploads/"+oldNoStart.ID+"/startedat"); err != nil {
			t.Fatal(err)
		}
		fresh := start("library/app", layer[:100_000])
		freshNoStart := start("other", randomBytes(t, 1000))
		if err := d.Delete(ctx, "/docker/registry/v2/repositories/other/_uploads/"+freshNoStart.ID+"/startedat"); err != nil {
			t.Fatal(err)
		}

		aged := store.New(uploadsAged(d, oldChunked.ID, oldEmpty.ID, oldNoStart.ID), store.Options{})
		n, err := aged.PurgeUploads(ctx, time.Now().Add(-time.Hour))
		if err != nil || n != 3 {
			t.Fatalf("PurgeUploads = %d, %v; want 3 purged", n, err)
		}
		for _, u := range []store.Upload{oldChunked, oldEmpty} {
			if _, err := s.StatUpload(ctx, u.Repo, u.ID); !errors.Is(err, store.ErrUploadUnknown) {
				t.Errorf("old upload %s in %s: %v, want it gone", u.ID, u.Repo, err)
			}
		}
		for _, u := range []store.Upload{oldNoStart, freshNoStart} {
			p := "/docker/registry/v2/repositories/other/_uploads/" + u.ID
			if _, err := d.Stat(ctx, p); errors.Is(err, storage.ErrNotFound) != (u.ID == oldNoStart.ID) {
				t.Errorf("Stat(%s) after purge: %v", p, err)
			}
		}
		// Nothing else is old: a second purge finds nothing.
		if n, err := aged.PurgeUploads(ctx, time.Now().Add(-time.Hour)); err != nil || n != 0 {
			t.Errorf("second PurgeUploads = %d, %v; want 0", n, err)
		}

		// The fresh upload is intact and completes; it pushes the layer
		// again, so that the storage ends as it began.
		if u, err := s.StatUpload(ctx, "library/app", fresh.ID); err != nil || u.Size != 100_000 {
			t.Fatalf("fresh upload after purge: %+v, %v", u, err)
		}
		if _, err := s.FinishUpload(ctx, "library/app", fresh.ID, bytes.NewReader(layer[100_000:]), ld); err != nil {
			t.Fatal(err)
		}
		if err := d.Delete(ctx, "/docker/registry/v2/repositories/other/_uploads/"+freshNoStart.ID); err != nil {
			t.Fatal(err)
		}
		sameSnapshot(t, before, snapshot(t, d))
		// On S3, deleting the uploads' data aborted their multipart uploads.
		if j, ok := d.(storage.UploadJanitor); ok {
			if n, err := j.AbortStaleUploads(ctx, -time.Minute); err != nil || n != 0 {
				t.Errorf("AbortStaleUploads after purge = %d, %v; want nothing left to abort", n, err)
			}
		}
	})
}

func TestPurgeUploadsOnEmptyStorage(t *testing.T) {
	s := store.New(inmemory.New(), store.Options{})
	if n, err := s.PurgeUploads(context.Background(), time.Now()); err != nil || n != 0 {
		t.Fatalf("PurgeUploads = %d, %v; want 0, nil", n, err)
	}
}

func TestUploadIDsAreValidated(t *testing.T) {
	s := store.New(inmemory.New(), store.Options{})
	for _, id := range []string{"", "..", "../../x", "ABC", "0f0f0f0f-0f0f-0f0f-0f0f-0f0f0f0f0f0f/..", "0F0F0F0F-0F0F-0F0F-0F0F-0F0F0F0F0F0F"} {
		if _, err := s.StatUpload(context.Background(), "r", id); !errors.Is(err, store.ErrUploadUnknown) {
			t.Errorf("%q: %v", id, err)
		}
	}
}

// cutReader yields its bytes, then fails as a dropped connection does.
type cutReader struct{ r io.Reader }

func (c *cutReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err == io.EOF {
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

func TestCutOffChunkIsReportedAndKept(t *testing.T) {
	// 20 kB fits one copy buffer; 2.5 MiB goes through the hashing pipeline.
	for _, cut := range []int{20_000, 5<<19 + 3} {
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			drivers(t, func(t *testing.T, d storage.Driver) {
				ctx := context.Background()
				s := store.New(d, store.Options{})
				content := randomBytes(t, cut+30_000)
				u, _ := s.StartUpload(ctx, "r")
				u, err := s.AppendUpload(ctx, "r", u.ID, 0, &cutReader{bytes.NewReader(content[:cut])})
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("cut-off chunk: %v", err)
				}
				if u.Size != int64(cut) {
					t.Fatalf("kept %d bytes, want the %d received", u.Size, cut)
				}
				// The client resumes where the upload ends, and the blob verifies.
				if _, err := s.FinishUpload(ctx, "r", u.ID, bytes.NewReader(content[cut:]), digest.FromBytes(content)); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}

func BenchmarkPutBlob(b *testing.B) {
	content := make([]byte, 64<<20)
	if _, err := rand.Read(content); err != nil {
		b.Fatal(err)
	}
	want := digest.FromBytes(content)
	b.SetBytes(int64(len(content)))
	for i := 0; i < b.N; i++ {
		s := store.New(inmemory.New(), store.Options{})
		if _, err := s.PutBlob(context.Background(), "r", bytes.NewReader(content), want); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSparseManifests: with Options.SparseManifests a manifest whose layer
// or child manifest is absent from the repository is stored, and the
// result names what is absent; one whose reference a collector deleted
// while the push relied on it is refused all the same.
func TestSparseManifests(t *testing.T) {
	drivers(t, func(t *testing.T, d storage.Driver) {
		ctx := t.Context()
		s := store.New(d, store.Options{SparseManifests: true})
		cd := pushBlob(t, s, "r", []byte(`{}`))
		ld := pushBlob(t, s, "r", []byte("layer"))
		elsewhere := pushBlob(t, s, "other", []byte("in another repository"))
		missing := digest.FromString("never pushed")

		img := imageManifest(cd, missing, 2, 12, "")
		res, err := s.PutManifest(ctx, "r", []string{"img"}, "", "", img)
		if err != nil {
			t.Fatalf("image with an absent layer: %v", err)
		}
		if len(res.Absent) != 1 || res.Absent[0] != missing {
			t.Errorf("Absent = %v, want [%s]", res.Absent, missing)
		}
		if got, err := s.ResolveTag(ctx, "r", "img"); err != nil || got != res.Digest {
			t.Errorf("tag img: %s, %v; want %s", got, err, res.Digest)
		}

		// A blob stored for another repository is absent from this one:
		// a sparse push does not link it (that would be a mount nobody
		// was authorised for).
		res, err = s.PutManifest(ctx, "r", nil, "", "", imageManifest(cd, elsewhere, 2, 21, ""))
		if err != nil || len(res.Absent) != 1 || res.Absent[0] != elsewhere {
			t.Fatalf("image with another repository's layer: %+v, %v", res, err)
		}
		if _, err := s.StatBlob(ctx, "r", elsewhere); !errors.Is(err, store.ErrBlobUnknown) {
			t.Errorf("the other repository's blob became visible in r: %v", err)
		}

		complete, err := s.PutManifest(ctx, "r", nil, "", "", imageManifest(cd, ld, 2, 5, ""))
		if err != nil || len(complete.Absent) != 0 {
			t.Fatalf("complete image: %+v, %v", complete, err)
		}
		absentChild := digest.FromString("child mirrored elsewhere")
		index := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[`+
			`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%d,"platform":{"os":"linux","architecture":"amd64"}},`+
			`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":1024,"platform":{"os":"linux","architecture":"arm64"}}]}`,
			complete.Digest, len(imageManifest(cd, ld, 2, 5, "")), absentChild))
		res, err = s.PutManifest(ctx, "r", []string{"multi", "latest"}, "", "", index)
		if err != nil {
			t.Fatalf("index with an absent child: %v", err)
		}
		if len(res.Absent) != 1 || res.Absent[0] != absentChild {
			t.Errorf("Absent = %v, want [%s]", res.Absent, absentChild)
		}
		for _, tag := range []string{"multi", "latest"} {
			if got, err := s.ResolveTag(ctx, "r", tag); err != nil || got != res.Digest {
				t.Errorf("tag %s: %s, %v; want %s", tag, got, err, res.Digest)
			}
		}
		if _, err := s.GetManifest(ctx, "r", absentChild); !errors.Is(err, store.ErrManifestUnknown) {
			t.Errorf("GET of the absent child: %v, want MANIFEST_UNKNOWN", err)
		}

		// A collector doomed and deleted the layer: the push relied on
		// something that existed, so it is refused, sparse or not.
		doomed := []store.Item{{Kind: store.ItemBlob, Digest: ld}}
		if err := s.Doom(ctx, "run1-000000", doomed); err != nil {
			t.Fatal(err)
		}
		if err := errors.Join(s.DeleteItems(ctx, doomed)...); err != nil {
			t.Fatal(err)
		}
		before := snapshot(t, d)
		_, err = s.PutManifest(ctx, "r", []string{"late"}, "", "", imageManifest(cd, ld, 2, 5, `,"annotations":{"a":"b"}`))
		if !errors.Is(err, store.ErrManifestBlobUnknown) {
			t.Errorf("push relying on a collected layer: %v, want MANIFEST_BLOB_UNKNOWN", err)
		}
		sameSnapshot(t, before, snapshot(t, d))
		if err := s.Undoom(ctx, "run1-000000"); err != nil {
			t.Fatal(err)
		}
		// After the round, its list is a tombstone: a push relying on
		// what it deleted is still refused (the client may have seen the
		// layer with a HEAD before the collection, and not pushed it).
		_, err = s.PutManifest(ctx, "r", []string{"later"}, "", "", imageManifest(cd, ld, 2, 5, `,"annotations":{"a":"c"}`))
		if !errors.Is(err, store.ErrManifestBlobUnknown) {
			t.Errorf("push relying on a layer collected lately: %v, want MANIFEST_BLOB_UNKNOWN", err)
		}
		// Once the tombstone is older than TombstoneTTL, the layer is
		// simply absent: sparse.
		aged := store.New(agedDriver{Driver: d, by: store.TombstoneTTL + time.Minute, old: func(p string) bool {
			return strings.Contains(p, "/_berth/gc/deleted/")
		}}, store.Options{SparseManifests: true})
		res, err = aged.PutManifest(ctx, "r", []string{"later"}, "", "", imageManifest(cd, ld, 2, 5, `,"annotations":{"a":"c"}`))
		if err != nil || len(res.Absent) != 1 || res.Absent[0] != ld {
			t.Errorf("push relying on a layer collected a day ago: %+v, %v; want accepted as sparse", res, err)
		}
		// CleanUpGC removes that old tombstone.
		if _, err := aged.CleanUpGC(ctx, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if names, err := d.List(ctx, "/docker/registry/v2/_berth/gc/deleted"); err == nil && len(names) != 0 {
			t.Errorf("tombstones left after CleanUpGC: %v", names)
		}
	})
}

// TestVoidDoomListBecomesTombstone: the doom list of a killed collector,
// once void, is moved among the tombstones by CleanUpGC, so that a sparse
// push relying on what that collector may have deleted is refused.
func TestVoidDoomListBecomesTombstone(t *testing.T) {
	drivers(t, func(t *testing.T, d storage.Driver) {
		ctx := t.Context()
		s := store.New(d, store.Options{SparseManifests: true})
		cd, ld := pushBlob(t, s, "r", []byte(`{}`)), pushBlob(t, s, "r", []byte("layer"))
		doomed := []store.Item{{Kind: store.ItemLayerLink, Repository: "r", Digest: ld}}
		if err := s.Doom(ctx, "killed-000000", doomed); err != nil {
			t.Fatal(err)
		}
		if err := errors.Join(s.DeleteItems(ctx, doomed)...); err != nil {
			t.Fatal(err)
		}
		// The collector dies here; its list goes void.
		aged := store.New(agedDriver{Driver: d, by: 2 * store.DoomTTL, old: func(p string) bool {
			return strings.Contains(p, "/_berth/gc/doomed/")
		}}, store.Options{SparseManifests: true})
		if n, err := aged.CleanUpGC(ctx, time.Time{}); err != nil || n != 1 {
			t.Fatalf("CleanUpGC: %d, %v; want the void list moved", n, err)
		}
		if names, _ := d.List(ctx, "/docker/registry/v2/_berth/gc/doomed"); len(names) != 0 {
			t.Errorf("void doom lists left: %v", names)
		}
		_, err := s.PutManifest(ctx, "r", nil, "", "", imageManifest(cd, ld, 2, 5, ""))
		if !errors.Is(err, store.ErrManifestBlobUnknown) {
			t.Errorf("push relying on a layer a killed collector deleted: %v, want MANIFEST_BLOB_UNKNOWN", err)
		}
	})
}

// TestIndexReferrer: IndexReferrer writes what a push writes, and nothing
// for a manifest without a subject or no longer in the repository.
func TestIndexReferrer(t *testing.T) {
	drivers(t, func(t *testing.T, d storage.Driver) {
		ctx := t.Context()
		s := store.New(d, store.Options{})
		cd, ld := pushBlob(t, s, "r", []byte(`{}`)), pushBlob(t, s, "r", []byte("layer"))
		subject, err := s.PutManifest(ctx, "r", []string{"v1"}, "", "", imageManifest(cd, ld, 2, 5, ""))
		if err != nil {
			t.Fatal(err)
		}
		sub := fmt.Sprintf(`,"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":1}`, subject.Digest)
		sig, err := s.PutManifest(ctx, "r", nil, "", "", imageManifest(cd, ld, 2, 5, sub+`,"annotations":{"k":"v"}`))
		if err != nil {
			t.Fatal(err)
		}
		pushed, err := s.Referrers(ctx, "r", subject.Digest, "")
		if err != nil || len(pushed) != 1 {
			t.Fatalf("referrers after the push: %v, %v", pushed, err)
		}
		entries, err := s.ReferrerEntries(ctx, "r")
		if err != nil || len(entries) != 1 || entries[0] != (store.ReferrerEntry{Subject: subject.Digest, Referrer: sig.Digest}) {
			t.Fatalf("ReferrerEntries = %v, %v", entries, err)
		}
		if err := d.Delete(ctx, "/docker/registry/v2/repositories/r/_referrers"); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.IndexReferrer(ctx, "r", subject.Digest); ok || err != nil {
			t.Errorf("IndexReferrer of a manifest without subject: %v, %v", ok, err)
		}
		if ok, err := s.IndexReferrer(ctx, "r", sig.Digest); !ok || err != nil {
			t.Errorf("IndexReferrer: %v, %v", ok, err)
		}
		rebuilt, err := s.Referrers(ctx, "r", subject.Digest, "")
		if err != nil || len(rebuilt) != 1 || rebuilt[0].Digest != pushed[0].Digest || rebuilt[0].Size != pushed[0].Size ||
			rebuilt[0].ArtifactType != pushed[0].ArtifactType || rebuilt[0].Annotations["k"] != "v" {
			t.Errorf("rebuilt entry %+v, want %+v", rebuilt, pushed)
		}
		// Deleted while the entry is written (after IndexReferrer read the
		// manifest, and after the delete removed the entry): the entry
		// written is removed again.
		if err := d.Delete(ctx, "/docker/registry/v2/repositories/r/_referrers"); err != nil {
			t.Fatal(err)
		}
		racing := store.New(deleteOnWrite{Driver: d, match: "/_referrers/", once: new(sync.Once), do: func() {
			if err := s.DeleteManifest(ctx, "r", sig.Digest); err != nil {
				t.Error(err)
			}
		}}, store.Options{})
		if ok, err := racing.IndexReferrer(ctx, "r", sig.Digest); ok || err != nil {
			t.Errorf("IndexReferrer racing a delete: %v, %v", ok, err)
		}
		if refs, _ := s.Referrers(ctx, "r", subject.Digest, ""); len(refs) != 0 {
			t.Errorf("a manifest deleted while it was indexed is listed: %+v", refs)
		}
		if ok, err := s.IndexReferrer(ctx, "r", sig.Digest); ok || err != nil {
			t.Errorf("IndexReferrer of a deleted manifest: %v, %v", ok, err)
		}
		if refs, _ := s.Referrers(ctx, "r", subject.Digest, ""); len(refs) != 0 {
			t.Errorf("a deleted manifest is listed: %+v", refs)
		}
	})
}

// deleteOnWrite runs do before the first write to a path containing match
// goes ahead: a concurrent client acting at that moment.
type deleteOnWrite struct {
	storage.Driver
	match string
	do    func()
	once  *sync.Once
}

func (w deleteOnWrite) Writer(ctx context.Context, p string, append bool) (storage.FileWriter, error) {
	if strings.Contains(p, w.match) {
		w.once.Do(w.do)
	}
	return w.Driver.Writer(ctx, p, append)
}

// versionCounter forwards a driver's Versioner and counts the link reads
// and the stats.
type versionCounter struct {
	storage.Driver
	v            storage.Versioner
	reads, stats atomic.Int64
}

func (c *versionCounter) Stat(ctx context.Context, p string) (storage.FileInfo, error) {
	c.stats.Add(1)
	return c.Driver.Stat(ctx, p)
}

func (c *versionCounter) ReadVersion(ctx context.Context, p string) ([]byte, storage.Version, error) {
	c.reads.Add(1)
	return c.v.ReadVersion(ctx, p)
}

func (c *versionCounter) Version(ctx context.Context, p string) (storage.Version, error) {
	return c.v.Version(ctx, p)
}

// TestTagsSeenAcrossReplicas: two stores over one filesystem root (two
// replicas) resolve a tag; a tag moved or deleted through one is seen by the
// next resolve through the other, although the other checks a recently read
// tag by its link's version instead of reading the link again.
func TestTagsSeenAcrossReplicas(t *testing.T) {
	root := t.TempDir()
	newStore := func() (*store.Store, *versionCounter) {
		d, err := filesystem.New(root)
		if err != nil {
			t.Fatal(err)
		}
		c := &versionCounter{Driver: d, v: d}
		return store.New(c, store.Options{}), c
	}
	a, _ := newStore()
	b, counted := newStore()
	ctx := context.Background()
	cd, ld := pushBlob(t, a, "r", []byte("{}")), pushBlob(t, a, "r", []byte("layer"))
	put := func(extra string) digest.Digest {
		res, err := a.PutManifest(ctx, "r", []string{"v1"}, "", "", imageManifest(cd, ld, 2, 5, extra))
		if err != nil {
			t.Fatal(err)
		}
		return res.Digest
	}
	resolve := func(want digest.Digest) {
		t.Helper()
		got, err := b.ResolveTag(ctx, "r", "v1")
		if err != nil || got != want {
			t.Fatalf("ResolveTag through the other replica: %s, %v; want %s", got, err, want)
		}
	}
	first := put("")
	resolve(first)
	reads := counted.reads.Load()
	resolve(first)
	if n := counted.reads.Load(); n != reads {
		t.Errorf("an unchanged tag was read again (%d reads, then %d)", reads, n)
	}
	for i := range 5 {
		next := put(fmt.Sprintf(`,"annotations":{"n":"%d"}`, i))
		resolve(next)
		resolve(next)
	}
	if err := a.DeleteTag(ctx, "r", "v1"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ResolveTag(ctx, "r", "v1"); !errors.Is(err, store.ErrManifestUnknown) {
		t.Fatalf("ResolveTag after the tag was deleted through the other replica: %v", err)
	}
	last := put("")
	resolve(last)

	// GetManifestByTag looks for the manifest in the repository once per
	// read of the tag, and sees it deleted through the other replica.
	get := func() (digest.Digest, error) {
		m, err := b.GetManifestByTag(ctx, "r", "v1")
		return m.Digest, err
	}
	for range 3 {
		if got, err := get(); err != nil || got != last {
			t.Fatalf("GetManifestByTag: %s, %v; want %s", got, err, last)
		}
	}
	stats := counted.stats.Load()
	if got, err := get(); err != nil || got != last {
		t.Fatalf("GetManifestByTag: %s, %v; want %s", got, err, last)
	}
	if n := counted.stats.Load(); n != stats {
		t.Errorf("GetManifestByTag of a checked tag looked for its manifest again (%d stats)", n-stats)
	}
	if err := a.DeleteManifest(ctx, "r", last); err != nil {
		t.Fatal(err)
	}
	if _, err := get(); !errors.Is(err, store.ErrManifestUnknown) {
		t.Fatalf("GetManifestByTag after the manifest was deleted through the other replica: %v", err)
	}
}

// failingDriver's writers fail once the upload data they write reaches
// limit bytes (a full disk), while fail is set.
type failingDriver struct {
	storage.Driver
	limit int64
	fail  atomic.Bool
}

func (d *failingDriver) Writer(ctx context.Context, p string, appending bool) (storage.FileWriter, error) {
	w, err := d.Driver.Writer(ctx, p, appending)
	if err != nil || !d.fail.Load() || !strings.HasSuffix(p, "/data") {
		return w, err
	}
	return &failingWriter{FileWriter: w, limit: d.limit}, nil
}

type failingWriter struct {
	storage.FileWriter
	limit int64
}

func (w *failingWriter) Write(b []byte) (int, error) {
	if room := w.limit - w.Size(); int64(len(b)) > room {
		n, _ := w.FileWriter.Write(b[:max(room, 0)])
		return n, errors.New("disk full")
	}
	return w.FileWriter.Write(b)
}

// TestFailedWriteResumes: a chunk whose write fails midway keeps what was
// written, and the upload resumed from there verifies: the hash state saved
// covers exactly the bytes written, in a body of one buffer or of many.
func TestFailedWriteResumes(t *testing.T) {
	for _, limit := range []int64{30_000, 5<<20 + 12345} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			ctx := context.Background()
			d := &failingDriver{Driver: inmemory.New(), limit: limit}
			s := store.New(d, store.Options{})
			content := randomBytes(t, 8<<20)
			u, err := s.StartUpload(ctx, "r")
			if err != nil {
				t.Fatal(err)
			}
			d.fail.Store(true)
			u, err = s.AppendUpload(ctx, "r", u.ID, 0, bytes.NewReader(content))
			if err == nil || u.Size != limit {
				t.Fatalf("AppendUpload onto a full disk: size %d, %v; want %d and an error", u.Size, err, limit)
			}
			d.fail.Store(false)
			if _, err := s.FinishUpload(ctx, "r", u.ID, bytes.NewReader(content[limit:]), digest.FromBytes(content)); err != nil {
				t.Fatal(err)
			}
			if got := readBlob(t, s, "r", digest.FromBytes(content)); !bytes.Equal(got, content) {
				t.Fatal("the blob differs from what was pushed")
			}
		})
	}
}

// TestWholeBlobWritesNoUploadSession: a blob pushed whole (PutBlob, or a
// finish that carries all of it) goes straight to its place: no upload
// directory is left, pushing it again to another repository only links
// it, and its bytes read back.
func TestWholeBlobWritesNoUploadSession(t *testing.T) {
	drivers(t, func(t *testing.T, base storage.Driver) {
		ctx := context.Background()
		d := &writesSeen{Driver: base}
		s := store.New(d, store.Options{})
		content := randomBytes(t, 3<<20)
		want := digest.FromBytes(content)
		if _, err := s.PutBlob(ctx, "a", bytes.NewReader(content), want); err != nil {
			t.Fatal(err)
		}
		u, err := s.StartUpload(ctx, "b")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.FinishUpload(ctx, "b", u.ID, bytes.NewReader(content), want); err != nil {
			t.Fatal(err)
		}
		for _, p := range d.paths {
			if strings.Contains(p, "/_uploads/") && strings.HasSuffix(p, "/data") {
				t.Errorf("the blob's bytes went through an upload session: %s", p)
			}
		}
		for p := range snapshot(t, base) {
			if strings.Contains(p, "/_uploads") {
				t.Errorf("left behind: %s", p)
			}
		}
		for _, repo := range []string{"a", "b"} {
			r, _, err := s.OpenBlob(ctx, repo, want, 0)
			if err != nil {
				t.Fatalf("%s: %v", repo, err)
			}
			got, _ := io.ReadAll(r)
			r.Close()
			if !bytes.Equal(got, content) {
				t.Errorf("%s: the blob reads back %d bytes, not its content", repo, len(got))
			}
		}
	})
}

// TestStoredBlobOnlyLinked: a blob pushed again (to another repository,
// whole or as an upload's last request) when its bytes are stored is
// hashed, not written: no writer of the blob's path is opened and no
// upload data committed, only the layer link is written; a body that does
// not match is refused and links nothing; an upload's chunks are written
// without a sync; and bytes deleted by a collector while the body arrived
// fail the push with ErrStoredBlobCollected, linking nothing.
func TestStoredBlobOnlyLinked(t *testing.T) {
	drivers(t, func(t *testing.T, base storage.Driver) {
		ctx := context.Background()
		d := &writesSeen{Driver: base}
		s := store.New(d, store.Options{})
		content := randomBytes(t, 3<<20)
		want := digest.FromBytes(content)
		if _, err := s.PutBlob(ctx, "a", bytes.NewReader(content), want); err != nil {
			t.Fatal(err)
		}
		d.reset()
		if n, err := s.PutBlob(ctx, "b", bytes.NewReader(content), want); err != nil || n != int64(len(content)) {
			t.Fatalf("pushing stored bytes again: %d, %v", n, err)
		}
		if got := readBlob(t, s, "b", want); !bytes.Equal(got, content) {
			t.Errorf("b reads back %d bytes, not the content", len(got))
		}
		for _, p := range d.opened() {
			if strings.Contains(p, "/blobs/") {
				t.Errorf("stored bytes written again: %s", p)
			}
		}

		wrong := bytes.Clone(content)
		wrong[len(wrong)-1] ^= 1
		if _, err := s.PutBlob(ctx, "c", bytes.NewReader(wrong), want); !errors.Is(err, store.ErrDigestMismatch) {
			t.Errorf("a wrong body for stored bytes: %v, want ErrDigestMismatch", err)
		}
		if _, err := s.StatBlob(ctx, "c", want); !errors.Is(err, store.ErrBlobUnknown) {
			t.Errorf("a wrong body linked the blob into c: %v", err)
		}

		d.reset()
		u, err := s.StartUpload(ctx, "d")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.AppendUpload(ctx, "d", u.ID, 0, bytes.NewReader(content)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.FinishUpload(ctx, "d", u.ID, bytes.NewReader(nil), want); err != nil {
			t.Fatal(err)
		}
		if got := readBlob(t, s, "d", want); !bytes.Equal(got, content) {
			t.Errorf("d reads back %d bytes, not the content", len(got))
		}
		for _, w := range d.seen() {
			if strings.HasSuffix(w.path, "/data") && strings.Contains(w.path, "/_uploads/") {
				if !w.appending && !w.unsynced {
					t.Errorf("an upload's chunk was written to be synced: %s", w.path)
				}
				if w.committed {
					t.Errorf("the upload's data was committed though its bytes are stored: %s", w.path)
				}
			}
		}

		cut := &deletingReader{r: bytes.NewReader(content), fn: func() {
			hex := want.Encoded()
			if err := base.Delete(ctx, "/docker/registry/v2/blobs/sha256/"+hex[:2]+"/"+hex); err != nil {
				t.Error(err)
			}
		}}
		if _, err := s.PutBlob(ctx, "e", cut, want); !errors.Is(err, store.ErrStoredBlobCollected) {
			t.Errorf("stored bytes deleted during the push: %v, want ErrStoredBlobCollected", err)
		}
		if _, err := s.StatBlob(ctx, "e", want); !errors.Is(err, store.ErrBlobUnknown) {
			t.Errorf("bytes deleted during the push were linked into e: %v", err)
		}
		if _, err := s.PutBlob(ctx, "e", bytes.NewReader(content), want); err != nil {
			t.Fatalf("pushing again after the collection: %v", err)
		}
		if got := readBlob(t, s, "e", want); !bytes.Equal(got, content) {
			t.Errorf("e reads back %d bytes, not the content", len(got))
		}
	})
}

// deletingReader reads r and calls fn once, after its first read.
type deletingReader struct {
	r    io.Reader
	fn   func()
	done bool
}

func (d *deletingReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if !d.done {
		d.done = true
		d.fn()
	}
	return n, err
}

// writesSeen is a driver that records the writers it opens: their paths,
// whether they were to be synced, and whether they were committed.
type writesSeen struct {
	storage.Driver
	mu      sync.Mutex
	writers []*seenWriter
	paths   []string
}

// seenWriter is one writer writesSeen opened.
type seenWriter struct {
	storage.FileWriter
	path                string
	appending, unsynced bool
	committed           bool
}

func (w *seenWriter) Commit(ctx context.Context) error {
	w.committed = true
	return w.FileWriter.Commit(ctx)
}

func (d *writesSeen) Writer(ctx context.Context, p string, appending bool) (storage.FileWriter, error) {
	fw, err := d.Driver.Writer(ctx, p, appending)
	if err != nil {
		return nil, err
	}
	w := &seenWriter{FileWriter: fw, path: p, appending: appending, unsynced: storage.NoSync(ctx)}
	d.mu.Lock()
	d.paths = append(d.paths, p)
	d.writers = append(d.writers, w)
	d.mu.Unlock()
	return w, nil
}

func (d *writesSeen) reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.paths, d.writers = nil, nil
}

func (d *writesSeen) opened() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.paths...)
}

func (d *writesSeen) seen() []*seenWriter {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]*seenWriter(nil), d.writers...)
}

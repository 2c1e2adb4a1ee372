package s3

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/berth-registry/berth/internal/versitygw"
	"github.com/berth-registry/berth/storage"
	"github.com/berth-registry/berth/storage/inmemory"
	"github.com/berth-registry/berth/storage/storagetest"
)

// TestS3 runs the driver suite and the S3-specific tests against one
// versitygw, started once for all of them; each test uses its own prefix
// of the bucket.
func TestS3(t *testing.T) {
	srv := versitygw.Start(t, "berth-test")
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, *versitygw.Server)
	}{
		{"Suite", testSuite},
		{"TwoReplicas", testTwoReplicas},
		{"SmallAppends", testSmallAppends},
		{"Multipart", testMultipart},
		{"MoveMultipart", testMoveMultipart},
		{"AppendToCommitted", testAppendToCommitted},
		{"PrefixIsolation", testPrefixIsolation},
		{"Pagination", testPagination},
		{"WalkOrder", testWalkOrder},
		{"Redirect", testRedirect},
		{"AbortStaleUploads", testAbortStaleUploads},
		{"CancelAbortsUpload", testCancelAbortsUpload},
		{"Uncommitted", testUncommitted},
		{"Reserved", testReserved},
		{"New", testNew},
		{"DeleteFilesBatches", testDeleteFilesBatches},
		{"DeleteFilesKeyErrors", testDeleteFilesKeyErrors},
		{"FullBucket", testFullBucket},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, srv) })
	}
}

// newTestDriver returns a driver over a new random prefix of srv's bucket,
// and checks when the test ends that nothing is left under that prefix:
// no object (pending ones included) and no multipart upload.
func newTestDriver(t *testing.T, srv *versitygw.Server, change func(*Config)) *Driver {
	t.Helper()
	cfg := Config{
		Bucket: srv.Bucket, Endpoint: srv.Endpoint, PathStyle: true,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		Prefix: "test/" + strings.ToLower(rand.Text()[:12]),
	}
	if change != nil {
		change(&cfg)
	}
	d, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { checkBucketEmpty(t, d) })
	return d
}

// checkBucketEmpty fails t (unless it failed already) if anything is left
// under d's prefix, and removes it.
func checkBucketEmpty(t *testing.T, d *Driver) {
	ctx := context.Background()
	objects, uploads := bucketContents(t, d)
	if len(objects)+len(uploads) == 0 {
		return
	}
	if !t.Failed() {
		t.Errorf("left in the bucket: objects %q, multipart uploads of %q", objects, uploads)
	}
	for key, id := range uploads {
		_ = d.abort(ctx, key, id)
	}
	if len(objects) > 0 {
		if err := d.deleteKeys(ctx, objects); err != nil {
			t.Errorf("removing leftovers: %v", err)
		}
	}
}

// bucketContents returns the keys of the objects under d's prefix, and the
// multipart uploads there (key to upload id).
func bucketContents(t *testing.T, d *Driver) ([]string, map[string]string) {
	t.Helper()
	ctx := context.Background()
	var objects []string
	pages := s3.NewListObjectsV2Paginator(d.client, &s3.ListObjectsV2Input{Bucket: &d.bucket, Prefix: &d.base})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			t.Fatalf("listing the bucket: %v", err)
		}
		for _, o := range page.Contents {
			objects = append(objects, aws.ToString(o.Key))
		}
	}
	uploads := map[string]string{}
	ups := s3.NewListMultipartUploadsPaginator(d.client, &s3.ListMultipartUploadsInput{Bucket: &d.bucket, Prefix: &d.base})
	for ups.HasMorePages() {
		page, err := ups.NextPage(ctx)
		if err != nil {
			t.Fatalf("listing multipart uploads: %v", err)
		}
		for _, u := range page.Uploads {
			uploads[aws.ToString(u.Key)] = aws.ToString(u.UploadId)
		}
	}
	return objects, uploads
}

func testSuite(t *testing.T, srv *versitygw.Server) {
	storagetest.Run(t, func(t *testing.T) storage.Driver { return newTestDriver(t, srv, nil) })
}

// randomBytes returns n reproducible pseudo-random bytes.
func randomBytes(n int, seed uint64) []byte {
	r := mrand.New(mrand.NewPCG(seed, ^seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func mustWriter(t *testing.T, d storage.Driver, p string, appending bool) storage.FileWriter {
	t.Helper()
	w, err := d.Writer(t.Context(), p, appending)
	if err != nil {
		t.Fatalf("Writer(%q, %v): %v", p, appending, err)
	}
	return w
}

// writeChunks writes data to w in chunks of the given size.
func writeChunks(t *testing.T, w storage.FileWriter, data []byte, chunk int) {
	t.Helper()
	for c := range slices.Chunk(data, chunk) {
		if n, err := w.Write(c); err != nil || n != len(c) {
			t.Fatalf("Write of %d bytes = %d, %v", len(c), n, err)
		}
	}
}

func wantContent(t *testing.T, d storage.Driver, p string, want []byte) {
	t.Helper()
	got, err := storage.ReadAll(t.Context(), d, p)
	if err != nil {
		t.Fatalf("reading %s: %v", p, err)
	}
	if !bytes.Equal(got, want) {
		i := 0
		for i < min(len(got), len(want)) && got[i] == want[i] {
			i++
		}
		t.Fatalf("content of %s: %d bytes, want %d; first difference at byte %d", p, len(got), len(want), i)
	}
}

func wantSize(t *testing.T, d storage.Driver, p string, size int64) {
	t.Helper()
	if fi, err := d.Stat(t.Context(), p); err != nil || fi.Size != size || fi.IsDir {
		t.Fatalf("Stat(%q) = %+v, %v; want a file of %d bytes", p, fi, err, size)
	}
}

func mustDelete(t *testing.T, d storage.Driver, p string) {
	t.Helper()
	if err := d.Delete(t.Context(), p); err != nil {
		t.Fatalf("Delete(%q): %v", p, err)
	}
}

// testTwoReplicas has two drivers over the same prefix, as two Berth
// replicas: an upload begun on one is resumed and finished on the other,
// with parts and tails crossing between them.
func testTwoReplicas(t *testing.T, srv *versitygw.Server) {
	ctx := t.Context()
	a := newTestDriver(t, srv, nil)
	b, err := New(ctx, Config{
		Bucket: srv.Bucket, Endpoint: srv.Endpoint, PathStyle: true,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Prefix: strings.TrimSuffix(a.base, "/"),
	})
	if err != nil {
		t.Fatal(err)
	}
	const p = "/docker/registry/v2/repositories/r/_uploads/u/data"
	data := randomBytes(23<<20+4321, 1)
	cuts := []int{9<<20 + 7, 10 << 20, 19<<20 + 3, len(data)} // a part and a tail, a tail only, ...
	pos := 0
	for i, cut := range cuts {
		d := []*Driver{a, b}[i%2]
		w := mustWriter(t, d, p, i > 0)
		if w.Size() != int64(pos) {
			t.Fatalf("writer %d: Size() = %d, want %d", i, w.Size(), pos)
		}
		writeChunks(t, w, data[pos:cut], 1<<20+13)
		pos = cut
		if i == len(cuts)-1 {
			if err := w.Commit(ctx); err != nil {
				t.Fatalf("Commit: %v", err)
			}
			break
		}
		if err := w.Close(); err != nil {
			t.Fatalf("writer %d: Close: %v", i, err)
		}
		// The other replica sees the offset.
		wantSize(t, []*Driver{a, b}[(i+1)%2], p, int64(pos))
	}
	wantContent(t, b, p, data)
	wantContent(t, a, p, data)
	mustDelete(t, a, "/docker")
}

// testSmallAppends appends chunks far under the part minimum many times,
// each by a new writer after a Close, so that the tail crosses into parts.
func testSmallAppends(t *testing.T, srv *versitygw.Server) {
	ctx := t.Context()
	d := newTestDriver(t, srv, func(c *Config) {})
	d.partSize = minPartSize
	const p = "/uploads/u/data"
	data := randomBytes(11<<20+99, 2)
	r := mrand.New(mrand.NewPCG(3, 4))
	pos, i := 0, 0
	for pos < len(data) {
		n := min(len(data)-pos, 100<<10+r.IntN(300<<10))
		w := mustWriter(t, d, p, i > 0)
		if w.Size() != int64(pos) {
			t.Fatalf("writer %d: Size() = %d, want %d", i, w.Size(), pos)
		}
		writeChunks(t, w, data[pos:pos+n], 64<<10)
		pos += n
		end := w.Close
		if pos == len(data) {
			end = func() error { return w.Commit(ctx) }
		}
		if err := end(); err != nil {
			t.Fatalf("writer %d: %v", i, err)
		}
		wantSize(t, d, p, int64(pos))
		i++
	}
	t.Logf("%d writers", i)
	wantContent(t, d, p, data)
	mustDelete(t, d, "/uploads")
}

// testMultipart writes more than a part in one writer, in odd writes.
func testMultipart(t *testing.T, srv *versitygw.Server) {
	ctx := t.Context()
	d := newTestDriver(t, srv, nil)
	const p = "/blobs/big"
	data := randomBytes(2*defaultPartSize+5<<20+1, 5)
	w := mustWriter(t, d, p, false)
	writeChunks(t, w, data, 777_777)
	if len(w.(*writer).parts) != 2 {
		t.Errorf("%d parts uploaded before Commit, want 2", len(w.(*writer).parts))
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	wantSize(t, d, p, int64(len(data)))
	wantContent(t, d, p, data)
	r, err := d.Reader(ctx, p, int64(len(data))-10)
	if err != nil {
		t.Fatal(err)
	}
	if tail, err := io.ReadAll(r); err != nil || !bytes.Equal(tail, data[len(data)-10:]) {
		t.Errorf("read from 10 bytes before the end: %q, %v", tail, err)
	}
	r.Close()
	mustDelete(t, d, p)
}

// testMoveMultipart moves an object bigger than the copy threshold, made
// small here, so that it is copied in parts with UploadPartCopy.
func testMoveMultipart(t *testing.T, srv *versitygw.Server) {
	ctx := t.Context()
	d := newTestDriver(t, srv, nil)
	d.copyThreshold, d.copyPartSize = 6<<20, minPartSize
	data := randomBytes(17<<20+5, 6)
	w := mustWriter(t, d, "/src/data", false)
	writeChunks(t, w, data, 1<<20)
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.Move(ctx, "/src/data", "/dst/data"); err != nil {
		t.Fatalf("Move: %v", err)
	}
	wantContent(t, d, "/dst/data", data)
	if _, err := d.Stat(ctx, "/src"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Stat of the source after Move: %v, want ErrNotFound", err)
	}
	mustDelete(t, d, "/dst")
}

// testAppendToCommitted continues committed content with an append
// writer: a small one is read back, a big one copied into parts on the
// server (with a remainder under the part minimum folded into the last
// copied part).
func testAppendToCommitted(t *testing.T, srv *versitygw.Server) {
	ctx := t.Context()
	d := newTestDriver(t, srv, nil)
	d.copyPartSize = minPartSize
	for _, size := range []int{1000, 11 << 20} {
		p := fmt.Sprintf("/committed/%d", size)
		data := randomBytes(size+3<<20, uint64(size))
		if err := storage.WriteAll(ctx, d, p, data[:size]); err != nil {
			t.Fatal(err)
		}
		w := mustWriter(t, d, p, true)
		if w.Size() != int64(size) {
			t.Fatalf("append writer Size() = %d, want %d", w.Size(), size)
		}
		writeChunks(t, w, data[size:size+1<<20], 1<<20)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		wantSize(t, d, p, int64(size+1<<20))
		w = mustWriter(t, d, p, true)
		writeChunks(t, w, data[size+1<<20:], 1<<20)
		if err := w.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		wantContent(t, d, p, data)
	}
	mustDelete(t, d, "/committed")
}

// testPrefixIsolation checks that drivers whose prefixes are siblings
// ("x/a", "x/ab") never see or touch each other's content, and that the
// prefix is normalised.
func testPrefixIsolation(t *testing.T, srv *versitygw.Server) {
	ctx := t.Context()
	root := "test/" + strings.ToLower(rand.Text()[:12])
	a := newTestDriver(t, srv, func(c *Config) { c.Prefix = "/" + root + "//a/" })
	ab := newTestDriver(t, srv, func(c *Config) { c.Prefix = root + "/ab" })
	if a.base != root+"/a/" {
		t.Errorf("prefix %q normalised to %q", "/"+root+"//a/", a.base)
	}
	for _, d := range []*Driver{a, ab} {
		if err := storage.WriteAll(ctx, d, "/f", []byte(d.base)); err != nil {
			t.Fatal(err)
		}
		w := mustWriter(t, d, "/closed", false)
		writeChunks(t, w, []byte("closed"), 10)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := a.List(ctx, "/"); err != nil || !slices.Equal(got, []string{"/closed", "/f"}) {
		t.Errorf(`List("/") = %q, %v`, got, err)
	}
	mustDelete(t, a, "/f")
	mustDelete(t, a, "/closed")
	if got, err := a.List(ctx, "/"); err != nil || len(got) != 0 {
		t.Errorf(`List("/") after deleting everything = %q, %v`, got, err)
	}
	wantContent(t, ab, "/f", []byte(ab.base))
	wantSize(t, ab, "/closed", 6)
	mustDelete(t, ab, "/f")
	mustDelete(t, ab, "/closed")
}

// testPagination lists, walks and deletes a directory of more than 1000
// keys, with the default page size and a small one.
func testPagination(t *testing.T, srv *versitygw.Server) {
	ctx := t.Context()
	d := newTestDriver(t, srv, nil)
	const n = 1003
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("/many/%04d", i))
	}
	// Written straight to the bucket, many at once: the driver would do
	// the same PutObject.
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 32)
	for _, p := range want {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := storage.WriteAll(ctx, d, p, []byte(p)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	w := mustWriter(t, d, "/many/closed", false)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want = append(want, "/many/closed")
	for _, pageSize := range []int32{defaultPageSize, 97} {
		d.pageSize = pageSize
		if got, err := d.List(ctx, "/many"); err != nil || !slices.Equal(got, want) {
			t.Errorf("page size %d: List = %d paths, %v; want %d", pageSize, len(got), err, len(want))
		}
		var walked []string
		err := d.Walk(ctx, "/", func(fi storage.FileInfo) error {
			walked = append(walked, fi.Path)
			return nil
		})
		if wantWalk := append([]string{"/many"}, want...); err != nil || !slices.Equal(walked, wantWalk) {
			t.Errorf("page size %d: Walk visited %d paths, %v; want %d", pageSize, len(walked), err, len(wantWalk))
		}
	}
	d.pageSize = defaultPageSize
	mustDelete(t, d, "/many")
	if got, err := d.List(ctx, "/"); err != nil || len(got) != 0 {
		t.Errorf(`List("/") after Delete = %q, %v`, got, err)
	}
}

// testWalkOrder compares Walk with the in-memory driver's over a tree full
// of names that list in another order than they walk, across page
// boundaries, with and without SkipDir.
func testWalkOrder(t *testing.T, srv *versitygw.Server) {
	ctx := t.Context()
	d := newTestDriver(t, srv, nil)
	d.pageSize = 3
	ref := inmemory.New()
	files := []string{
		"/a!", "/a-b/x", "/a.b", "/a/b-c/d", "/a/b/e", "/a/b.c", "/a/b/f-g/h", "/a/b/f/i", "/a/b/f.j",
		"/x.y/a-b/1", "/x.y/a/2", "/x/a-b/3", "/x/a/4+", "/x/a/4-5/6", "/x/a/4.7", "/x/a/4/8", "/z z/ /!",
		"/docker/registry/v2/repositories/lib/a-b/_manifests/tags/v1.0/current/link",
		"/docker/registry/v2/repositories/lib/a/_manifests/tags/v1/current/link",
		"/docker/registry/v2/repositories/lib/a/_manifests/tags/v1.0/current/link",
	}
	closed := []string{"/a/b/f-g/closed", "/x/a/4-5/closed", "/w/c-d", "/w/c/e"}
	for _, p := range files {
		for _, drv := range []storage.Driver{d, ref} {
			if err := storage.WriteAll(ctx, drv, p, []byte(p)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, p := range closed {
		for _, drv := range []storage.Driver{d, ref} {
			w := mustWriter(t, drv, p, false)
			writeChunks(t, w, []byte(p), 100)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	walk := func(drv storage.Driver, root string, skip map[string]bool) ([]string, error) {
		var got []string
		err := drv.Walk(ctx, root, func(fi storage.FileInfo) error {
			got = append(got, fmt.Sprintf("%s %v %d", fi.Path, fi.IsDir, fi.Size))
			if skip[fi.Path] {
				return storage.SkipDir
			}
			return nil
		})
		return got, err
	}
	for _, tc := range []struct {
		root string
		skip []string
	}{
		{"/", nil},
		{"/a", nil},
		{"/x", nil},
		{"/", []string{"/a/b", "/x.y/a-b/1", "/docker/registry/v2/repositories/lib/a"}},
		{"/", []string{"/a", "/x/a/4-5"}},
		{"/a", []string{"/a/b-c/d"}},
	} {
		skip := map[string]bool{}
		for _, p := range tc.skip {
			skip[p] = true
		}
		want, err := walk(ref, tc.root, skip)
		if err != nil {
			t.Fatal(err)
		}
		got, err := walk(d, tc.root, skip)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("Walk(%q) skipping %q visited\n\t%q, %v\nwant\n\t%q", tc.root, tc.skip, got, err, want)
		}
	}
	for _, p := range []string{"/a", "/a!", "/a-b", "/a.b", "/docker", "/w", "/x", "/x.y", "/z z"} {
		mustDelete(t, d, p)
	}

	// Random trees of names that list out of walk order.
	names := []string{"a", "a-", "a.", "a!", "a0", "a-b", "a.b", "ab", "b", "-", "..."}
	r := mrand.New(mrand.NewPCG(1, 2))
	for trial := range 5 {
		ref := inmemory.New()
		var files []string
	add:
		for range 40 {
			p := ""
			for range 1 + r.IntN(3) {
				p += "/" + names[r.IntN(len(names))]
			}
			for _, f := range files { // a file cannot also be a directory
				if f == p || strings.HasPrefix(p, f+"/") || strings.HasPrefix(f, p+"/") {
					continue add
				}
			}
			files = append(files, p)
			closed := r.IntN(4) == 0
			for _, drv := range []storage.Driver{d, ref} {
				w := mustWriter(t, drv, "/t"+p, false)
				writeChunks(t, w, []byte(p), 100)
				end := func() error { return w.Commit(ctx) }
				if closed {
					end = w.Close
				}
				if err := end(); err != nil {
					t.Fatal(err)
				}
			}
		}
		skip := map[string]bool{}
		for _, f := range files {
			if r.IntN(5) == 0 {
				skip["/t"+f] = true // a file: skips the rest of its directory
			}
			if i := strings.LastIndexByte(f, '/'); i > 0 && r.IntN(5) == 0 {
				skip["/t"+f[:i]] = true
			}
		}
		for _, s := range []map[string]bool{nil, skip} {
			want, err := walk(ref, "/", s)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := walk(d, "/", s); err != nil || !slices.Equal(got, want) {
				t.Errorf("trial %d: Walk of %q skipping %v visited\n\t%q, %v\nwant\n\t%q", trial, files, s, got, err, want)
			}
		}
		mustDelete(t, d, "/t")
	}
}

// testRedirect fetches presigned URLs with a plain HTTP client.
func testRedirect(t *testing.T, srv *versitygw.Server) {
	ctx := t.Context()
	d := newTestDriver(t, srv, func(c *Config) { c.Redirect = true; c.PresignExpiry = time.Minute })
	const p = "/blobs/sha256/ab/abcd/data"
	data := randomBytes(300_000, 7)
	if err := storage.WriteAll(ctx, d, p, data); err != nil {
		t.Fatal(err)
	}
	var r storage.Redirector = d
	url, err := r.RedirectURL(ctx, http.MethodGet, p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(url, "X-Amz-Expires=60") {
		t.Errorf("presigned URL %s does not expire in 60 s", url)
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
		t.Errorf("GET of the presigned URL: %s, %d bytes, %v; want 200 and the %d bytes", resp.Status, len(body), err, len(data))
	}
	url, err = r.RedirectURL(ctx, http.MethodHead, p)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = http.Head(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ContentLength != int64(len(data)) {
		t.Errorf("HEAD of the presigned URL: %s, length %d; want 200 and %d", resp.Status, resp.ContentLength, len(data))
	}
	if _, err := r.RedirectURL(ctx, http.MethodPut, p); !errors.Is(err, storage.ErrUnsupported) {
		t.Errorf("RedirectURL(PUT) = %v, want ErrUnsupported", err)
	}
	off := newTestDriver(t, srv, nil)
	if _, err := off.RedirectURL(ctx, http.MethodGet, p); !errors.Is(err, storage.ErrUnsupported) {
		t.Errorf("RedirectURL with redirects off = %v, want ErrUnsupported", err)
	}
	mustDelete(t, d, "/blobs")
}

// testAbortStaleUploads leaves closed content (with and without parts) and
// a writer that never ended, then removes them as stale.
func testAbortStaleUploads(t *testing.T, srv *versitygw.Server) {
	ctx := t.Context()
	d := newTestDriver(t, srv, nil)
	d.partSize = minPartSize
	for _, size := range []int{100, 6 << 20} { // a tail only; a part
		w := mustWriter(t, d, "/closed/"+strconv.Itoa(size), false)
		writeChunks(t, w, randomBytes(size, 8), 1<<20)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	w := mustWriter(t, d, "/abandoned", false) // crashed: never ended
	writeChunks(t, w, randomBytes(6<<20, 9), 1<<20)
	if err := storage.WriteAll(ctx, d, "/kept", []byte("committed")); err != nil {
		t.Fatal(err)
	}
	if objects, uploads := bucketContents(t, d); len(objects) != 3 || len(uploads) != 2 {
		t.Fatalf("before: objects %q, uploads %q; want 3 objects and 2 uploads", objects, uploads)
	}

	if n, err := d.AbortStaleUploads(ctx, time.Hour); err != nil || n != 0 {
		t.Errorf("AbortStaleUploads(1h) = %d, %v; want nothing removed", n, err)
	}
	wantSize(t, d, "/closed/100", 100)
	if n, err := d.AbortStaleUploads(ctx, -time.Minute); err != nil || n != 3 {
		t.Errorf("AbortStaleUploads(everything) = %d, %v; want 3 removed", n, err)
	}
	if objects, uploads := bucketContents(t, d); len(objects) != 1 || len(uploads) != 0 {
		t.Errorf("after: objects %q, uploads %q; want only the committed object", objects, uploads)
	}
	if err := w.Commit(ctx); err == nil {
		t.Errorf("Commit of a writer whose upload was aborted succeeded")
	}
	wantContent(t, d, "/kept", []byte("committed"))
	mustDelete(t, d, "/kept")
}

// testCancelAbortsUpload checks that ending a writer with parts in any way
// but Close leaves no multipart upload behind.
func testCancelAbortsUpload(t *testing.T, srv *versitygw.Server) {
	ctx := t.Context()
	d := newTestDriver(t, srv, nil)
	d.partSize = minPartSize
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	for name, end := range map[string]func(storage.FileWriter) error{
		"Cancel":               func(w storage.FileWriter) error { return w.Cancel(ctx) },
		"Cancel with ctx done": func(w storage.FileWriter) error { return w.Cancel(cancelled) },
		"Commit with ctx done": func(w storage.FileWriter) error { return w.Commit(cancelled) },
	} {
		w := mustWriter(t, d, "/f", false)
		writeChunks(t, w, randomBytes(11<<20, 10), 1<<20)
		if err := end(w); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("%s: %v", name, err)
		}
		if objects, uploads := bucketContents(t, d); len(objects)+len(uploads) != 0 {
			t.Errorf("%s left objects %q, uploads %q", name, objects, uploads)
		}
	}
	// An append writer's Cancel takes the parts it continued away too.
	w := mustWriter(t, d, "/f", false)
	writeChunks(t, w, randomBytes(11<<20, 11), 1<<20)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w = mustWriter(t, d, "/f", true)
	writeChunks(t, w, randomBytes(6<<20, 12), 1<<20)
	if err := w.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	if objects, uploads := bucketContents(t, d); len(objects)+len(uploads) != 0 {
		t.Errorf("append writer's Cancel left objects %q, uploads %q", objects, uploads)
	}
}

// testUncommitted reads and moves content left by Close, which commits it
// first (with and without parts), and checks that an append writer then
// continues it; and that a committed object hides a pending one until
// Delete removes both.
func testUncommitted(t *testing.T, srv *versitygw.Server) {
	ctx := t.Context()
	d := newTestDriver(t, srv, nil)
	d.partSize, d.copyPartSize = minPartSize, minPartSize
	for _, size := range []int{11, 7<<20 + 3} {
		p := fmt.Sprintf("/u%d/data", size)
		data := randomBytes(size+100, uint64(size))
		w := mustWriter(t, d, p, false)
		writeChunks(t, w, data[:size], 1<<20)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		wantContent(t, d, p, data[:size]) // commits
		if objects, _ := bucketContents(t, d); slices.ContainsFunc(objects, func(k string) bool { return strings.Contains(k, pendingDir) }) {
			t.Errorf("pending object left after reading: %q", objects)
		}
		w = mustWriter(t, d, p, true)
		if w.Size() != int64(size) {
			t.Fatalf("append writer after a read: Size() = %d, want %d", w.Size(), size)
		}
		writeChunks(t, w, data[size:size+50], 1<<20)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		wantSize(t, d, p, int64(size+50))
		if err := d.Move(ctx, p, p+"-moved"); err != nil {
			t.Fatalf("Move of content left by Close: %v", err)
		}
		w = mustWriter(t, d, p+"-moved", true)
		writeChunks(t, w, data[size+50:], 1<<20)
		if err := w.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		wantContent(t, d, p+"-moved", data)
		mustDelete(t, d, path.Dir(p))
	}

	// A non-append Commit hides content left by Close; Delete removes both.
	w := mustWriter(t, d, "/h/data", false)
	writeChunks(t, w, []byte("closed"), 100)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := storage.WriteAll(ctx, d, "/h/data", []byte("committed")); err != nil {
		t.Fatal(err)
	}
	wantSize(t, d, "/h/data", int64(len("committed")))
	w = mustWriter(t, d, "/h/data", true)
	if w.Size() != int64(len("committed")) {
		t.Errorf("append writer continues %d bytes, want the committed content's %d", w.Size(), len("committed"))
	}
	w.Cancel(ctx)
	if err := storage.WriteAll(ctx, d, "/h/data", []byte("committed")); err != nil {
		t.Fatal(err)
	}
	mustDelete(t, d, "/h/data")
	if _, err := d.Stat(ctx, "/h/data"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Stat after Delete: %v, want ErrNotFound", err)
	}
}

// testReserved checks that the driver's own objects cannot be named.
func testReserved(t *testing.T, srv *versitygw.Server) {
	ctx := t.Context()
	d := newTestDriver(t, srv, nil)
	for _, p := range []string{"/_berth", "/_berth/pending/x"} {
		if _, err := d.Stat(ctx, p); !errors.Is(err, storage.ErrInvalidPath) {
			t.Errorf("Stat(%q) = %v, want ErrInvalidPath", p, err)
		}
		if err := storage.WriteAll(ctx, d, p, nil); !errors.Is(err, storage.ErrInvalidPath) {
			t.Errorf("WriteAll(%q) = %v, want ErrInvalidPath", p, err)
		}
		if err := d.Delete(ctx, p); !errors.Is(err, storage.ErrInvalidPath) {
			t.Errorf("Delete(%q) = %v, want ErrInvalidPath", p, err)
		}
	}
	if err := storage.WriteAll(ctx, d, "/_berthx/f", []byte("x")); err != nil {
		t.Errorf("WriteAll(/_berthx/f): %v", err)
	}
	mustDelete(t, d, "/_berthx")
}

// testNew checks that New fails clearly when the bucket cannot be used.
func testNew(t *testing.T, srv *versitygw.Server) {
	ctx := t.Context()
	good := Config{
		Bucket: srv.Bucket, Endpoint: srv.Endpoint, PathStyle: true,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
	}
	for name, tc := range map[string]struct {
		change func(*Config)
		want   string
	}{
		"no bucket":      {func(c *Config) { c.Bucket = "" }, "no bucket"},
		"missing bucket": {func(c *Config) { c.Bucket = "no-such-bucket" }, `bucket "no-such-bucket"`},
		"bad secret":     {func(c *Config) { c.SecretKey = "wrong" }, "not reachable"},
		"half a key":     {func(c *Config) { c.SecretKey = "" }, "both"},
	} {
		cfg := good
		tc.change(&cfg)
		if _, err := New(ctx, cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New = %v, want an error saying %q", name, err, tc.want)
		}
	}
}

// BenchmarkDriver runs the shared driver benchmarks against versitygw.
func BenchmarkDriver(b *testing.B) {
	srv := versitygw.Start(b, "berth-bench")
	storagetest.Bench(b, func(b *testing.B) storage.Driver {
		d, err := New(b.Context(), Config{
			Bucket: srv.Bucket, Endpoint: srv.Endpoint, PathStyle: true,
			AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
			Prefix: "bench/" + strings.ToLower(rand.Text()[:12]),
		})
		if err != nil {
			b.Fatal(err)
		}
		return d
	})
}

// TestDirectoryRaceRetried: the 409 a filesystem-backed store answers for
// a write racing the removal of its directory is retried; other errors are
// left to the standard retryer.
func TestDirectoryRaceRetried(t *testing.T) {
	wrapped := fmt.Errorf("putting: %w", &smithy.GenericAPIError{Code: "ExistingObjectIsDirectory"})
	if got := directoryRace(wrapped); got != aws.TrueTernary {
		t.Errorf("ExistingObjectIsDirectory: %v, want retry", got)
	}
	for _, err := range []error{&smithy.GenericAPIError{Code: "AccessDenied"}, errors.New("plain")} {
		if got := directoryRace(err); got != aws.UnknownTernary {
			t.Errorf("%v: %v, want no opinion", err, got)
		}
	}
}

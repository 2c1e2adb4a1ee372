package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/storage"
)

// Run runs the driver test suite, one subtest per part of the
// storage.Driver contract. A backend is done when it passes.
//
// newDriver is called once per subtest and must return a driver with nothing
// stored; it may return a driver over the same storage every time (one S3
// bucket prefix, say), because every subtest deletes what it stored. After
// each subtest Run fails the test if anything is left under "/" (a Delete or
// Cancel that leaks, a directory that outlives its content) and removes it, so
// that the next subtest starts empty. Subtests run one at a time.
func Run(t *testing.T, newDriver func(t *testing.T) storage.Driver) {
	for _, tc := range suite {
		t.Run(tc.name, func(t *testing.T) {
			d := newDriver(t)
			if left := leftovers(t, d); len(left) > 0 {
				t.Fatalf("newDriver returned a driver that is not empty: %s", summary(left))
			}
			// Registered after newDriver's cleanups, so it runs before them.
			t.Cleanup(func() { checkEmpty(t, d) })
			tc.fn(t, d)
		})
	}
}

var suite = []struct {
	name string
	fn   func(t *testing.T, d storage.Driver)
}{
	{"RoundTrip", testRoundTrip},
	{"ReaderOffsets", testReaderOffsets},
	{"ReaderMissing", testReaderMissing},
	{"ReadAll", testReadAll},
	{"WriterSize", testWriterSize},
	{"WriterReplaces", testWriterReplaces},
	{"AppendAfterClose", testAppendAfterClose},
	{"AppendMissing", testAppendMissing},
	{"ClosedContent", testClosedContent},
	{"Cancel", testCancel},
	{"CommitAtomic", testCommitAtomic},
	{"WriterClosed", testWriterClosed},
	{"Stat", testStat},
	{"ImplicitDirectories", testImplicitDirectories},
	{"List", testList},
	{"EmptyRoot", testEmptyRoot},
	{"Walk", testWalk},
	{"Move", testMove},
	{"Delete", testDelete},
	{"DeleteSiblingPrefixes", testDeleteSiblingPrefixes},
	{"DeleteFiles", testDeleteFiles},
	{"DeleteFilesSiblings", testDeleteFilesSiblings},
	{"DeleteFilesInvalid", testDeleteFilesInvalid},
	{"DeleteFilesClosedContent", testDeleteFilesClosedContent},
	{"DeleteFilesCancelled", testDeleteFilesCancelled},
	{"InvalidPaths", testInvalidPaths},
	{"CancelledContext", testCancelledContext},
	{"ConcurrentWriters", testConcurrentWriters},
	{"ConcurrentReplace", testConcurrentReplace},
	{"LargeOddChunks", testLargeOddChunks},
	{"BinaryContent", testBinaryContent},
	{"UnusualNames", testUnusualNames},
	{"CreateExclusive", testCreateExclusive},
}

// testCreateExclusive: where a driver has storage.ExclusiveCreator, of
// eight callers creating one path at once exactly one succeeds and the
// others get ErrExists; the content is the winner's, readable at once; a
// path holding a file (written by a Writer) is not replaced. Drivers
// without the ability skip nothing: the test passes trivially for them,
// and the store falls back to another protocol.
func testCreateExclusive(t *testing.T, d storage.Driver) {
	ec, ok := d.(storage.ExclusiveCreator)
	if !ok {
		t.Logf("%T has no CreateExclusive", d)
		return
	}
	ctx := t.Context()
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = ec.CreateExclusive(ctx, "/claims/x/one", []byte{byte('a' + i)}) })
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("callers %d and %d both created the path", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, storage.ErrExists):
			t.Fatalf("caller %d: %v, want nil or ErrExists", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no caller created the path")
	}
	got := read(t, d, "/claims/x/one", 0)
	if string(got) != string([]byte{byte('a' + winner)}) {
		t.Errorf("content %q, want the winner's %q", got, []byte{byte('a' + winner)})
	}
	write(t, d, "/claims/x/two", []byte("written"))
	if err := ec.CreateExclusive(ctx, "/claims/x/two", []byte("other")); !errors.Is(err, storage.ErrExists) {
		t.Errorf("CreateExclusive over a written file: %v, want ErrExists", err)
	}
	if got := read(t, d, "/claims/x/two", 0); string(got) != "written" {
		t.Errorf("content %q after a refused CreateExclusive, want %q", got, "written")
	}
	for _, p := range []string{"/claims/x/one", "/claims/x/two"} {
		if err := d.Delete(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := ec.CreateExclusive(ctx, "/claims/x/one", []byte("again")); err != nil {
		t.Errorf("CreateExclusive after Delete: %v", err)
	}
	if err := d.Delete(ctx, "/claims"); err != nil {
		t.Fatal(err)
	}
}

// leftovers returns the paths of everything stored in d.
func leftovers(t *testing.T, d storage.Driver) []string {
	t.Helper()
	var left []string
	err := d.Walk(context.Background(), "/", func(fi storage.FileInfo) error {
		left = append(left, fi.Path)
		return nil
	})
	if err != nil {
		t.Errorf(`Walk("/") looking for leftovers: %v`, err)
	}
	return left
}

// checkEmpty fails t if d still stores anything, and deletes it. A subtest
// that already failed may have stopped before its own clean-up, so then the
// leftovers are only logged.
func checkEmpty(t *testing.T, d storage.Driver) {
	left := leftovers(t, d)
	if len(left) == 0 {
		return
	}
	if t.Failed() {
		t.Logf("removing what the failed subtest left: %s", summary(left))
	} else {
		t.Errorf("subtest left content behind: %s", summary(left))
	}
	top, err := d.List(context.Background(), "/")
	if err != nil {
		t.Errorf(`List("/") removing leftovers: %v`, err)
	}
	for _, p := range top {
		if err := d.Delete(context.Background(), p); err != nil {
			t.Errorf("Delete(%q) removing leftovers: %v", p, err)
		}
	}
}

func summary(paths []string) string {
	const limit = 10
	if len(paths) > limit {
		return fmt.Sprintf("%q and %d more", paths[:limit], len(paths)-limit)
	}
	return fmt.Sprintf("%q", paths)
}

// write stores data at p with one writer and commits it.
func write(t *testing.T, d storage.Driver, p string, data []byte) {
	t.Helper()
	if err := storage.WriteAll(t.Context(), d, p, data); err != nil {
		t.Fatalf("writing %s: %v", p, err)
	}
}

// read returns the content at p from offset.
func read(t *testing.T, d storage.Driver, p string, offset int64) []byte {
	t.Helper()
	r, err := d.Reader(t.Context(), p, offset)
	if err != nil {
		t.Fatalf("Reader(%q, %d): %v", p, offset, err)
	}
	return readClose(t, r, p)
}

func readClose(t *testing.T, r io.ReadCloser, p string) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Errorf("reading %s: %v", p, err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("closing reader of %s: %v", p, err)
	}
	return b
}

// wantContent fails t unless the content at p is want.
func wantContent(t *testing.T, d storage.Driver, p string, want []byte) {
	t.Helper()
	if got := read(t, d, p, 0); !bytes.Equal(got, want) {
		t.Errorf("content of %s: %s, want %s", p, show(got), show(want))
	}
}

// show describes content b briefly.
func show(b []byte) string {
	if len(b) <= 64 {
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("%d bytes starting %q", len(b), b[:32])
}

// wantErr fails t unless errors.Is(err, target).
func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: error %v, want one wrapping %v", what, err, target)
	}
}

// wantMissing fails t unless nothing is at p.
func wantMissing(t *testing.T, d storage.Driver, p string) {
	t.Helper()
	fi, err := d.Stat(t.Context(), p)
	if !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Stat(%q) = %+v, %v; want ErrNotFound", p, fi, err)
	}
}

// remove deletes each path, which must exist.
func remove(t *testing.T, d storage.Driver, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if err := d.Delete(context.Background(), p); err != nil {
			t.Errorf("Delete(%q): %v", p, err)
		}
	}
}

func newWriter(t *testing.T, d storage.Driver, p string, appending bool) storage.FileWriter {
	t.Helper()
	w, err := d.Writer(t.Context(), p, appending)
	if err != nil {
		t.Fatalf("Writer(%q, %v): %v", p, appending, err)
	}
	return w
}

func mustWrite(t *testing.T, w storage.FileWriter, b []byte) {
	t.Helper()
	if n, err := w.Write(b); err != nil || n != len(b) {
		t.Fatalf("Write of %d bytes = %d, %v", len(b), n, err)
	}
}

// randomBytes returns n reproducible pseudo-random bytes.
func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func testRoundTrip(t *testing.T, d storage.Driver) {
	for i, data := range [][]byte{nil, {0}, []byte("hello, berth"), randomBytes(100_000, 1)} {
		p := fmt.Sprintf("/roundtrip/%d", i)
		write(t, d, p, data)
		fi, err := d.Stat(t.Context(), p)
		if err != nil {
			t.Fatalf("Stat(%q): %v", p, err)
		}
		if fi.Size != int64(len(data)) || fi.IsDir || fi.Path != p {
			t.Errorf("Stat(%q) = %+v, want a file of %d bytes", p, fi, len(data))
		}
		if !fi.ModTime.IsZero() && time.Since(fi.ModTime).Abs() > time.Hour {
			t.Errorf("Stat(%q).ModTime = %v, not near now", p, fi.ModTime)
		}
		wantContent(t, d, p, data)
		if got, err := storage.ReadAll(t.Context(), d, p); err != nil || !bytes.Equal(got, data) {
			t.Errorf("ReadAll(%q) = %s, %v; want %s", p, show(got), err, show(data))
		}
	}
	remove(t, d, "/roundtrip")
}

func testReaderOffsets(t *testing.T, d storage.Driver) {
	const p = "/offsets/f"
	data := []byte("0123456789abcdef")
	write(t, d, p, data)
	for _, off := range []int64{0, 1, 7, 15, 16} {
		if got := read(t, d, p, off); !bytes.Equal(got, data[off:]) {
			t.Errorf("read from offset %d: %q, want %q", off, got, data[off:])
		}
	}
	for _, off := range []int64{17, 1 << 40, -1, -17} {
		r, err := d.Reader(t.Context(), p, off)
		wantErr(t, fmt.Sprintf("Reader at offset %d of 16 bytes", off), err, storage.ErrInvalidOffset)
		if err == nil {
			r.Close()
		}
	}
	remove(t, d, "/offsets")
}

func testReaderMissing(t *testing.T, d storage.Driver) {
	write(t, d, "/missing/dir/f", []byte("x"))
	for _, p := range []string{
		"/missing/none",    // nothing there
		"/missing/dir",     // a directory
		"/missing/dir/f/g", // below a file
		"/",
	} {
		r, err := d.Reader(t.Context(), p, 0)
		wantErr(t, fmt.Sprintf("Reader(%q)", p), err, storage.ErrNotFound)
		if err == nil {
			r.Close()
		}
	}
	remove(t, d, "/missing")
}

// testReadAll checks storage.ReadAll, which goes through the driver's
// ReadSmall where it has one: whole files of sizes around the buffer sizes
// a driver may start with, and ErrNotFound where no file is.
func testReadAll(t *testing.T, d storage.Driver) {
	for _, n := range []int{0, 1, 71, 511, 512, 513, 4096, 70_000} {
		p := fmt.Sprintf("/readall/f%d", n)
		data := bytes.Repeat([]byte("0123456789abcdef"), n/16+1)[:n]
		write(t, d, p, data)
		got, err := storage.ReadAll(t.Context(), d, p)
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("ReadAll(%q): %d bytes, %v; want the %d written", p, len(got), err, n)
		}
	}
	for _, p := range []string{"/readall/none", "/readall", "/readall/f1/g", "/"} {
		_, err := storage.ReadAll(t.Context(), d, p)
		wantErr(t, fmt.Sprintf("ReadAll(%q)", p), err, storage.ErrNotFound)
	}
	remove(t, d, "/readall")
}

func testWriterSize(t *testing.T, d storage.Driver) {
	const p = "/size/f"
	w := newWriter(t, d, p, false)
	var want int64
	for _, n := range []int{0, 1, 10, 4096, 3} {
		mustWrite(t, w, make([]byte, n))
		want += int64(n)
		if got := w.Size(); got != want {
			t.Errorf("Size() = %d after writing %d bytes", got, want)
		}
	}
	if err := w.Commit(t.Context()); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if got := w.Size(); got != want {
		t.Errorf("Size() = %d after Commit, want %d", got, want)
	}
	if fi, err := d.Stat(t.Context(), p); err != nil || fi.Size != want {
		t.Errorf("Stat = %+v, %v; want size %d", fi, err, want)
	}
	remove(t, d, "/size")
}

func testWriterReplaces(t *testing.T, d storage.Driver) {
	const p = "/replace/f"
	write(t, d, p, []byte("old content, longer than the new one"))
	write(t, d, p, []byte("new"))
	wantContent(t, d, p, []byte("new"))

	// Close replaces too: an append writer continues the new content.
	w := newWriter(t, d, p, false)
	mustWrite(t, w, []byte("closed"))
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	w = newWriter(t, d, p, true)
	if got := w.Size(); got != 6 {
		t.Errorf("append writer Size() = %d after a writer closed 6 bytes", got)
	}
	mustWrite(t, w, []byte("!"))
	if err := w.Commit(t.Context()); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	wantContent(t, d, p, []byte("closed!"))
	remove(t, d, "/replace")
}

func testAppendAfterClose(t *testing.T, d storage.Driver) {
	const p = "/append/upload/data"
	parts := [][]byte{[]byte("first;"), []byte("second;"), {}, []byte("third")}
	var want []byte
	for i, part := range parts {
		w := newWriter(t, d, p, i > 0)
		if got := w.Size(); got != int64(len(want)) {
			t.Errorf("writer %d: Size() = %d before writing, want %d", i, got, len(want))
		}
		mustWrite(t, w, part)
		want = append(want, part...)
		if got := w.Size(); got != int64(len(want)) {
			t.Errorf("writer %d: Size() = %d after writing, want %d", i, got, len(want))
		}
		end := w.Close
		if i == len(parts)-1 {
			end = func() error { return w.Commit(t.Context()) }
		}
		if err := end(); err != nil {
			t.Fatalf("writer %d: ending: %v", i, err)
		}
		if got := w.Size(); got != int64(len(want)) {
			t.Errorf("writer %d: Size() = %d after it ended, want %d", i, got, len(want))
		}
	}
	wantContent(t, d, p, want)
	remove(t, d, "/append")
}

func testAppendMissing(t *testing.T, d storage.Driver) {
	w, err := d.Writer(t.Context(), "/append-missing/f", true)
	wantErr(t, "Writer(missing, append)", err, storage.ErrNotFound)
	if err == nil {
		w.Cancel(t.Context())
	}
	write(t, d, "/append-missing/dir/f", []byte("x"))
	w, err = d.Writer(t.Context(), "/append-missing/dir", true)
	wantErr(t, "Writer(directory, append)", err, storage.ErrNotFound)
	if err == nil {
		w.Cancel(t.Context())
	}
	remove(t, d, "/append-missing")
}

// testClosedContent checks that content left by Close, before any Commit,
// is a file of the size written so far for Stat, List and Walk, in
// directories like any file's, and that Delete removes it.
func testClosedContent(t *testing.T, d storage.Driver) {
	ctx := t.Context()
	const (
		dir = "/closed-content/upload"
		p   = dir + "/data"
	)
	closeWith := func(appending bool, data string) {
		t.Helper()
		w := newWriter(t, d, p, appending)
		mustWrite(t, w, []byte(data))
		if err := w.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	wantFile := func(size int64) {
		t.Helper()
		if fi, err := d.Stat(ctx, p); err != nil || fi.Size != size || fi.IsDir || fi.Path != p {
			t.Errorf("Stat(%q) of closed content = %+v, %v; want a file of %d bytes", p, fi, err, size)
		}
		if fi, err := d.Stat(ctx, dir); err != nil || !fi.IsDir {
			t.Errorf("Stat(%q) above closed content = %+v, %v; want a directory", dir, fi, err)
		}
		if got, err := d.List(ctx, dir); err != nil || !slices.Equal(got, []string{p}) {
			t.Errorf("List(%q) = %q, %v; want [%q]", dir, got, err, p)
		}
		var infos []storage.FileInfo
		err := d.Walk(ctx, "/closed-content", func(fi storage.FileInfo) error {
			fi.ModTime = time.Time{}
			infos = append(infos, fi)
			return nil
		})
		want := []storage.FileInfo{{Path: dir, IsDir: true}, {Path: p, Size: size}}
		if err != nil || !slices.Equal(infos, want) {
			t.Errorf("Walk over closed content visited %+v, %v; want %+v", infos, err, want)
		}
	}

	closeWith(false, "12345")
	wantFile(5)
	closeWith(true, "678")
	wantFile(8)
	closeWith(false, "ab") // replaces the closed content
	wantFile(2)

	// Closing replaces committed content too.
	remove(t, d, p)
	write(t, d, p, []byte("committed, longer content"))
	closeWith(false, "xyz")
	wantFile(3)

	// Delete removes closed content, on its own or with its directory.
	remove(t, d, p)
	wantMissing(t, d, p)
	wantMissing(t, d, "/closed-content")
	w, err := d.Writer(ctx, p, true)
	wantErr(t, "Writer(append) after Delete of closed content", err, storage.ErrNotFound)
	if err == nil {
		w.Cancel(ctx)
	}
	closeWith(false, "again")
	remove(t, d, dir)
	wantMissing(t, d, p)
	wantMissing(t, d, "/closed-content")
}

func testCancel(t *testing.T, d storage.Driver) {
	ctx := t.Context()

	// A new path stays empty, its directories too.
	w := newWriter(t, d, "/cancel/new/f", false)
	mustWrite(t, w, []byte("discard me"))
	if err := w.Cancel(ctx); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	wantMissing(t, d, "/cancel/new/f")
	wantMissing(t, d, "/cancel")

	// A non-append writer's Cancel leaves the committed content alone.
	write(t, d, "/cancel/kept", []byte("keep"))
	w = newWriter(t, d, "/cancel/kept", false)
	mustWrite(t, w, []byte("discard me"))
	if err := w.Cancel(ctx); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	wantContent(t, d, "/cancel/kept", []byte("keep"))

	// An append writer's Cancel discards what earlier writers left by Close.
	w = newWriter(t, d, "/cancel/upload/data", false)
	mustWrite(t, w, []byte("abc"))
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	w = newWriter(t, d, "/cancel/upload/data", true)
	mustWrite(t, w, []byte("def"))
	if err := w.Cancel(ctx); err != nil {
		t.Fatalf("Cancel of append writer: %v", err)
	}
	wantMissing(t, d, "/cancel/upload/data")
	wantMissing(t, d, "/cancel/upload")
	_, err := d.Writer(ctx, "/cancel/upload/data", true)
	wantErr(t, "Writer(append) after Cancel", err, storage.ErrNotFound)

	remove(t, d, "/cancel")
}

func testCommitAtomic(t *testing.T, d storage.Driver) {
	ctx := t.Context()
	const p = "/atomic/f"
	oldData := bytes.Repeat([]byte("o"), 10_000)
	newData := bytes.Repeat([]byte("n"), 30_000)
	write(t, d, p, oldData)

	before, err := d.Reader(ctx, p, 0)
	if err != nil {
		t.Fatalf("Reader: %v", err)
	}
	w := newWriter(t, d, p, false)
	mustWrite(t, w, newData[:20_000])
	wantContent(t, d, p, oldData)
	if fi, err := d.Stat(ctx, p); err != nil || fi.Size != int64(len(oldData)) {
		t.Errorf("Stat during an uncommitted write = %+v, %v; want the old size %d", fi, err, len(oldData))
	}
	during, err := d.Reader(ctx, p, 0)
	if err != nil {
		t.Fatalf("Reader: %v", err)
	}
	mustWrite(t, w, newData[20_000:])
	if err := w.Commit(ctx); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if got := readClose(t, before, p); !bytes.Equal(got, oldData) {
		t.Errorf("reader opened before the writer: read %s after Commit, want the old content", show(got))
	}
	if got := readClose(t, during, p); !bytes.Equal(got, oldData) {
		t.Errorf("reader opened during the write: read %s after Commit, want the old content", show(got))
	}
	wantContent(t, d, p, newData)

	// An uncommitted new path is invisible, and so is any temporary file.
	w = newWriter(t, d, "/atomic/new", false)
	mustWrite(t, w, newData)
	wantMissing(t, d, "/atomic/new")
	if got, err := d.List(ctx, "/atomic"); err != nil || !slices.Equal(got, []string{p}) {
		t.Errorf("List during an uncommitted write = %q, %v; want [%q]", got, err, p)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	wantContent(t, d, "/atomic/new", newData)
	remove(t, d, "/atomic")
}

func testWriterClosed(t *testing.T, d storage.Driver) {
	ctx := t.Context()
	ends := map[string]func(storage.FileWriter) error{
		"Commit": func(w storage.FileWriter) error { return w.Commit(ctx) },
		"Cancel": func(w storage.FileWriter) error { return w.Cancel(ctx) },
		"Close":  func(w storage.FileWriter) error { return w.Close() },
	}
	for name, end := range ends {
		w := newWriter(t, d, "/closed/"+name, false)
		mustWrite(t, w, []byte("x"))
		if err := end(w); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		_, err := w.Write([]byte("y"))
		wantErr(t, "Write after "+name, err, storage.ErrClosed)
		for again, endAgain := range ends {
			wantErr(t, again+" after "+name, endAgain(w), storage.ErrClosed)
		}
	}
	wantMissing(t, d, "/closed/Cancel")
	remove(t, d, "/closed/Commit", "/closed/Close")
}

func testStat(t *testing.T, d storage.Driver) {
	ctx := t.Context()
	write(t, d, "/stat/dir/f", []byte("12345"))
	for p, want := range map[string]storage.FileInfo{
		"/stat/dir/f": {Path: "/stat/dir/f", Size: 5},
		"/stat/dir":   {Path: "/stat/dir", IsDir: true},
		"/stat":       {Path: "/stat", IsDir: true},
		"/":           {Path: "/", IsDir: true},
	} {
		got, err := d.Stat(ctx, p)
		if err != nil {
			t.Errorf("Stat(%q): %v", p, err)
			continue
		}
		got.ModTime = time.Time{}
		if got != want {
			t.Errorf("Stat(%q) = %+v, want %+v", p, got, want)
		}
	}
	for _, p := range []string{"/stat/none", "/stat/dir/f/g", "/stat/di", "/none/at/all"} {
		wantMissing(t, d, p)
	}
	remove(t, d, "/stat")
}

func testImplicitDirectories(t *testing.T, d storage.Driver) {
	write(t, d, "/implicit/a/b/c", []byte("x"))
	write(t, d, "/implicit/z", []byte("x"))
	remove(t, d, "/implicit/a/b/c")
	wantMissing(t, d, "/implicit/a/b")
	wantMissing(t, d, "/implicit/a")
	if got, err := d.List(t.Context(), "/implicit"); err != nil || !slices.Equal(got, []string{"/implicit/z"}) {
		t.Errorf(`List("/implicit") = %q, %v; want only /implicit/z`, got, err)
	}
	remove(t, d, "/implicit/z")
	wantMissing(t, d, "/implicit")
}

// tree is a small directory tree whose walk order differs from the sorted
// order of its full paths ("/w/a-b" sorts before "/w/a/1").
var tree = []string{"/w/a/1", "/w/a/2", "/w/a-b", "/w/ab", "/w/b/c/3"}

func writeTree(t *testing.T, d storage.Driver) {
	for i, p := range tree {
		write(t, d, p, bytes.Repeat([]byte{'x'}, i+1))
	}
}

func testList(t *testing.T, d storage.Driver) {
	ctx := t.Context()
	writeTree(t, d)
	for p, want := range map[string][]string{
		"/":      {"/w"},
		"/w":     {"/w/a", "/w/a-b", "/w/ab", "/w/b"},
		"/w/a":   {"/w/a/1", "/w/a/2"},
		"/w/b":   {"/w/b/c"},
		"/w/b/c": {"/w/b/c/3"},
	} {
		if got, err := d.List(ctx, p); err != nil || !slices.Equal(got, want) {
			t.Errorf("List(%q) = %q, %v; want %q", p, got, err, want)
		}
	}
	for _, p := range []string{"/w/none", "/w/ab", "/none/at/all"} { // missing, a file, missing
		got, err := d.List(ctx, p)
		wantErr(t, fmt.Sprintf("List(%q) = %q", p, got), err, storage.ErrNotFound)
	}
	remove(t, d, "/w")
}

func testEmptyRoot(t *testing.T, d storage.Driver) {
	ctx := t.Context()
	if got, err := d.List(ctx, "/"); err != nil || len(got) != 0 {
		t.Errorf(`List("/") on an empty driver = %q, %v; want no paths, no error`, got, err)
	}
	err := d.Walk(ctx, "/", func(fi storage.FileInfo) error {
		t.Errorf(`Walk("/") on an empty driver visited %+v`, fi)
		return nil
	})
	if err != nil {
		t.Errorf(`Walk("/") on an empty driver: %v`, err)
	}
	if fi, err := d.Stat(ctx, "/"); err != nil || !fi.IsDir {
		t.Errorf(`Stat("/") on an empty driver = %+v, %v; want a directory`, fi, err)
	}
}

// walkPaths walks p, recording the paths visited; fn, if not nil, decides
// what the walk function returns.
func walkPaths(t *testing.T, d storage.Driver, p string, fn func(storage.FileInfo) error) ([]string, error) {
	var got []string
	err := d.Walk(t.Context(), p, func(fi storage.FileInfo) error {
		got = append(got, fi.Path)
		if fn != nil {
			return fn(fi)
		}
		return nil
	})
	return got, err
}

func testWalk(t *testing.T, d storage.Driver) {
	ctx := t.Context()
	writeTree(t, d)

	// Depth first, each directory before its contents, names in byte order.
	all := []string{"/w", "/w/a", "/w/a/1", "/w/a/2", "/w/a-b", "/w/ab", "/w/b", "/w/b/c", "/w/b/c/3"}
	var infos []storage.FileInfo
	err := d.Walk(ctx, "/", func(fi storage.FileInfo) error {
		infos = append(infos, fi)
		return nil
	})
	if err != nil {
		t.Fatalf(`Walk("/"): %v`, err)
	}
	var got []string
	for _, fi := range infos {
		got = append(got, fi.Path)
		i := slices.Index(tree, fi.Path)
		if isFile := i >= 0; fi.IsDir == isFile || isFile && fi.Size != int64(i+1) || !isFile && fi.Size != 0 {
			t.Errorf("Walk visited %+v, which is wrong about its kind or size", fi)
		}
	}
	if !slices.Equal(got, all) {
		t.Errorf("Walk(\"/\") visited\n\t%q\nwant\n\t%q", got, all)
	}

	for _, tc := range []struct {
		name, path string
		fn         func(storage.FileInfo) error
		want       []string
	}{
		{"subtree", "/w/b", nil, []string{"/w/b/c", "/w/b/c/3"}},
		{"SkipDir on a directory", "/w", skipAt("/w/a"),
			[]string{"/w/a", "/w/a-b", "/w/ab", "/w/b", "/w/b/c", "/w/b/c/3"}},
		{"SkipDir on a file skips the rest of its directory", "/w", skipAt("/w/a/1"),
			[]string{"/w/a", "/w/a/1", "/w/a-b", "/w/ab", "/w/b", "/w/b/c", "/w/b/c/3"}},
	} {
		got, err := walkPaths(t, d, tc.path, tc.fn)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%s: Walk(%q) visited %q, %v; want %q, nil", tc.name, tc.path, got, err, tc.want)
		}
	}

	// Any other error stops the walk and comes back.
	errStop := errors.New("stop here")
	got, err = walkPaths(t, d, "/w", func(fi storage.FileInfo) error {
		if fi.Path == "/w/a-b" {
			return fmt.Errorf("wrapped: %w", errStop)
		}
		return nil
	})
	wantErr(t, "Walk whose function fails", err, errStop)
	if want := []string{"/w/a", "/w/a/1", "/w/a/2", "/w/a-b"}; !slices.Equal(got, want) {
		t.Errorf("Walk whose function fails at /w/a-b visited %q, want %q", got, want)
	}

	for _, p := range []string{"/w/none", "/w/ab"} { // missing, a file
		got, err := walkPaths(t, d, p, nil)
		wantErr(t, fmt.Sprintf("Walk(%q) visiting %q", p, got), err, storage.ErrNotFound)
	}

	// A context cancelled during the walk stops it.
	cctx, cancel := context.WithCancel(ctx)
	n := 0
	err = d.Walk(cctx, "/w", func(storage.FileInfo) error {
		n++
		cancel()
		return nil
	})
	wantErr(t, "Walk cancelled by its function", err, context.Canceled)
	if n != 1 {
		t.Errorf("Walk went on for %d calls after its context was cancelled", n-1)
	}

	remove(t, d, "/w")
}

func skipAt(p string) func(storage.FileInfo) error {
	return func(fi storage.FileInfo) error {
		if fi.Path == p {
			return storage.SkipDir
		}
		return nil
	}
}

func testMove(t *testing.T, d storage.Driver) {
	ctx := t.Context()

	// Move creates dst's parents and takes src (and its emptied directories) away.
	write(t, d, "/move/src/f", []byte("moved"))
	if err := d.Move(ctx, "/move/src/f", "/move/dst/deep/g"); err != nil {
		t.Fatalf("Move: %v", err)
	}
	wantContent(t, d, "/move/dst/deep/g", []byte("moved"))
	wantMissing(t, d, "/move/src/f")
	wantMissing(t, d, "/move/src")

	// Move replaces dst.
	write(t, d, "/move/x", []byte("old, longer content"))
	write(t, d, "/move/y", []byte("new"))
	if err := d.Move(ctx, "/move/y", "/move/x"); err != nil {
		t.Fatalf("Move onto an existing file: %v", err)
	}
	wantContent(t, d, "/move/x", []byte("new"))
	wantMissing(t, d, "/move/y")

	// A missing src is ErrNotFound and leaves dst alone; so is a directory.
	wantErr(t, "Move of a missing file", d.Move(ctx, "/move/none", "/move/x"), storage.ErrNotFound)
	wantContent(t, d, "/move/x", []byte("new"))
	wantErr(t, "Move of a directory", d.Move(ctx, "/move/dst", "/move/elsewhere"), storage.ErrNotFound)
	wantContent(t, d, "/move/dst/deep/g", []byte("moved"))
	wantMissing(t, d, "/move/elsewhere")

	remove(t, d, "/move")
}

func testDelete(t *testing.T, d storage.Driver) {
	ctx := t.Context()
	write(t, d, "/del/a/f", []byte("f"))
	write(t, d, "/del/a/g", []byte("g"))
	remove(t, d, "/del/a/f")
	wantMissing(t, d, "/del/a/f")
	wantContent(t, d, "/del/a/g", []byte("g"))

	for _, p := range []string{"/del/t/1", "/del/t/x/2", "/del/t/x/y/3"} {
		write(t, d, p, []byte(p))
	}
	remove(t, d, "/del/t")
	for _, p := range []string{"/del/t/x/y/3", "/del/t/x/y", "/del/t/x", "/del/t"} {
		wantMissing(t, d, p)
	}

	wantErr(t, "Delete of a missing path", d.Delete(ctx, "/del/none"), storage.ErrNotFound)
	wantErr(t, "Delete below a file", d.Delete(ctx, "/del/a/g/h"), storage.ErrNotFound)
	wantErr(t, "second Delete", d.Delete(ctx, "/del/t"), storage.ErrNotFound)

	remove(t, d, "/del")
	wantMissing(t, d, "/del")
}

func testDeleteSiblingPrefixes(t *testing.T, d storage.Driver) {
	siblings := []string{"/ab", "/a-b/f", "/a.b", "/abc/f"}
	for _, p := range append([]string{"/a/f", "/a/g/h"}, siblings...) {
		write(t, d, p, []byte(p))
	}
	remove(t, d, "/a")
	wantMissing(t, d, "/a")
	for _, p := range siblings {
		wantContent(t, d, p, []byte(p))
	}
	remove(t, d, "/ab") // a file whose name prefixes a directory's
	wantContent(t, d, "/abc/f", []byte("/abc/f"))
	remove(t, d, "/a-b", "/a.b", "/abc")
}

// invalidPaths are paths ValidatePath rejects.
var invalidPaths = []string{
	"", "relative", "a/b", "/a/../b", "/..", "/a/..", "/.", "/a/./b", "/a//b", "//", "/a/",
	"/a\x00b", "/a\\b", "/\xff",
}

func testInvalidPaths(t *testing.T, d storage.Driver) {
	ctx := t.Context()
	const good = "/valid/f"
	write(t, d, good, []byte("x"))

	check := func(p string, err error, what string) {
		t.Helper()
		wantErr(t, fmt.Sprintf("%s with path %q", what, p), err, storage.ErrInvalidPath)
	}
	for _, p := range invalidPaths {
		r, err := d.Reader(ctx, p, 0)
		check(p, err, "Reader")
		if err == nil {
			r.Close()
		}
		for _, appending := range []bool{false, true} {
			w, err := d.Writer(ctx, p, appending)
			check(p, err, fmt.Sprintf("Writer(append %v)", appending))
			if err == nil {
				w.Cancel(ctx)
			}
		}
		_, err = d.Stat(ctx, p)
		check(p, err, "Stat")
		_, err = d.List(ctx, p)
		check(p, err, "List")
		err = d.Walk(ctx, p, func(fi storage.FileInfo) error {
			t.Errorf("Walk(%q) visited %+v", p, fi)
			return nil
		})
		check(p, err, "Walk")
		check(p, d.Move(ctx, p, "/valid/g"), "Move from")
		check(p, d.Move(ctx, good, p), "Move to")
		check(p, d.Delete(ctx, p), "Delete")
	}

	// The root is a directory: it cannot be written, moved or deleted.
	for _, appending := range []bool{false, true} {
		w, err := d.Writer(ctx, "/", appending)
		check("/", err, fmt.Sprintf("Writer(append %v)", appending))
		if err == nil {
			w.Cancel(ctx)
		}
	}
	check("/", d.Move(ctx, "/", "/valid/g"), "Move from")
	check("/", d.Move(ctx, good, "/"), "Move to")
	check("/", d.Delete(ctx, "/"), "Delete")

	wantContent(t, d, good, []byte("x"))
	wantMissing(t, d, "/valid/g")
	remove(t, d, "/valid")
}

func testCancelledContext(t *testing.T, d storage.Driver) {
	live := t.Context()
	const p = "/ctx/f"
	write(t, d, p, []byte("old"))
	ctx, cancel := context.WithCancel(live)
	cancel()

	check := func(what string, err error) {
		t.Helper()
		wantErr(t, what+" with a cancelled context", err, context.Canceled)
	}
	r, err := d.Reader(ctx, p, 0)
	check("Reader", err)
	if err == nil {
		r.Close()
	}
	for _, appending := range []bool{false, true} {
		w, err := d.Writer(ctx, p, appending)
		check(fmt.Sprintf("Writer(append %v)", appending), err)
		if err == nil {
			w.Cancel(live)
		}
	}
	_, err = d.Stat(ctx, p)
	check("Stat", err)
	_, err = d.List(ctx, "/ctx")
	check("List", err)
	check("Walk", d.Walk(ctx, "/", func(storage.FileInfo) error { return nil }))
	check("Move", d.Move(ctx, p, "/ctx/g"))
	check("Delete", d.Delete(ctx, p))

	// Commit and Cancel fail too, and end the writer without publishing.
	for _, name := range []string{"Commit", "Cancel"} {
		w := newWriter(t, d, p, false)
		mustWrite(t, w, []byte("new"))
		if name == "Commit" {
			check(name, w.Commit(ctx))
		} else {
			check(name, w.Cancel(ctx))
		}
		wantErr(t, "Cancel after a failed "+name, w.Cancel(live), storage.ErrClosed)
		wantContent(t, d, p, []byte("old"))
	}
	wantMissing(t, d, "/ctx/g")
	remove(t, d, "/ctx")
}

func testConcurrentWriters(t *testing.T, d storage.Driver) {
	const writers = 16
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			ctx := t.Context()
			p := fmt.Sprintf("/concurrent/%d/data", i)
			data := randomBytes(64<<10+i, uint64(i))
			w, err := d.Writer(ctx, p, false)
			if err != nil {
				t.Errorf("Writer(%q): %v", p, err)
				return
			}
			for chunk := range slices.Chunk(data, 10_000) {
				if _, err := w.Write(chunk); err != nil {
					t.Errorf("Write to %s: %v", p, err)
					w.Cancel(ctx)
					return
				}
			}
			if err := w.Commit(ctx); err != nil {
				t.Errorf("Commit of %s: %v", p, err)
				return
			}
			r, err := d.Reader(ctx, p, 0)
			if err != nil {
				t.Errorf("Reader(%q): %v", p, err)
				return
			}
			if got := readClose(t, r, p); !bytes.Equal(got, data) {
				t.Errorf("content of %s: %s, want %s", p, show(got), show(data))
			}
		})
	}
	wg.Wait()
	if got, err := d.List(t.Context(), "/concurrent"); err != nil || len(got) != writers {
		t.Errorf("List after concurrent writes = %q, %v; want %d paths", got, err, writers)
	}
	remove(t, d, "/concurrent")
}

// testConcurrentReplace has readers racing a writer that keeps replacing a
// file: every read must see one whole version.
func testConcurrentReplace(t *testing.T, d storage.Driver) {
	const p = "/replace-race/f"
	versions := [][]byte{bytes.Repeat([]byte("a"), 100<<10), bytes.Repeat([]byte("b"), 30<<10)}
	write(t, d, p, versions[0])
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(done)
		for i := range 20 {
			if err := storage.WriteAll(t.Context(), d, p, versions[(i+1)%2]); err != nil {
				t.Errorf("writing %s: %v", p, err)
				return
			}
		}
	})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				got, err := storage.ReadAll(t.Context(), d, p)
				if err != nil {
					t.Errorf("reading %s while it is replaced: %v", p, err)
					return
				}
				if !bytes.Equal(got, versions[0]) && !bytes.Equal(got, versions[1]) {
					t.Errorf("read %s while it is replaced: %s, a mix of versions", p, show(got))
					return
				}
			}
		})
	}
	wg.Wait()
	remove(t, d, "/replace-race")
}

// testLargeOddChunks writes a few MiB in odd-sized writes over three
// writers (Close, append, Close, append, Commit) and reads it back.
func testLargeOddChunks(t *testing.T, d storage.Driver) {
	const p = "/large/data"
	data := randomBytes(3<<20+17, 42)
	sizes := []int{1, 3, 509, 4093, 65521, 1<<20 + 7, 2, 777}
	cuts := []int{len(data) / 3, 2 * len(data) / 3, len(data)}
	pos, k := 0, 0
	for i, cut := range cuts {
		w := newWriter(t, d, p, i > 0)
		if got := w.Size(); got != int64(pos) {
			t.Fatalf("writer %d: Size() = %d, want %d", i, got, pos)
		}
		for pos < cut {
			n := min(sizes[k%len(sizes)], cut-pos)
			k++
			mustWrite(t, w, data[pos:pos+n])
			pos += n
		}
		end := w.Close
		if i == len(cuts)-1 {
			end = func() error { return w.Commit(t.Context()) }
		}
		if err := end(); err != nil {
			t.Fatalf("writer %d: ending: %v", i, err)
		}
	}
	if fi, err := d.Stat(t.Context(), p); err != nil || fi.Size != int64(len(data)) {
		t.Errorf("Stat = %+v, %v; want %d bytes", fi, err, len(data))
	}
	if got := read(t, d, p, 0); !bytes.Equal(got, data) {
		t.Errorf("read back %s, want the %d bytes written", show(got), len(data))
	}
	const off = 1<<20 + 12345
	if got := read(t, d, p, off); !bytes.Equal(got, data[off:]) {
		t.Errorf("read back from %d: %s, want the %d bytes written there", off, show(got), len(data)-off)
	}
	remove(t, d, "/large")
}

func testBinaryContent(t *testing.T, d storage.Driver) {
	const p = "/binary/f"
	var data []byte
	for i := range 3 * 256 {
		data = append(data, byte(i), byte(255-i%256))
	}
	data = append(data, "\r\n\x00\n\r\x1a"...)
	write(t, d, p, data)
	wantContent(t, d, p, data)
	remove(t, d, "/binary")
}

// testUnusualNames stores paths that are valid though unusual.
func testUnusualNames(t *testing.T, d storage.Driver) {
	names := []string{
		"/odd/ sp ace ", "/odd/.hidden", "/odd/..dots", "/odd/...", "/odd/ünïcødé",
		"/odd/a:b@c+d=e,f~g!h$i&j'k(l)m;n*o", "/odd/%41%2F", "/odd/" + strings.Repeat("n", 200),
	}
	for _, p := range names {
		write(t, d, p, []byte(p))
	}
	got, err := d.List(t.Context(), "/odd")
	if want := slices.Sorted(slices.Values(names)); err != nil || !slices.Equal(got, want) {
		t.Errorf(`List("/odd") = %q, %v; want %q`, got, err, want)
	}
	for _, p := range names {
		wantContent(t, d, p, []byte(p))
	}
	remove(t, d, "/odd")
}

// Bench runs the driver benchmarks: writing 64 MiB in 1 MiB writes and
// committing it, and reading it back in 1 MiB reads. newDriver is called once
// per benchmark and must return an empty driver.
func Bench(b *testing.B, newDriver func(b *testing.B) storage.Driver) {
	const (
		size  = 64 << 20
		chunk = 1 << 20
		p     = "/bench/data"
	)
	data := randomBytes(chunk, 7)
	writeBlob := func(b *testing.B, d storage.Driver) {
		w, err := d.Writer(b.Context(), p, false)
		if err != nil {
			b.Fatal(err)
		}
		for range size / chunk {
			if _, err := w.Write(data); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Commit(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("Write64MiB", func(b *testing.B) {
		d := newDriver(b)
		b.SetBytes(size)
		for b.Loop() {
			writeBlob(b, d)
		}
		if err := d.Delete(b.Context(), "/bench"); err != nil {
			b.Error(err)
		}
	})
	b.Run("Read64MiB", func(b *testing.B) {
		d := newDriver(b)
		writeBlob(b, d)
		buf := make([]byte, chunk)
		b.SetBytes(size)
		for b.Loop() {
			r, err := d.Reader(b.Context(), p, 0)
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			for {
				m, err := r.Read(buf)
				n += m
				if err == io.EOF {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			r.Close()
			if n != size {
				b.Fatalf("read %d bytes, want %d", n, size)
			}
		}
		if err := d.Delete(b.Context(), "/bench"); err != nil {
			b.Error(err)
		}
	})
}

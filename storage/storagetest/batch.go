package storagetest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/berth-registry/berth/storage"
)

// The tests of storage.DeleteFiles, which uses the driver's
// storage.BatchDeleter when it has one and Stat and Delete otherwise.

// deleteFiles calls storage.DeleteFiles and fails t unless it returns one
// result per path.
func deleteFiles(t *testing.T, ctx context.Context, d storage.Driver, paths []string) []error {
	t.Helper()
	errs := storage.DeleteFiles(ctx, d, paths, 4)
	if len(errs) != len(paths) {
		t.Fatalf("DeleteFiles of %d paths returned %d results", len(paths), len(errs))
	}
	return errs
}

// wantDeleted fails t unless every result of DeleteFiles is nil.
func wantDeleted(t *testing.T, paths []string, errs []error) {
	t.Helper()
	for i, err := range errs {
		if err != nil {
			t.Errorf("DeleteFiles: %q: %v, want nil", paths[i], err)
		}
	}
}

// wantTree fails t unless walking "/" visits exactly want, and listing
// "/" gives the top-level paths of want: deleted files leave no
// directory behind.
func wantTree(t *testing.T, d storage.Driver, want []string) {
	t.Helper()
	if got, err := walkPaths(t, d, "/", nil); err != nil || !slices.Equal(got, want) {
		t.Errorf("Walk(\"/\") visited\n\t%q, %v\nwant\n\t%q", got, err, want)
	}
	top := []string{}
	for _, p := range want {
		if !strings.Contains(p[1:], "/") {
			top = append(top, p)
		}
	}
	if got, err := d.List(t.Context(), "/"); err != nil || !slices.Equal(got, top) {
		t.Errorf(`List("/") = %q, %v; want %q`, got, err, top)
	}
}

// testDeleteFiles deletes files in several directories, with missing paths
// and a duplicate among them, and checks that only the files given go,
// with the directories they leave empty.
func testDeleteFiles(t *testing.T, d storage.Driver) {
	ctx := t.Context()
	for _, p := range []string{"/batch/a/1", "/batch/a/2", "/batch/b/c/3", "/batch/keep/f", "/batch/x"} {
		write(t, d, p, []byte(p))
	}
	paths := []string{
		"/batch/a/1", "/batch/a/2", "/batch/b/c/3", "/batch/x",
		"/batch/none", "/batch/keep/f/below", "/nothing/at/all", // missing: deleted already
		"/batch/a/1", // twice
	}
	wantDeleted(t, paths, deleteFiles(t, ctx, d, paths))
	for _, p := range []string{"/batch/a/1", "/batch/a/2", "/batch/a", "/batch/b/c/3", "/batch/b/c", "/batch/b", "/batch/x"} {
		wantMissing(t, d, p)
	}
	wantContent(t, d, "/batch/keep/f", []byte("/batch/keep/f"))
	wantTree(t, d, []string{"/batch", "/batch/keep", "/batch/keep/f"})
	if got, err := d.List(ctx, "/batch"); err != nil || !slices.Equal(got, []string{"/batch/keep"}) {
		t.Errorf(`List("/batch") = %q, %v; want only /batch/keep`, got, err)
	}

	// Again: all gone already, all deleted.
	wantDeleted(t, paths, deleteFiles(t, ctx, d, paths))
	// No paths, no results.
	deleteFiles(t, ctx, d, nil)

	// Many files over a few directories, and the last file of the tree.
	var many []string
	for i := range 150 {
		p := fmt.Sprintf("/batch/many/%d/%03d", i%3, i)
		write(t, d, p, []byte(p))
		many = append(many, p)
	}
	many = append(many, "/batch/keep/f")
	wantDeleted(t, many, deleteFiles(t, ctx, d, many))
	wantMissing(t, d, "/batch")
	wantTree(t, d, nil)
}

// testDeleteFilesSiblings checks that deleting the file "/a" leaves the
// paths it prefixes alone, and that a directory given as a path is no file
// to delete: it stays, with its contents.
func testDeleteFilesSiblings(t *testing.T, d storage.Driver) {
	ctx := t.Context()
	siblings := []string{"/ab", "/a-b/f", "/a.b", "/abc/f"}
	dirFiles := []string{"/dir/f", "/dir/g/h"}
	for _, p := range slices.Concat([]string{"/a"}, siblings, dirFiles) {
		write(t, d, p, []byte(p))
	}
	paths := []string{"/a", "/dir", "/dir/g"}
	wantDeleted(t, paths, deleteFiles(t, ctx, d, paths))
	wantMissing(t, d, "/a")
	for _, p := range slices.Concat(siblings, dirFiles) {
		wantContent(t, d, p, []byte(p))
	}

	paths = []string{"/ab"} // a file whose name prefixes a directory's
	wantDeleted(t, paths, deleteFiles(t, ctx, d, paths))
	wantMissing(t, d, "/ab")
	wantContent(t, d, "/abc/f", []byte("/abc/f"))
	wantTree(t, d, []string{"/a-b", "/a-b/f", "/a.b", "/abc", "/abc/f", "/dir", "/dir/f", "/dir/g", "/dir/g/h"})
	remove(t, d, "/a-b", "/a.b", "/abc", "/dir")
}

// testDeleteFilesInvalid checks that each invalid path, and the root, is
// ErrInvalidPath while the valid paths beside them are deleted.
func testDeleteFilesInvalid(t *testing.T, d storage.Driver) {
	ctx := t.Context()
	const good = "/valid/f"
	write(t, d, good, []byte("x"))
	write(t, d, "/valid/g", []byte("x"))
	paths := slices.Concat(invalidPaths, []string{"/", good})
	errs := deleteFiles(t, ctx, d, paths)
	for i, p := range paths[:len(paths)-1] {
		wantErr(t, fmt.Sprintf("DeleteFiles with path %q", p), errs[i], storage.ErrInvalidPath)
	}
	if err := errs[len(errs)-1]; err != nil {
		t.Errorf("DeleteFiles: %q among invalid paths: %v, want nil", good, err)
	}
	wantMissing(t, d, good)
	wantContent(t, d, "/valid/g", []byte("x"))
	remove(t, d, "/valid")
}

// testDeleteFilesClosedContent checks that DeleteFiles removes content
// left by Close as Delete does, leaving nothing that a later append writer
// or Stat could find: on its own, continued by an append writer, and
// hidden under committed content.
func testDeleteFilesClosedContent(t *testing.T, d storage.Driver) {
	ctx := t.Context()
	closeWith := func(p string, appending bool, data string) {
		t.Helper()
		w := newWriter(t, d, p, appending)
		mustWrite(t, w, []byte(data))
		if err := w.Close(); err != nil {
			t.Fatalf("Close of %s: %v", p, err)
		}
	}
	const (
		alone     = "/batch-closed/1/data"
		continued = "/batch-closed/2/data"
		committed = "/batch-closed/3/data"
	)
	closeWith(alone, false, "abc")
	closeWith(continued, false, "abc")
	closeWith(continued, true, "def")
	closeWith(committed, false, "closed")
	write(t, d, committed, []byte("committed over closed content"))

	paths := []string{alone, continued, committed}
	wantDeleted(t, paths, deleteFiles(t, ctx, d, paths))
	for _, p := range paths {
		wantMissing(t, d, p)
		w, err := d.Writer(ctx, p, true)
		wantErr(t, fmt.Sprintf("Writer(%q, append) after DeleteFiles", p), err, storage.ErrNotFound)
		if err == nil {
			w.Cancel(ctx)
		}
	}
	wantMissing(t, d, "/batch-closed")
	wantTree(t, d, nil)
}

// testDeleteFilesCancelled checks that a done context fails every path
// with its error and deletes nothing.
func testDeleteFilesCancelled(t *testing.T, d storage.Driver) {
	const p = "/batch-ctx/f"
	write(t, d, p, []byte("x"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	paths := []string{p, "/batch-ctx/none", "relative"}
	for i, err := range deleteFiles(t, ctx, d, paths) {
		wantErr(t, fmt.Sprintf("DeleteFiles(%q) with a cancelled context", paths[i]), err, context.Canceled)
	}
	wantContent(t, d, p, []byte("x"))
	remove(t, d, "/batch-ctx")
}

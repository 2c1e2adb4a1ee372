package filesystem

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/berth-registry/berth/storage"
)

const (
	// tmpDir is the directory under the root that holds the temporary files
	// of non-append writers until they are renamed into place. Paths whose
	// first component is tmpDir are reserved: they are ErrInvalidPath.
	tmpDir = ".berth-tmp"
	// staleTempAge is how long a temporary file must have gone unmodified
	// before New treats it as left by a crash and removes it.
	staleTempAge = time.Hour
	// renameAttempts bounds the retries of a rename whose target directory
	// is removed, between creation and rename, by a concurrent Delete.
	renameAttempts = 5
	// writebackChunk is how many bytes a writer lets pile up in the page
	// cache before it asks the kernel to start writing them to disk, so
	// that the fsync ending the writer waits for the last chunk only.
	writebackChunk = 8 << 20
	// syncChunk is how many more bytes a writer must have sent to disk
	// before it syncs them in the background (see syncer).
	syncChunk = 16 << 20

	dirPerm  = 0o777 // less the umask
	filePerm = 0o666 // less the umask
)

// Driver is a storage.Driver keeping the content at path "/a/b" in the file
// <root>/a/b, so that the tree under root has the same layout as with other
// registries' filesystem drivers:
//
//	<root>/
//	├── a/b                content of "/a/b"
//	└── .berth-tmp/        temporary files of unfinished writers (reserved)
//
// A non-append writer writes a temporary file in <root>/.berth-tmp (on the
// root's file system) and renames it into place when it is committed or
// closed, after an fsync; the directory it lands in is fsynced too, and so is
// every directory the driver creates. An append writer writes its file in
// place. Writers start the writeback of what they wrote every 8 MiB (on
// Linux), so that the final fsync has little left to wait for. Directories
// are created as content needs them and removed when Delete, Move or Cancel
// leaves them empty; the root is never removed. Every 16 MiB, a writer also
// syncs what it sent to disk so far in the background, so that the disk's
// own write cache is flushed while the content streams, not all at the end.
//
// Each method works on the name <root>/<path> directly, with no system call
// per path component: Stat is one stat, Reader an open and an fstat, and
// either is a single failed call when nothing is at the path. A path cannot
// leave root by itself: storage.ValidatePath rejects "..", empty components,
// NUL bytes and backslashes before any name is built.
//
// Symbolic links under root are followed, as intended: an operator may link
// part of the tree elsewhere, and only someone who can write to root can
// create one (the driver itself never does). Reader, Stat, Writer, List and
// Walk see through them; List and Walk report a link as what it points to
// (a dangling link is left out), and Walk does not enter a link to a
// directory it is walking already, so a link loop ends. Move refuses a link
// at src (only regular files move, ErrNotFound), Delete removes a link, not
// what it points to, and pruning never removes a link.
//
// What is written under root must be on root's file system: the rename from
// .berth-tmp into place (and Move) cannot cross file systems. A file system
// mounted below root, or a link to another file system, serves reads but
// makes writes beneath it fail (EXDEV).
type Driver struct {
	root   string // the root directory, absolute and clean
	prefix string // root without a trailing separator ("" for "/"), to which a path is appended
	tmp    string // the temporary directory
	// reads bounds the lstat calls that walks make ahead of their
	// callers, over all walks at once.
	reads chan struct{}
	// dirs syncs directories by group commit.
	dirs dirSyncer
}

var _ storage.Driver = (*Driver)(nil)

// New returns a Driver storing content under the directory root, creating it
// if needed. It removes temporary files that a crashed process left in
// <root>/.berth-tmp more than an hour ago, and, if root holds content, syncs
// the file system it is on.
func New(root string) (*Driver, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("filesystem: %w", err)
	}
	if err := os.MkdirAll(abs, dirPerm); err != nil {
		return nil, fmt.Errorf("filesystem: %w", err)
	}
	prefix := strings.TrimSuffix(abs, string(filepath.Separator))
	d := &Driver{root: abs, prefix: prefix, tmp: prefix + string(filepath.Separator) + tmpDir, reads: make(chan struct{}, readAheadLimit),
		dirs: dirSyncer{root: abs}}
	if err := d.removeStaleTemps(time.Now().Add(-staleTempAge)); err != nil {
		return nil, err
	}
	// Directories made by a process that wrote nothing durable beneath
	// them are not durable (see dirSyncer), and this process cannot tell
	// them from others: make everything on the file system durable once,
	// unless the root holds nothing yet.
	if entries, err := os.ReadDir(abs); err == nil && len(entries) > 1 {
		if err := syncFilesystem(abs); err != nil {
			return nil, fmt.Errorf("filesystem: %w", err)
		}
	}
	return d, nil
}

// Close does nothing: the driver holds no open file between calls. It is
// kept so that a driver is released like any other.
func (d *Driver) Close() error {
	return nil
}

// removeStaleTemps creates the temporary directory if it is missing and
// removes the files in it last modified before cutoff.
func (d *Driver) removeStaleTemps(cutoff time.Time) error {
	if err := os.Mkdir(d.tmp, dirPerm); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("filesystem: %w", err)
	}
	entries, err := os.ReadDir(d.tmp)
	if err != nil {
		return fmt.Errorf("filesystem: %w", err)
	}
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.ModTime().Before(cutoff) {
			_ = os.RemoveAll(filepath.Join(d.tmp, e.Name())) // best effort: a leftover is harmless
		}
	}
	return nil
}

// name validates the storage path p and returns the name of its file.
func (d *Driver) name(p string) (string, error) {
	return d.checkedName(p, storage.ValidatePath)
}

// fileName is name for the methods that change content, which cannot act
// on the root directory itself.
func (d *Driver) fileName(p string) (string, error) {
	return d.checkedName(p, storage.ValidateChangePath)
}

func (d *Driver) checkedName(p string, validate func(string) error) (string, error) {
	if err := validate(p); err != nil {
		return "", err
	}
	if first, _, _ := strings.Cut(p[1:], "/"); first == tmpDir {
		return "", fmt.Errorf("%w %q: /%s is reserved for the filesystem driver's temporary files",
			storage.ErrInvalidPath, p, tmpDir)
	}
	return d.file(p), nil
}

// file returns the name of the file of storage path p, which must be valid.
// Appending is filepath.Join(d.root, p) without its cleaning: a valid path
// is clean already.
func (d *Driver) file(p string) string {
	if p == "/" {
		return d.root
	}
	return d.prefix + filepath.FromSlash(p)
}

// Reader returns the file at path as an *os.File positioned at offset.
func (d *Driver) Reader(ctx context.Context, p string, offset int64) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	name, err := d.name(p)
	if err != nil {
		return nil, err
	}
	f, err := openFile(name, os.O_RDONLY, 0)
	if err != nil {
		return nil, pathError(p, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, pathError(p, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, notFound(p)
	}
	if offset < 0 || offset > fi.Size() {
		f.Close()
		return nil, fmt.Errorf("%w: %d for %s of %d bytes", storage.ErrInvalidOffset, offset, p, fi.Size())
	}
	if offset != 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, fmt.Errorf("filesystem: %w", err)
		}
	}
	return f, nil
}

// smallReadSize is what ReadSmall reads at first: more than a link file
// holds, less than most manifests.
const smallReadSize = 512

var _ storage.SmallReader = (*Driver)(nil)

// ReadSmall reads the whole file at path with an open, reads until one
// returns nothing, and a close: no stat, and no *os.File to set up and tear
// down (a manifest GET by tag reads its tag's link this way).
func (d *Driver) ReadSmall(ctx context.Context, p string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	name, err := d.name(p)
	if err != nil {
		return nil, err
	}
	b, err := readSmallFile(name, smallReadSize)
	if errors.Is(err, syscall.EISDIR) {
		return nil, notFound(p)
	}
	if err != nil {
		return nil, pathError(p, err)
	}
	return b, nil
}

// Writer returns a writer for path; see storage.Driver.
func (d *Driver) Writer(ctx context.Context, p string, appending bool) (storage.FileWriter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	name, err := d.fileName(p)
	if err != nil {
		return nil, err
	}
	if appending {
		f, err := openFile(name, os.O_WRONLY|os.O_APPEND, 0)
		if errors.Is(err, syscall.EISDIR) {
			return nil, notFound(p)
		}
		if err != nil {
			return nil, pathError(p, err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("filesystem: %w", err)
		}
		return &writer{d: d, path: p, name: name, f: f, size: fi.Size(), started: fi.Size(), synced: fi.Size(),
			lazy: storage.LazySync(ctx) || storage.NoSync(ctx), nosync: storage.NoSync(ctx)}, nil
	}
	tmp, f, err := d.createTemp()
	if err != nil {
		return nil, err
	}
	return &writer{d: d, path: p, name: name, tmp: tmp, f: f, lazy: storage.LazySync(ctx) || storage.NoSync(ctx),
		nosync: storage.NoSync(ctx)}, nil
}

// createTemp creates a new temporary file in the temporary directory,
// recreating the directory if someone removed it.
func (d *Driver) createTemp() (string, *os.File, error) {
	name := d.tmp + string(filepath.Separator) + rand.Text()
	f, err := openFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, filePerm)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.Mkdir(d.tmp, dirPerm); err != nil && !errors.Is(err, fs.ErrExist) {
			return "", nil, fmt.Errorf("filesystem: %w", err)
		}
		f, err = openFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, filePerm)
	}
	if err != nil {
		return "", nil, fmt.Errorf("filesystem: %w", err)
	}
	return name, f, nil
}

// CreateExclusive writes b at p unless a file is there (storage.ErrExists):
// a temporary file gets p's name by link(2), which fails when the name
// exists, so that of racing callers exactly one succeeds. Nothing is
// synced: the content is short-lived state (see storage.ExclusiveCreator).
func (d *Driver) CreateExclusive(ctx context.Context, p string, b []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	name, err := d.fileName(p)
	if err != nil {
		return err
	}
	tmp, f, err := d.createTemp()
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return pathError(p, err)
	}
	for attempt := 1; ; attempt++ {
		err := os.Link(tmp, name)
		if err == nil {
			break
		}
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %s", storage.ErrExists, p)
		}
		if !errors.Is(err, fs.ErrNotExist) || attempt == renameAttempts {
			return pathError(p, err)
		}
		// Unsynced like the file (pending with the syncer): a concurrent
		// prune may remove what this creates, and then the next attempt
		// creates it again.
		if err := d.mkdirAll(path.Dir(p)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return pathError(p, err)
		}
	}
	return nil
}

// Stat describes the file or directory at path.
func (d *Driver) Stat(ctx context.Context, p string) (storage.FileInfo, error) {
	if err := ctx.Err(); err != nil {
		return storage.FileInfo{}, err
	}
	name, err := d.name(p)
	if err != nil {
		return storage.FileInfo{}, err
	}
	fi, err := statFile(p, name)
	if err != nil {
		return storage.FileInfo{}, pathError(p, err)
	}
	return fi, nil
}

// List returns the sorted paths of the directory's direct children.
func (d *Driver) List(ctx context.Context, p string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	name, err := d.name(p)
	if err != nil {
		return nil, err
	}
	entries, err := readDir(name, p == "/")
	if err != nil {
		return nil, pathError(p, err)
	}
	paths := make([]string, len(entries))
	for i, e := range entries {
		paths[i] = join(p, e.Name())
	}
	return paths, nil
}

// Walk visits everything below path depth first, in lexical order.
func (d *Driver) Walk(ctx context.Context, p string, fn storage.WalkFunc) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	name, err := d.name(p)
	if err != nil {
		return err
	}
	entries, err := readDir(name, p == "/")
	if err != nil {
		return pathError(p, err)
	}
	w := walker{ctx: ctx, fn: fn, start: name, ancestors: []fs.FileInfo{nil}, reads: d.reads}
	return w.walk(p, name, entries)
}

// Walk describes entries ahead of its caller: while fn looks at one entry
// of a directory, the next walkAhead entries are described (an lstat
// each), at most readAheadLimit such calls at a time over all walks of a
// driver. On a cold cache each waits for the disk, which serves many at
// once far faster than one after the other, and a directory fn skips is
// never read; fn still sees the entries one at a time, in order.
const (
	walkAhead      = 16
	readAheadLimit = 64
)

// described is an entry as Walk described it ahead.
type described struct {
	fi  fs.FileInfo // nil when the entry is gone
	err error       // describing it failed
}

// walker holds the state of one Walk.
type walker struct {
	ctx   context.Context
	fn    storage.WalkFunc
	start string // the name of the directory walked
	// ancestors describes the directories from the one walked down to the
	// one being read, to find link loops. The first is nil until a link to
	// a directory is met.
	ancestors []fs.FileInfo
	reads     chan struct{} // the driver's bound on reads ahead
}

// describe starts describing entry e and returns where the result will be.
func (w *walker) describe(e fs.DirEntry) <-chan described {
	out := make(chan described, 1)
	go func() {
		if w.reads != nil {
			w.reads <- struct{}{}
			defer func() { <-w.reads }()
		}
		fi, err := e.Info()
		if isNotFound(err) {
			fi, err = nil, nil
		}
		out <- described{fi, err}
	}()
	return out
}

// walk calls fn for entries, the contents of directory name (storage path
// p), and descends into the directories among them.
func (w *walker) walk(p, name string, entries []fs.DirEntry) error {
	ahead := make([]<-chan described, len(entries))
	for i := range min(walkAhead, len(entries)) {
		ahead[i] = w.describe(entries[i])
	}
	for i, e := range entries {
		if j := i + walkAhead; j < len(entries) {
			ahead[j] = w.describe(entries[j])
		}
		if err := w.ctx.Err(); err != nil {
			return err
		}
		r := <-ahead[i]
		if r.err != nil {
			return fmt.Errorf("filesystem: %w", r.err)
		}
		if r.fi == nil {
			continue // removed since the directory was read
		}
		info := fileInfo(join(p, e.Name()), r.fi)
		err := w.fn(info)
		if errors.Is(err, storage.SkipDir) {
			if info.IsDir {
				continue
			}
			return nil // the rest of this directory
		}
		if err != nil {
			return err
		}
		if !info.IsDir {
			continue
		}
		if _, ok := e.(linkEntry); ok && w.isAncestor(r.fi) {
			continue // a link loop: its contents are being walked already
		}
		childName := filepath.Join(name, e.Name())
		children, err := readDir(childName, false)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("filesystem: %w", err)
		}
		w.ancestors = append(w.ancestors, r.fi)
		err = w.walk(info.Path, childName, children)
		w.ancestors = w.ancestors[:len(w.ancestors)-1]
		if err != nil {
			return err
		}
	}
	return nil
}

// isAncestor reports whether directory fi is one of those being walked.
func (w *walker) isAncestor(fi fs.FileInfo) bool {
	if w.ancestors[0] == nil {
		w.ancestors[0], _ = os.Stat(w.start) // nil, never the same file, if gone
	}
	return slices.ContainsFunc(w.ancestors, func(a fs.FileInfo) bool { return a != nil && os.SameFile(a, fi) })
}

// linkEntry is the directory entry of a symbolic link, describing what the
// link points to.
type linkEntry struct{ fs.DirEntry }

// readDir returns the regular files and directories in directory name,
// sorted by name, leaving out the temporary directory if name is the root.
// A symbolic link is followed: it is returned as a linkEntry if it points to
// a regular file or a directory, and left out otherwise. For a file it
// returns an error wrapping syscall.ENOTDIR.
func readDir(name string, root bool) ([]fs.DirEntry, error) {
	f, err := openDir(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	entries, err := f.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	kept := entries[:0]
	for _, e := range entries {
		if root && e.Name() == tmpDir {
			continue
		}
		if e.Type()&fs.ModeSymlink != 0 {
			fi, err := os.Stat(filepath.Join(name, e.Name()))
			if err != nil {
				continue // dangling, or gone
			}
			e = linkEntry{fs.FileInfoToDirEntry(fi)}
		}
		if e.Type().IsRegular() || e.IsDir() {
			kept = append(kept, e)
		}
	}
	slices.SortFunc(kept, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return kept, nil
}

// Move renames the file at src to dst, creating dst's parent directories.
func (d *Driver) Move(ctx context.Context, src, dst string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	srcName, err := d.fileName(src)
	if err != nil {
		return err
	}
	if _, err := d.fileName(dst); err != nil {
		return err
	}
	fi, err := os.Lstat(srcName)
	if err != nil {
		return pathError(src, err)
	}
	if !fi.Mode().IsRegular() {
		return notFound(src) // only files move
	}
	if err := d.rename(srcName, dst, true); err != nil {
		// The source gone after a failed rename: removed by someone
		// else meanwhile. Not after a failed sync: it moved.
		if _, serr := os.Lstat(srcName); isNotFound(serr) && !errors.As(err, new(*dirSyncError)) {
			return notFound(src)
		}
		return fmt.Errorf("filesystem: %w", err)
	}
	d.prune(path.Dir(src))
	return nil
}

// Delete removes the file or directory tree at path, then the directories
// that this leaves empty.
func (d *Driver) Delete(ctx context.Context, p string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	name, err := d.fileName(p)
	if err != nil {
		return err
	}
	fi, err := os.Lstat(name)
	if err != nil {
		return pathError(p, err)
	}
	if fi.IsDir() {
		// A writer creating a file in the tree meanwhile makes RemoveAll
		// fail with "directory not empty": the delete then comes after
		// that write, so remove again.
		for range 10 {
			if err = os.RemoveAll(name); !errors.Is(err, syscall.ENOTEMPTY) {
				break
			}
		}
		if err == nil {
			d.dirs.removed(name, true)
		}
	} else {
		err = os.Remove(name)
	}
	if err != nil {
		return pathError(p, err)
	}
	d.prune(path.Dir(p))
	return nil
}

// rename moves the file oldname to storage path newp, creating its parent
// directories as needed, and, with sync, makes the result durable: the
// directory it lands in is synced, and the parent of each directory on
// the way whose entry is not durable yet (pending: one this made, or
// another writer did), together, in one round of the driver's group
// commit (dirSyncer). Without sync, nothing is synced and the directories
// made stay pending.
func (d *Driver) rename(oldname, newp string, sync bool) error {
	newname, dir := d.file(newp), path.Dir(newp)
	for attempt := 1; ; attempt++ {
		err := rename(oldname, newname)
		if err == nil {
			break
		}
		if errors.Is(err, syscall.EXDEV) {
			return fmt.Errorf("%w (writing beneath a mount point or a link to another file system is not supported)", err)
		}
		// A missing directory is the common case for a new path; it may
		// also have been pruned by a concurrent Delete since we made it.
		if !errors.Is(err, fs.ErrNotExist) || attempt == renameAttempts {
			return err
		}
		// A concurrent Delete may also prune a parent while we create
		// its children: that is one more attempt, not a failure.
		if err := d.mkdirAll(dir); err != nil && (!errors.Is(err, fs.ErrNotExist) || attempt == renameAttempts) {
			return err
		}
	}
	if !sync {
		return nil
	}
	// A concurrent Delete of a directory right after the rename removed
	// what we wrote: our write came first, and there is nothing to sync
	// (the syncer ignores directories gone).
	if err := d.dirs.sync(d.file(dir)); err != nil {
		return &dirSyncError{err}
	}
	return nil
}

// dirSyncError: a rename happened, but syncing its directory failed (out
// of file descriptors, an I/O error), so it may not be durable.
type dirSyncError struct{ err error }

func (e *dirSyncError) Error() string {
	return "syncing the directory after a rename: " + e.err.Error()
}
func (e *dirSyncError) Unwrap() error { return e.err }

// mkdirAll creates the directory at storage path p and its missing
// parents, each one pending with the syncer until a durable write beneath
// it syncs its parent (see dirSyncer).
func (d *Driver) mkdirAll(p string) error {
	if p == "/" {
		return nil
	}
	name := d.file(p)
	err := os.Mkdir(name, dirPerm)
	if errors.Is(err, fs.ErrNotExist) {
		if err := d.mkdirAll(path.Dir(p)); err != nil {
			return err
		}
		err = os.Mkdir(name, dirPerm)
	}
	if errors.Is(err, fs.ErrExist) {
		return nil // a file in the way shows up in the rename that follows
	}
	if err != nil {
		return err
	}
	d.dirs.make(name)
	return nil
}

// syncDir fsyncs directory name, making the entries added to or removed
// from it durable.
func syncDir(name string) error {
	f, err := openDir(name)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// prune removes the directory at storage path p and then its parents while
// they are empty, so that directories stay implicit as storage.Driver
// promises. It stops below the root, at the first directory that is not
// empty, and at anything that is not a directory (a symbolic link
// included). A directory that a concurrent writer just created may be
// removed too; rename retries then.
func (d *Driver) prune(p string) {
	for p != "/" && rmdir(d.file(p)) == nil {
		d.dirs.removed(d.file(p), false)
		p = path.Dir(p)
	}
}

// writer is a storage.FileWriter writing a temporary file tmp that becomes
// name when the writer finishes, or, for an append writer (tmp == ""),
// writing name in place.
type writer struct {
	d       *Driver
	path    string // storage path
	name    string
	tmp     string
	f       *os.File
	size    int64
	started int64 // the content before this offset is written back or being written back
	synced  int64 // the content before this offset is synced or being synced in the background
	syncer  *syncer
	closed  bool
	lazy    bool // storage.WithLazySync: no writeback or sync before the end
	nosync  bool // storage.WithoutSync: no sync at the end either
}

// Write writes b straight to the file; there is no buffering to flush.
// Each time a multiple of writebackChunk bytes is reached, it starts the
// writeback of the chunks completed since the last time; once syncChunk
// more bytes are on their way to disk, it has them synced in the
// background.
func (w *writer) Write(b []byte) (int, error) {
	if w.closed {
		return 0, w.errClosed()
	}
	n, err := w.f.Write(b)
	w.size += int64(n)
	if end := w.size &^ (writebackChunk - 1); !w.lazy && end > w.started {
		startWriteback(w.f, w.started, end-w.started)
		w.started = end
		if w.started-w.synced >= syncChunk {
			if w.syncer == nil {
				w.syncer = startSyncer(w.f)
			}
			if w.syncer.request() {
				w.synced = w.started
			}
		}
	}
	if err != nil {
		return n, fmt.Errorf("filesystem: %w", err)
	}
	return n, nil
}

// Size is the size of the content written so far.
func (w *writer) Size() int64 { return w.size }

// Commit fsyncs the content and, for a non-append writer, renames it into
// place and fsyncs the directory.
func (w *writer) Commit(ctx context.Context) error {
	if w.closed {
		return w.errClosed()
	}
	w.closed = true
	if err := ctx.Err(); err != nil {
		w.abandon()
		return err
	}
	return w.finish()
}

// Close does what Commit does: the content is durable and in place.
func (w *writer) Close() error {
	if w.closed {
		return w.errClosed()
	}
	w.closed = true
	return w.finish()
}

// Cancel removes the temporary file of a non-append writer, or the file an
// append writer continued.
func (w *writer) Cancel(ctx context.Context) error {
	if w.closed {
		return w.errClosed()
	}
	w.closed = true
	w.abandon()
	if err := ctx.Err(); err != nil {
		return err
	}
	if w.tmp != "" {
		return nil
	}
	if err := os.Remove(w.name); err != nil && !isNotFound(err) {
		return fmt.Errorf("filesystem: %w", err)
	}
	w.d.prune(path.Dir(w.path))
	return nil
}

// finish makes the content durable and puts it in place.
func (w *writer) finish() error {
	err := w.stopSyncer()
	if !w.nosync {
		if serr := w.f.Sync(); err == nil {
			err = serr
		}
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err == nil && w.tmp != "" {
		err = w.d.rename(w.tmp, w.path, !w.nosync)
	}
	if err != nil {
		if w.tmp != "" {
			_ = os.Remove(w.tmp)
		}
		return fmt.Errorf("filesystem: %s: %w", w.path, err)
	}
	return nil
}

// abandon closes the file and removes the temporary file, if any.
func (w *writer) abandon() {
	_ = w.stopSyncer()
	_ = w.f.Close()
	if w.tmp != "" {
		_ = os.Remove(w.tmp)
	}
}

// stopSyncer waits for the background sync under way, if any, and returns
// the first error a background sync met.
func (w *writer) stopSyncer() error {
	if w.syncer == nil {
		return nil
	}
	return w.syncer.stop()
}

// syncer syncs a writer's file in the background, on request: the file's
// data reaches the disk, and the disk's volatile write cache is flushed,
// while the writer goes on writing, so that the sync ending the writer has
// only the last part left. At most one sync runs at a time and at most one
// more waits; a request made while one waits is dropped (the waiting sync
// covers it).
//
// A failed sync reports a write error once per open file (Linux: errseq),
// so a later sync on the same file would not see it again: the syncer
// keeps the first error for the writer to return.
type syncer struct {
	f    *os.File
	reqs chan struct{}
	done chan struct{}
	err  error // read after done is closed
}

func startSyncer(f *os.File) *syncer {
	s := &syncer{f: f, reqs: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for range s.reqs {
			if err := syncData(s.f); err != nil && s.err == nil {
				s.err = err
			}
		}
	}()
	return s
}

// request asks for a sync and reports whether one will start after it.
func (s *syncer) request() bool {
	select {
	case s.reqs <- struct{}{}:
		return true
	default:
		return false
	}
}

// stop waits for the pending syncs and ends the syncer; it returns the
// first error they met.
func (s *syncer) stop() error {
	close(s.reqs)
	<-s.done
	return s.err
}

func (w *writer) errClosed() error {
	return fmt.Errorf("%w: %s", storage.ErrClosed, w.path)
}

// fileInfo converts fi, describing storage path p, to a storage.FileInfo.
func fileInfo(p string, fi fs.FileInfo) storage.FileInfo {
	info := storage.FileInfo{Path: p, ModTime: fi.ModTime(), IsDir: fi.IsDir()}
	if !info.IsDir {
		info.Size = fi.Size()
	}
	return info
}

// join returns the storage path of the child name of directory p.
func join(p, name string) string {
	if p == "/" {
		return "/" + name
	}
	return p + "/" + name
}

// isNotFound reports whether err from the file system means that nothing is
// at a path: it, or one of its parents, is missing, or a parent is a file.
func isNotFound(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

func notFound(p string) error {
	return fmt.Errorf("%w: %s", storage.ErrNotFound, p)
}

// pathError turns err from the file system, met at storage path p, into
// the error to return: storage.ErrNotFound where it means nothing is there.
func pathError(p string, err error) error {
	if isNotFound(err) {
		return notFound(p)
	}
	return fmt.Errorf("filesystem: %w", err)
}

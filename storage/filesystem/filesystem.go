package filesystem

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
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
// place. Directories are created as content needs them and removed when
// Delete or Move leaves them empty; the root is never removed.
//
// All access goes through an os.Root, so no path, and no symbolic link that
// someone else placed under root, reaches outside root. The driver itself
// never creates symbolic links; Reader and Stat follow those that stay inside
// root, while List and Walk report only regular files and directories.
// A file system mounted below root (other than root itself) breaks the
// rename from .berth-tmp and is not supported.
type Driver struct {
	root *os.Root
}

var _ storage.Driver = (*Driver)(nil)

// New returns a Driver storing content under the directory root, creating it
// if needed. It removes temporary files that a crashed process left in
// <root>/.berth-tmp more than an hour ago. Release the driver with Close.
func New(root string) (*Driver, error) {
	if err := os.MkdirAll(root, dirPerm); err != nil {
		return nil, fmt.Errorf("filesystem: %w", err)
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, fmt.Errorf("filesystem: %w", err)
	}
	d := &Driver{root: r}
	if err := d.removeStaleTemps(time.Now().Add(-staleTempAge)); err != nil {
		r.Close()
		return nil, err
	}
	return d, nil
}

// Close releases the driver's handle on the root directory. The driver must
// not be used afterwards.
func (d *Driver) Close() error {
	return d.root.Close()
}

// removeStaleTemps creates the temporary directory if it is missing and
// removes the files in it last modified before cutoff.
func (d *Driver) removeStaleTemps(cutoff time.Time) error {
	if err := d.root.Mkdir(tmpDir, dirPerm); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("filesystem: %w", err)
	}
	f, err := d.root.Open(tmpDir)
	if err != nil {
		return fmt.Errorf("filesystem: %w", err)
	}
	defer f.Close()
	entries, err := f.ReadDir(-1)
	if err != nil {
		return fmt.Errorf("filesystem: %w", err)
	}
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.ModTime().Before(cutoff) {
			_ = d.root.RemoveAll(filepath.Join(tmpDir, e.Name())) // best effort: a leftover is harmless
		}
	}
	return nil
}

// name validates the storage path p and returns the name of its file
// relative to the root ("." for "/").
func (d *Driver) name(p string) (string, error) {
	if err := storage.ValidatePath(p); err != nil {
		return "", err
	}
	if p == "/" {
		return ".", nil
	}
	if first, _, _ := strings.Cut(p[1:], "/"); first == tmpDir {
		return "", fmt.Errorf("%w %q: /%s is reserved for the filesystem driver's temporary files",
			storage.ErrInvalidPath, p, tmpDir)
	}
	return filepath.FromSlash(p[1:]), nil
}

// fileName is name for the methods that change content, which cannot act
// on the root directory itself.
func (d *Driver) fileName(p string) (string, error) {
	if p == "/" {
		return "", fmt.Errorf("%w %q: the root is a directory", storage.ErrInvalidPath, p)
	}
	return d.name(p)
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
	f, err := d.root.Open(name)
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
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("filesystem: %w", err)
	}
	return f, nil
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
		f, err := d.root.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
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
		return &writer{d: d, path: p, name: name, f: f, size: fi.Size()}, nil
	}
	tmp, f, err := d.createTemp()
	if err != nil {
		return nil, err
	}
	return &writer{d: d, path: p, name: name, tmp: tmp, f: f}, nil
}

// createTemp creates a new temporary file in the temporary directory,
// recreating the directory if someone removed it.
func (d *Driver) createTemp() (string, *os.File, error) {
	name := filepath.Join(tmpDir, rand.Text())
	f, err := d.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, filePerm)
	if errors.Is(err, fs.ErrNotExist) {
		if err := d.root.Mkdir(tmpDir, dirPerm); err != nil && !errors.Is(err, fs.ErrExist) {
			return "", nil, fmt.Errorf("filesystem: %w", err)
		}
		f, err = d.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, filePerm)
	}
	if err != nil {
		return "", nil, fmt.Errorf("filesystem: %w", err)
	}
	return name, f, nil
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
	fi, err := d.root.Stat(name)
	if err != nil {
		return storage.FileInfo{}, pathError(p, err)
	}
	return fileInfo(p, fi), nil
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
	entries, err := d.readDir(name)
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
	entries, err := d.readDir(name)
	if err != nil {
		return pathError(p, err)
	}
	return d.walk(ctx, p, name, entries, fn)
}

// walk calls fn for entries, the contents of directory name (storage path
// p), and descends into the directories among them.
func (d *Driver) walk(ctx context.Context, p, name string, entries []fs.DirEntry, fn storage.WalkFunc) error {
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		fi, err := e.Info()
		if isNotFound(err) {
			continue // removed since the directory was read
		}
		if err != nil {
			return fmt.Errorf("filesystem: %w", err)
		}
		info := fileInfo(join(p, e.Name()), fi)
		err = fn(info)
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
		childName := filepath.Join(name, e.Name())
		children, err := d.readDir(childName)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("filesystem: %w", err)
		}
		if err := d.walk(ctx, info.Path, childName, children, fn); err != nil {
			return err
		}
	}
	return nil
}

// readDir returns the regular files and directories in directory name,
// sorted by name, leaving out the temporary directory. For a file it returns
// an error wrapping syscall.ENOTDIR.
func (d *Driver) readDir(name string) ([]fs.DirEntry, error) {
	f, err := d.root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	entries, err := f.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	entries = slices.DeleteFunc(entries, func(e fs.DirEntry) bool {
		return !e.Type().IsRegular() && !e.IsDir() || name == "." && e.Name() == tmpDir
	})
	slices.SortFunc(entries, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return entries, nil
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
	dstName, err := d.fileName(dst)
	if err != nil {
		return err
	}
	fi, err := d.root.Lstat(srcName)
	if err != nil {
		return pathError(src, err)
	}
	if !fi.Mode().IsRegular() {
		return notFound(src) // only files move
	}
	if err := d.rename(srcName, dstName); err != nil {
		if _, serr := d.root.Lstat(srcName); isNotFound(serr) {
			return notFound(src) // removed by someone else meanwhile
		}
		return fmt.Errorf("filesystem: %w", err)
	}
	d.prune(filepath.Dir(srcName))
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
	fi, err := d.root.Lstat(name)
	if err != nil {
		return pathError(p, err)
	}
	if fi.IsDir() {
		err = d.root.RemoveAll(name)
	} else {
		err = d.root.Remove(name)
	}
	if err != nil {
		return pathError(p, err)
	}
	d.prune(filepath.Dir(name))
	return nil
}

// rename moves oldname to newname, creating newname's parent directories
// as needed, and makes the result durable by syncing newname's directory.
func (d *Driver) rename(oldname, newname string) error {
	dir := filepath.Dir(newname)
	for attempt := 1; ; attempt++ {
		err := d.root.Rename(oldname, newname)
		if err == nil {
			break
		}
		// A missing directory is the common case for a new path; it may
		// also have been pruned by a concurrent Delete since we made it.
		if !errors.Is(err, fs.ErrNotExist) || attempt == renameAttempts {
			return err
		}
		if err := d.mkdirAll(dir); err != nil {
			return err
		}
	}
	return d.syncDir(dir)
}

// mkdirAll creates directory dir and its missing parents, syncing the
// parent of each directory it creates so that the new entries are durable.
func (d *Driver) mkdirAll(dir string) error {
	if dir == "." {
		return nil
	}
	err := d.root.Mkdir(dir, dirPerm)
	if errors.Is(err, fs.ErrNotExist) {
		if err := d.mkdirAll(filepath.Dir(dir)); err != nil {
			return err
		}
		err = d.root.Mkdir(dir, dirPerm)
	}
	if errors.Is(err, fs.ErrExist) {
		return nil // a file in the way shows up in the rename that follows
	}
	if err != nil {
		return err
	}
	return d.syncDir(filepath.Dir(dir))
}

// syncDir fsyncs directory dir, making the entries added to or removed from
// it durable.
func (d *Driver) syncDir(dir string) error {
	f, err := d.root.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// prune removes dir and then its parents while they are empty, so that
// directories stay implicit as storage.Driver promises. It stops below the
// root and at the first directory that is not empty. A directory that a
// concurrent writer just created may be removed too; rename retries then.
func (d *Driver) prune(dir string) {
	for dir != "." {
		// Remove deletes files too: make sure a directory is still there.
		// (A file could only appear at a directory's path if some caller
		// used one path both ways, which the registry layout never does.)
		fi, err := d.root.Lstat(dir)
		if err != nil || !fi.IsDir() {
			return
		}
		if err := d.root.Remove(dir); err != nil {
			return // not empty, most likely
		}
		dir = filepath.Dir(dir)
	}
}

// writer is a storage.FileWriter writing a temporary file tmp that becomes
// name when the writer finishes, or, for an append writer (tmp == ""),
// writing name in place.
type writer struct {
	d      *Driver
	path   string // storage path, for errors
	name   string
	tmp    string
	f      *os.File
	size   int64
	closed bool
}

// Write writes b straight to the file; there is no buffering to flush.
func (w *writer) Write(b []byte) (int, error) {
	if w.closed {
		return 0, w.errClosed()
	}
	n, err := w.f.Write(b)
	w.size += int64(n)
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
	if err := w.d.root.Remove(w.name); err != nil && !isNotFound(err) {
		return fmt.Errorf("filesystem: %w", err)
	}
	w.d.prune(filepath.Dir(w.name))
	return nil
}

// finish makes the content durable and puts it in place.
func (w *writer) finish() error {
	err := w.f.Sync()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err == nil && w.tmp != "" {
		err = w.d.rename(w.tmp, w.name)
	}
	if err != nil {
		if w.tmp != "" {
			_ = w.d.root.Remove(w.tmp)
		}
		return fmt.Errorf("filesystem: %s: %w", w.path, err)
	}
	return nil
}

// abandon closes the file and removes the temporary file, if any.
func (w *writer) abandon() {
	_ = w.f.Close()
	if w.tmp != "" {
		_ = w.d.root.Remove(w.tmp)
	}
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

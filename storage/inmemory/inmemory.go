package inmemory

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/berth-registry/berth/storage"
)

// Driver is a storage.Driver holding its content in a tree in memory.
// Stored content is never modified in place: a writer builds new content
// and swaps it in when it commits or closes, so an open reader keeps
// returning what it opened whatever is written later.
type Driver struct {
	mu   sync.RWMutex
	root *node // always a directory, never removed
}

var _ storage.Driver = (*Driver)(nil)

// node is a directory (children != nil) or a file.
type node struct {
	children map[string]*node
	data     []byte // a file's content; len == cap, never written to once stored
	modTime  time.Time
}

func newDir(now time.Time) *node {
	return &node{children: map[string]*node{}, modTime: now}
}

func (n *node) isDir() bool { return n.children != nil }

func (n *node) info(p string) storage.FileInfo {
	return storage.FileInfo{Path: p, Size: int64(len(n.data)), ModTime: n.modTime, IsDir: n.isDir()}
}

// New returns an empty Driver.
func New() *Driver {
	return &Driver{root: newDir(time.Now())}
}

// components splits a valid path other than "/" into its names.
func components(p string) []string {
	return strings.Split(p[1:], "/")
}

// lookup returns the node at valid path p, or nil. The caller holds d.mu.
func (d *Driver) lookup(p string) *node {
	n := d.root
	if p == "/" {
		return n
	}
	for _, name := range components(p) {
		if !n.isDir() {
			return nil
		}
		if n = n.children[name]; n == nil {
			return nil
		}
	}
	return n
}

// put stores data as the file at valid path p (not "/"), creating parent
// directories. It fails if a parent is a file or p is a directory. The
// caller holds d.mu for writing.
func (d *Driver) put(p string, data []byte) error {
	now := time.Now()
	names := components(p)
	dir := d.root
	for i, name := range names[:len(names)-1] {
		child := dir.children[name]
		if child == nil {
			child = newDir(now)
			dir.children[name] = child
			dir.modTime = now
		} else if !child.isDir() {
			return fmt.Errorf("inmemory: cannot store %s: /%s is a file", p, strings.Join(names[:i+1], "/"))
		}
		dir = child
	}
	leaf := names[len(names)-1]
	if old := dir.children[leaf]; old != nil && old.isDir() {
		return fmt.Errorf("inmemory: cannot store %s: it is a directory", p)
	}
	dir.children[leaf] = &node{data: data[:len(data):len(data)], modTime: now}
	dir.modTime = now
	return nil
}

// remove removes the node at valid path p (not "/") and then the
// directories this leaves empty, reporting whether there was a node. The
// caller holds d.mu for writing.
func (d *Driver) remove(p string) bool {
	names := components(p)
	dirs := []*node{d.root}
	for _, name := range names[:len(names)-1] {
		child := dirs[len(dirs)-1].children[name]
		if child == nil || !child.isDir() {
			return false
		}
		dirs = append(dirs, child)
	}
	now := time.Now()
	for i := len(dirs) - 1; i >= 0; i-- {
		dir := dirs[i]
		if _, ok := dir.children[names[i]]; !ok {
			return false
		}
		delete(dir.children, names[i])
		dir.modTime = now
		if len(dir.children) > 0 || i == 0 {
			break
		}
	}
	return true
}

// CreateExclusive stores b at p unless a file is there (storage.ErrExists).
func (d *Driver) CreateExclusive(ctx context.Context, p string, b []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkPath(p, true); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if n := d.lookup(p); n != nil && !n.isDir() {
		return fmt.Errorf("%w: %s", storage.ErrExists, p)
	}
	return d.put(p, bytes.Clone(b))
}

// checkPath validates p and, for the methods that change content, rejects
// the root directory.
func checkPath(p string, changes bool) error {
	if changes {
		return storage.ValidateChangePath(p)
	}
	return storage.ValidatePath(p)
}

// Reader returns a reader of the content at path as it is now.
func (d *Driver) Reader(ctx context.Context, p string, offset int64) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkPath(p, false); err != nil {
		return nil, err
	}
	d.mu.RLock()
	n := d.lookup(p)
	d.mu.RUnlock()
	if n == nil || n.isDir() {
		return nil, notFound(p)
	}
	if offset < 0 || offset > int64(len(n.data)) {
		return nil, fmt.Errorf("%w: %d for %s of %d bytes", storage.ErrInvalidOffset, offset, p, len(n.data))
	}
	return io.NopCloser(bytes.NewReader(n.data[offset:])), nil
}

// Writer returns a writer for path whose content is stored when it
// commits or closes.
func (d *Driver) Writer(ctx context.Context, p string, appending bool) (storage.FileWriter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkPath(p, true); err != nil {
		return nil, err
	}
	w := &writer{d: d, path: p, appending: appending}
	if appending {
		d.mu.RLock()
		n := d.lookup(p)
		d.mu.RUnlock()
		if n == nil || n.isDir() {
			return nil, notFound(p)
		}
		w.buf = n.data // cap == len: the first Write copies
		w.size = int64(len(n.data))
	}
	return w, nil
}

// Stat describes the file or directory at path.
func (d *Driver) Stat(ctx context.Context, p string) (storage.FileInfo, error) {
	if err := ctx.Err(); err != nil {
		return storage.FileInfo{}, err
	}
	if err := checkPath(p, false); err != nil {
		return storage.FileInfo{}, err
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	n := d.lookup(p)
	if n == nil {
		return storage.FileInfo{}, notFound(p)
	}
	return n.info(p), nil
}

// List returns the sorted paths of the directory's direct children.
func (d *Driver) List(ctx context.Context, p string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkPath(p, false); err != nil {
		return nil, err
	}
	entries, ok := d.entries(p)
	if !ok {
		return nil, notFound(p)
	}
	paths := make([]string, len(entries))
	for i, e := range entries {
		paths[i] = e.Path
	}
	return paths, nil
}

// entries describes the children of the directory at p, sorted by name,
// or reports false if no directory is there.
func (d *Driver) entries(p string) ([]storage.FileInfo, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	n := d.lookup(p)
	if n == nil || !n.isDir() {
		return nil, false
	}
	names := slices.Sorted(maps.Keys(n.children))
	infos := make([]storage.FileInfo, len(names))
	for i, name := range names {
		infos[i] = n.children[name].info(join(p, name))
	}
	return infos, true
}

// Walk visits everything below path depth first, in lexical order. It holds
// no lock while fn runs, so fn may call the driver.
func (d *Driver) Walk(ctx context.Context, p string, fn storage.WalkFunc) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkPath(p, false); err != nil {
		return err
	}
	entries, ok := d.entries(p)
	if !ok {
		return notFound(p)
	}
	return d.walk(ctx, entries, fn)
}

func (d *Driver) walk(ctx context.Context, entries []storage.FileInfo, fn storage.WalkFunc) error {
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := fn(e)
		if errors.Is(err, storage.SkipDir) {
			if e.IsDir {
				continue
			}
			return nil // the rest of this directory
		}
		if err != nil {
			return err
		}
		if !e.IsDir {
			continue
		}
		children, ok := d.entries(e.Path)
		if !ok {
			continue // removed meanwhile
		}
		if err := d.walk(ctx, children, fn); err != nil {
			return err
		}
	}
	return nil
}

// Move renames the file at src to dst.
func (d *Driver) Move(ctx context.Context, src, dst string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkPath(src, true); err != nil {
		return err
	}
	if err := checkPath(dst, true); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	n := d.lookup(src)
	if n == nil || n.isDir() {
		return notFound(src)
	}
	if src == dst {
		return nil
	}
	if err := d.put(dst, n.data); err != nil {
		return err
	}
	// A rename keeps the file's modification time, as on a file system:
	// garbage collection moves blobs aside and reads their age after.
	d.lookup(dst).modTime = n.modTime
	d.remove(src)
	return nil
}

// Delete removes the file or directory tree at path.
func (d *Driver) Delete(ctx context.Context, p string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkPath(p, true); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.remove(p) {
		return notFound(p)
	}
	return nil
}

// writer is a storage.FileWriter collecting content in buf.
type writer struct {
	d         *Driver
	path      string
	appending bool
	buf       []byte // dropped when the writer ends
	size      int64  // kept when it ends
	closed    bool
}

// Write appends b to the content.
func (w *writer) Write(b []byte) (int, error) {
	if w.closed {
		return 0, w.errClosed()
	}
	w.buf = append(w.buf, b...)
	w.size = int64(len(w.buf))
	return len(b), nil
}

// Size is the size of the content written so far.
func (w *writer) Size() int64 { return w.size }

// Commit stores the content at the writer's path.
func (w *writer) Commit(ctx context.Context) error {
	if w.closed {
		return w.errClosed()
	}
	w.closed = true
	if err := ctx.Err(); err != nil {
		w.buf = nil
		return err
	}
	return w.store()
}

// Close stores the content, as Commit does.
func (w *writer) Close() error {
	if w.closed {
		return w.errClosed()
	}
	w.closed = true
	return w.store()
}

// Cancel drops the content; an append writer also removes the stored
// content it continued.
func (w *writer) Cancel(ctx context.Context) error {
	if w.closed {
		return w.errClosed()
	}
	w.closed = true
	w.buf = nil
	if err := ctx.Err(); err != nil {
		return err
	}
	if w.appending {
		w.d.mu.Lock()
		if n := w.d.lookup(w.path); n != nil && !n.isDir() {
			w.d.remove(w.path)
		}
		w.d.mu.Unlock()
	}
	return nil
}

func (w *writer) store() error {
	w.d.mu.Lock()
	defer w.d.mu.Unlock()
	err := w.d.put(w.path, w.buf)
	w.buf = nil
	return err
}

func (w *writer) errClosed() error {
	return fmt.Errorf("%w: %s", storage.ErrClosed, w.path)
}

// join returns the path of the child name of directory p.
func join(p, name string) string {
	if p == "/" {
		return "/" + name
	}
	return p + "/" + name
}

func notFound(p string) error {
	return fmt.Errorf("%w: %s", storage.ErrNotFound, p)
}

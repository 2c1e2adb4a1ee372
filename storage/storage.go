package storage

import (
	"context"
	"errors"
	"io"
	"syscall"
	"time"
)

// Errors every driver returns, wrapped with %w and tested with errors.Is.
var (
	// ErrNotFound: nothing is stored at the path.
	ErrNotFound = errors.New("storage: path not found")
	// ErrInvalidPath: the path fails ValidatePath (not absolute, not clean,
	// or holds something a driver cannot store: "..", an empty component, a
	// NUL byte), is "/" where a file is meant, or is a name the driver
	// reserves for itself.
	ErrInvalidPath = errors.New("storage: invalid path")
	// ErrInvalidOffset: a read offset is negative or beyond the end of the content.
	ErrInvalidOffset = errors.New("storage: invalid offset")
	// ErrClosed: the writer was already committed, cancelled or closed.
	ErrClosed = errors.New("storage: writer already closed")
	// ErrFull: the storage has no room for what was written (a full
	// filesystem, a quota, a bucket that refuses writes for space). Test
	// for it with IsFull, which also knows the operating system's errors.
	ErrFull = errors.New("storage: no space left")
)

// IsFull reports whether err means that the storage is out of space:
// ErrFull, or ENOSPC or EDQUOT from the operating system (which a driver
// on a filesystem may pass on as they are).
func IsFull(err error) bool {
	return err != nil && (errors.Is(err, ErrFull) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT))
}

// SkipDir returned by a WalkFunc for a directory skips that directory's
// contents; it is not an error for Walk.
var SkipDir = errors.New("storage: skip this directory")

// Driver stores byte content under slash-separated absolute paths
// ("/docker/registry/v2/..."). Directories are implicit: a directory exists
// while it holds content, and one that Delete, Move or Cancel leaves empty is
// gone. The root "/" is always a directory: Stat, List and Walk accept it even
// on an empty driver, while Writer, Move and Delete reject it with
// ErrInvalidPath. Every method checks its paths with ValidatePath.
//
// Every method honours ctx for cancellation: one called with a done ctx
// returns ctx's error (errors.Is(err, context.Canceled) holds).
//
// Implementations must be safe for concurrent use. A driver never buffers a
// whole file in memory on the read or write path except the in-memory driver,
// whose memory is its storage.
type Driver interface {
	// Reader opens the content at path for reading from offset. Reading an
	// offset equal to the size yields an empty reader. A reader keeps
	// returning the content it opened when a non-append writer replaces it.
	// It returns ErrNotFound if path holds no file (a directory is not a
	// file) and ErrInvalidOffset if offset is negative or past the end. For
	// the filesystem driver the reader is an *os.File, so that copying it to
	// a network connection uses sendfile.
	Reader(ctx context.Context, path string, offset int64) (io.ReadCloser, error)

	// Writer returns a writer for path. With append false it starts new,
	// empty content (what path held before is replaced when the writer is
	// closed or committed). With append true it continues content that an
	// earlier writer for path left by Close, and returns ErrNotFound if
	// there is none.
	Writer(ctx context.Context, path string, append bool) (FileWriter, error)

	// Stat describes the file or directory at path, or returns ErrNotFound.
	Stat(ctx context.Context, path string) (FileInfo, error)

	// List returns the absolute paths of the direct children of the
	// directory at path, sorted. It returns ErrNotFound if no directory is
	// at path (nothing, or a file); "/" on an empty driver returns an empty
	// list, not an error.
	List(ctx context.Context, path string) ([]string, error)

	// Walk calls fn for every file and directory below path (not for path
	// itself) in lexical order as io/fs.WalkDir means it: depth first, the
	// entries of each directory sorted by name (byte order), a directory
	// just before its contents. So "/a/x" comes before "/a-b" although it
	// sorts after it as a string. If fn returns SkipDir for a directory,
	// its contents are skipped; for a file, the rest of that file's
	// directory is skipped. Any other error stops the walk and is returned
	// as it is. Walking a path where no directory is (nothing, or a file)
	// returns ErrNotFound; walking "/" on an empty driver calls nothing and
	// returns nil. fn may call the driver.
	Walk(ctx context.Context, path string, fn WalkFunc) error

	// Move renames the file at src to dst, creating dst's parents and
	// replacing dst atomically where the backend allows (readers see the old
	// or the new content, never a mix). It returns ErrNotFound if no file is
	// at src: directories cannot be moved.
	Move(ctx context.Context, src, dst string) error

	// Delete removes the file or the whole directory tree at path. It
	// returns ErrNotFound if path holds nothing. Deleting "/a" never
	// touches "/ab".
	Delete(ctx context.Context, path string) error
}

// WalkFunc is called by Driver.Walk for each entry.
type WalkFunc func(FileInfo) error

// FileWriter appends to the content of one path. It ends in exactly one of
// Commit, Cancel or Close; calls after that return ErrClosed. Commit and
// Cancel end the writer even when they fail, ctx done included. A
// FileWriter is not safe for concurrent use.
type FileWriter interface {
	io.Writer

	// Size is the number of bytes of the content so far, including what an
	// appended-to writer started with. It keeps its value after the writer
	// ends.
	Size() int64

	// Commit makes everything written durable and readable at path as a
	// whole (atomically: readers see the old content or all of the new).
	// That holds for non-append writers: an append writer may write in
	// place, so some of its bytes may be visible before Commit. If Commit
	// fails, a non-append writer publishes nothing and path keeps what it
	// held.
	Commit(ctx context.Context) error

	// Cancel discards what the writer wrote. An append writer also discards
	// the content it continued (what earlier writers left by Close), so that
	// nothing is left at path; a non-append writer leaves path holding what
	// it held before. With a done ctx, Cancel still releases the writer and
	// what it wrote, but may leave an append writer's path in place.
	Cancel(ctx context.Context) error

	// Close keeps what was written so that a later Writer(path, true)
	// continues it. Content left by Close is durable but only guaranteed
	// readable through Reader after a Commit. Until then it is a file all
	// the same for Stat (with the size written so far: an upload's offset
	// is read so), List, Walk and Delete.
	Close() error
}

// FileInfo describes a stored file or directory.
type FileInfo struct {
	Path    string    // absolute path
	Size    int64     // bytes; 0 for directories
	ModTime time.Time // last modification, where the backend records it
	IsDir   bool
}

// Redirector is an optional driver ability: a URL from which a client can
// fetch the content at path directly (a presigned S3 URL). Wrappers of a
// Driver must forward it. It returns ErrUnsupported-wrapped errors when no
// URL can be given for path, and the caller then serves the bytes itself.
type Redirector interface {
	RedirectURL(ctx context.Context, method, path string) (string, error)
}

// UploadJanitor is an optional driver ability: removing what unfinished
// writers left that the backend keeps outside the visible tree (S3
// multipart uploads and their bookkeeping), which Walk never shows and so
// deleting paths cannot reach. Wrappers of a Driver must forward it.
// AbortStaleUploads removes such leftovers begun or last touched more than
// olderThan ago and returns how many it removed; a writer still running
// after olderThan loses its content, so olderThan must be far longer than
// any upload takes. It is idempotent and safe to run from several
// processes at once.
type UploadJanitor interface {
	AbortStaleUploads(ctx context.Context, olderThan time.Duration) (int, error)
}

// lazySyncKey is the context key of WithLazySync.
type lazySyncKey struct{}

// WithLazySync returns ctx marked so that the writers a driver opens with
// it need not push their bytes towards the disk as they arrive (the
// filesystem driver otherwise starts writeback every few MiB, so that the
// sync ending a writer is short): nobody waits for their Commit but the
// writer itself, as when a pull-through cache stores a blob its client has
// already received. Commit stays as durable; only when the disk work
// happens changes. Drivers may ignore the mark.
func WithLazySync(ctx context.Context) context.Context {
	return context.WithValue(ctx, lazySyncKey{}, true)
}

// noSyncKey is the context key of WithoutSync.
type noSyncKey struct{}

// WithoutSync returns ctx marked so that what the writers a driver opens
// with it write need not survive a crash of the machine: state the
// caller can rebuild or do without (an upload's bookkeeping, a garbage
// collection lease, which only processes running at the same time read).
// Once Commit returns the content is in place for every process, as
// always; the filesystem driver skips the file's fsync and that of the
// directory it is renamed into (a directory it creates is still made
// durable, since durable content may later be written below it). Drivers
// may ignore the mark.
func WithoutSync(ctx context.Context) context.Context {
	return context.WithValue(ctx, noSyncKey{}, true)
}

// NoSync reports whether ctx carries WithoutSync's mark.
func NoSync(ctx context.Context) bool {
	v, _ := ctx.Value(noSyncKey{}).(bool)
	return v
}

// LazySync reports whether ctx carries WithLazySync's mark.
func LazySync(ctx context.Context) bool {
	v, _ := ctx.Value(lazySyncKey{}).(bool)
	return v
}

// ErrExists: CreateExclusive found a file at the path already.
var ErrExists = errors.New("storage: a file is at the path already")

// ExclusiveCreator is an optional driver ability: writing a small file only
// if no file is at its path, as one atomic step, so that of callers racing
// to create the same path exactly one succeeds and the others get an error
// wrapping ErrExists (a claim that one process of several takes). Wrappers
// of a Driver must forward it. It is meant for short-lived state: the
// content is readable when it returns nil, but a crash of the machine may
// lose it.
type ExclusiveCreator interface {
	CreateExclusive(ctx context.Context, path string, b []byte) error
}

// ErrUnsupported: the driver cannot do what was asked (for example, give a
// redirect URL); the caller falls back to a way every driver supports.
var ErrUnsupported = errors.New("storage: operation not supported by this driver")

// SmallReader is an optional driver ability: reading the whole content of
// a small file (a link, a manifest) in fewer steps than through Reader; the
// filesystem driver needs no stat and no *os.File. Wrappers of a Driver must
// forward it. ReadSmall returns what ReadAll over Reader would: the content,
// or an error wrapping ErrNotFound when no file is at path (nothing, or a
// directory).
type SmallReader interface {
	ReadSmall(ctx context.Context, path string) ([]byte, error)
}

// Versioner is an optional driver ability: a version of the file at a path,
// cheaper to get than its content, that changes whenever the file is
// replaced or rewritten, so that a caller can keep what it read of a small
// file and check it with one call (the filesystem driver: one stat).
// Wrappers of a Driver must forward it.
//
// Both methods return an error wrapping ErrNotFound when no file is at path,
// and one wrapping ErrUnsupported when the driver cannot version it (the
// caller then reads it as any other file).
type Versioner interface {
	// ReadVersion reads the whole small file at path, as ReadAll does, and
	// returns its content with the version of that content.
	ReadVersion(ctx context.Context, path string) ([]byte, Version, error)
	// Version returns the version of the file at path now.
	Version(ctx context.Context, path string) (Version, error)
}

// Version is what a Versioner knows of one state of a file; two states with
// the same Version hold the same content. The zero Version is never
// returned. The fields mean what the driver says (the filesystem driver:
// device, inode, size, modification and change times).
type Version [5]int64

// ReadAll reads the whole content at path, through the driver's ReadSmall
// where it has one. Meant for small files (links, manifests) only; blobs
// are streamed with Reader.
func ReadAll(ctx context.Context, d Driver, path string) ([]byte, error) {
	if sr, ok := d.(SmallReader); ok {
		return sr.ReadSmall(ctx, path)
	}
	r, err := d.Reader(ctx, path, 0)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// WriteAll atomically replaces the content at path with b and makes it
// durable. Meant for small files (links, manifests).
func WriteAll(ctx context.Context, d Driver, path string, b []byte) error {
	w, err := d.Writer(ctx, path, false)
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		_ = w.Cancel(ctx)
		return err
	}
	return w.Commit(ctx)
}

// SpaceReporter is an optional interface of a driver whose storage has a
// size it can tell: FreeBytes is how many more bytes it can store now (a
// filesystem's free blocks). A driver without one (S3) has no known bound.
type SpaceReporter interface {
	FreeBytes(ctx context.Context) (int64, error)
}

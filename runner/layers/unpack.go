package layers

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// Media types of Docker image layers (Docker image manifest v2 schema 2).
const (
	// MediaTypeDockerLayer is a gzip-compressed Docker layer.
	MediaTypeDockerLayer = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	// MediaTypeDockerLayerTar is an uncompressed Docker layer, as some
	// tools write it.
	MediaTypeDockerLayerTar = "application/vnd.docker.image.rootfs.diff.tar"
	// MediaTypeDockerForeignLayer is a Docker foreign layer (a Windows
	// base layer fetched from elsewhere): refused.
	MediaTypeDockerForeignLayer = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)

// Defaults for a zero Limits field.
const (
	// DefaultMaxBytes caps a layer's uncompressed size: 64 GiB.
	DefaultMaxBytes int64 = 64 << 30
	// DefaultMaxEntries caps a layer's tar entries.
	DefaultMaxEntries = 1 << 20
	// DefaultParallel is how many layers UnpackAll unpacks at once.
	DefaultParallel = 3
)

// Limits bound what one layer may expand to; a layer over a limit fails
// with ErrTooLarge and leaves nothing behind. The compressed size is the
// pull client's to bound (VerifyReader does, given the descriptor's size).
type Limits struct {
	// MaxBytes caps the uncompressed tar stream and, separately, the
	// total size of the regular files written (a sparse entry can
	// expand past the bytes that carry it). Zero means DefaultMaxBytes.
	MaxBytes int64
	// MaxEntries caps the number of tar entries. Zero means
	// DefaultMaxEntries.
	MaxEntries int
}

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = DefaultMaxEntries
	}
	return l
}

// CheckMediaType returns nil if Unpack takes layers of mediaType: OCI
// layers (tar, tar+gzip, tar+zstd) and Docker layers (tar.gzip, tar).
// Foreign and non-distributable layers, and anything else, fail with
// ErrUnsupportedMediaType.
func CheckMediaType(mediaType string) error {
	switch mediaType {
	case v1.MediaTypeImageLayer, v1.MediaTypeImageLayerGzip, v1.MediaTypeImageLayerZstd,
		MediaTypeDockerLayer, MediaTypeDockerLayerTar:
		return nil
	case MediaTypeDockerForeignLayer,
		"application/vnd.oci.image.layer.nondistributable.v1.tar",
		"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
		"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd":
		return fmt.Errorf("%w: %s is a foreign (non-distributable) layer", ErrUnsupportedMediaType, mediaType)
	}
	return fmt.Errorf("%w: %q", ErrUnsupportedMediaType, mediaType)
}

// flight is one in-process unpack of a diff_id that other callers of
// Unpack for the same diff_id wait on.
type flight struct {
	done  chan struct{}
	layer Layer
	err   error
}

// Unpack reads a layer blob from r (compressed or not, as mediaType and
// the stream's first bytes say), verifies that its uncompressed stream
// hashes to diffID, and stores it unpacked. It returns the stored layer.
//
// If the layer is already stored, Unpack returns it without reading r.
// Concurrent calls for one diff_id unpack it once: the first reads its r,
// the others wait and return its result without reading theirs (if the
// first fails, a waiter tries again with its own r). Across processes
// sharing the root, the first to finish wins the atomic rename and the
// others' work is discarded. Unpack never closes r.
//
// Errors wrap ErrUnsupportedMediaType, ErrDigestMismatch, ErrUnsafeEntry,
// ErrTooLarge, ErrInvalid, the context's error, or r's own error (such as
// a VerifyReader's ErrDigestMismatch); on any error nothing of the layer
// remains.
func (s *Store) Unpack(ctx context.Context, r io.Reader, mediaType string, diffID digest.Digest, limits Limits) (Layer, error) {
	if err := CheckMediaType(mediaType); err != nil {
		return Layer{}, err
	}
	if err := checkDiffID(diffID); err != nil {
		return Layer{}, err
	}
	limits = limits.withDefaults()
	for {
		l, err := s.Get(diffID)
		if err == nil {
			return l, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return Layer{}, err
		}
		s.mu.Lock()
		f, busy := s.flights[diffID]
		if !busy {
			f = &flight{done: make(chan struct{})}
			s.flights[diffID] = f
		}
		s.mu.Unlock()
		if busy {
			select {
			case <-f.done:
			case <-ctx.Done():
				return Layer{}, ctx.Err()
			}
			if f.err == nil {
				return f.layer, nil
			}
			continue
		}
		// A flight that ended between the Get above and taking the lock
		// has stored the layer: do not read r for it.
		if l, err := s.Get(diffID); err == nil {
			f.layer, f.err = l, nil
		} else {
			f.layer, f.err = s.unpack(ctx, r, diffID, limits)
		}
		s.mu.Lock()
		delete(s.flights, diffID)
		s.mu.Unlock()
		close(f.done)
		return f.layer, f.err
	}
}

// Add unpacks a layer whose diff_id is not known beforehand (one made
// here: a container's changes being committed, a tar being imported) from
// r, compressed or not, and stores it under the sha256 digest of its
// uncompressed stream, which it computes while it reads. It reads r to its
// end, so a caller can tee r into the blob it stores beside the layer.
// Extraction follows the same rules as Unpack's, and any error (errors
// wrap ErrUnsafeEntry, ErrTooLarge, ErrUnsupportedMediaType, the
// context's or r's own) leaves nothing of the layer. A layer already
// stored under the digest is kept and returned.
func (s *Store) Add(ctx context.Context, r io.Reader, limits Limits) (Layer, error) {
	return s.unpack(ctx, r, "", limits.withDefaults())
}

// unpack does Unpack's work in a fresh slot and moves the result into
// place. With diffID "" (Add), the diff_id is the stream's sha256.
func (s *Store) unpack(ctx context.Context, r io.Reader, diffID digest.Digest, limits Limits) (Layer, error) {
	fail := func(err error) (Layer, error) {
		if diffID == "" {
			return Layer{}, fmt.Errorf("layers: unpacking a new layer: %w", err)
		}
		return Layer{}, fmt.Errorf("layers: unpacking %s: %w", diffID, err)
	}
	alg := digest.Canonical
	if diffID != "" {
		alg = diffID.Algorithm()
	}
	sl, err := s.reserve()
	if err != nil {
		return Layer{}, err
	}
	defer sl.release()
	tree := filepath.Join(sl.dir, fsDir)
	if err := os.Mkdir(sl.dir, 0o700); err != nil {
		return fail(err)
	}
	if err := os.Mkdir(tree, 0o755); err != nil {
		return fail(err)
	}
	if err := os.Chmod(tree, 0o755); err != nil { // whatever the umask
		return fail(err)
	}
	rootfd, err := unix.Open(tree, dirOpenFlags, 0)
	if err != nil {
		return fail(pathError("opening", tree, err))
	}
	defer unix.Close(rootfd)

	br := bufio.NewReaderSize(r, 64<<10)
	dr, closeDecoder, err := decompressor(br)
	if err != nil {
		return fail(err)
	}
	defer closeDecoder()
	m := &meter{ctx: ctx, r: dr, h: alg.Hash(), max: limits.MaxBytes}
	x := &extractor{root: rootfd, res: s.res, limits: limits, buf: make([]byte, 256<<10)}
	if err := x.extract(ctx, tar.NewReader(m)); err != nil {
		return fail(err)
	}
	// The diff_id covers the whole uncompressed stream, the padding after
	// the end-of-archive blocks included; the compressed stream is read to
	// its end too, so a VerifyReader under r reaches its check.
	if _, err := io.Copy(io.Discard, m); err != nil {
		return fail(err)
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return fail(err)
	}
	got := digest.NewDigest(alg, m.h)
	if diffID != "" && got != diffID {
		return fail(fmt.Errorf("%w: uncompressed stream is %s", ErrDigestMismatch, got))
	}
	diffID = got

	l, err := s.place(sl, rootfd, Layer{DiffID: diffID, Size: m.n, Entries: x.entries, Skipped: x.skipped, Complete: true})
	if err != nil {
		return fail(err)
	}
	return l, nil
}

// place finishes a layer filled in the slot sl (its tree open as rootfd):
// it syncs the filesystem, writes the metadata l last and renames the slot
// into place. A layer another process stored first under the same diff_id
// is kept, and returned.
func (s *Store) place(sl *slot, rootfd int, l Layer) (Layer, error) {
	if err := unix.Syncfs(rootfd); err != nil {
		return Layer{}, fmt.Errorf("syncfs: %w", err)
	}
	if err := writeMeta(filepath.Join(sl.dir, metaFile), l); err != nil {
		return Layer{}, err
	}
	dst := s.layerDir(l.DiffID)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return Layer{}, err
	}
	err := os.Rename(sl.dir, dst)
	if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) {
		// Another process stored it first: theirs is as good as ours.
		if l, gerr := s.Get(l.DiffID); gerr == nil {
			return l, nil
		}
		// Or a layer directory lost its metadata: replace it.
		if rerr := s.Remove(l.DiffID); rerr == nil {
			err = os.Rename(sl.dir, dst)
		}
	}
	if err != nil {
		return Layer{}, err
	}
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return Layer{}, err
	}
	l.Dir = filepath.Join(dst, fsDir)
	return l, nil
}

// Decompress returns the uncompressed stream of r, a tar stream that is
// gzip- or zstd-compressed or plain (the first bytes say which, as in
// Unpack); release frees the decoder and does not close r. xz and bzip2
// fail with ErrUnsupportedMediaType.
func Decompress(r io.Reader) (plain io.Reader, release func(), err error) {
	return decompressor(bufio.NewReaderSize(r, 64<<10))
}

// decompressor picks the decompressor by the stream's magic bytes: gzip,
// zstd or none. The media type (already checked) says whether the layer is
// acceptable; the bytes say how it is compressed, since Docker's gzip
// media type is known to carry zstd.
func decompressor(br *bufio.Reader) (io.Reader, func(), error) {
	magic, err := br.Peek(6)
	if err != nil && err != io.EOF {
		return nil, nil, fmt.Errorf("reading layer: %w", err)
	}
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, func() { zr.Close() }, nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		// One decoder goroutine: parallelism comes from unpacking
		// several layers at once.
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nil, fmt.Errorf("zstd: %w", err)
		}
		return zr, zr.Close, nil
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}),
		bytes.HasPrefix(magic, []byte("BZh")):
		return nil, nil, fmt.Errorf("%w: xz or bzip2 compression", ErrUnsupportedMediaType)
	}
	return br, func() {}, nil
}

// meter hashes and counts the uncompressed stream, enforces the byte
// limit, and stops on cancellation.
type meter struct {
	ctx context.Context
	r   io.Reader
	h   hash.Hash
	n   int64
	max int64
}

func (m *meter) Read(p []byte) (int, error) {
	if err := m.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := m.r.Read(p)
	m.h.Write(p[:n])
	m.n += int64(n)
	if m.n > m.max {
		return n, fmt.Errorf("%w: more than %d uncompressed bytes", ErrTooLarge, m.max)
	}
	return n, err
}

// writeMeta writes the layer's metadata file and syncs it.
func writeMeta(name string, l Layer) error {
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// syncDir fsyncs a directory, making a rename into it durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// Source is one layer for UnpackAll: Unpack's arguments, with the blob
// opened only if the layer is not stored yet.
type Source struct {
	// DiffID is the layer's diff_id from the image config.
	DiffID digest.Digest
	// MediaType is the layer descriptor's media type.
	MediaType string
	// Open returns the blob. UnpackAll closes it.
	Open func(ctx context.Context) (io.ReadCloser, error)
}

// UnpackAll unpacks the layers of srcs, at most parallel at once
// (DefaultParallel when parallel <= 0), and returns them in srcs' order.
// Layers already stored are not opened; a diff_id listed twice is
// unpacked once. On the first error the others are cancelled and that
// error is returned; layers unpacked so far stay in the store.
//
// Unpack is safe for concurrent use too; UnpackAll is the convenience for
// an image's whole layer list.
func (s *Store) UnpackAll(ctx context.Context, srcs []Source, limits Limits, parallel int) ([]Layer, error) {
	if parallel <= 0 {
		parallel = DefaultParallel
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	out := make([]Layer, len(srcs))
	first := make(map[digest.Digest]int)
	sem := make(chan struct{}, parallel)
	var (
		wg      sync.WaitGroup
		errOnce sync.Once
		failed  error
	)
	for i, src := range srcs {
		if _, dup := first[src.DiffID]; dup {
			continue
		}
		first[src.DiffID] = i
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			l, err := s.unpackSource(ctx, src, limits)
			if err != nil {
				errOnce.Do(func() {
					failed = fmt.Errorf("layers: layer %d (%s): %w", i, src.DiffID, err)
					cancel(failed)
				})
				return
			}
			out[i] = l
		})
	}
	wg.Wait()
	if failed != nil {
		return nil, failed
	}
	if err := ctx.Err(); err != nil {
		return nil, context.Cause(ctx)
	}
	for i, src := range srcs {
		out[i] = out[first[src.DiffID]]
	}
	return out, nil
}

// unpackSource unpacks one Source, opening its blob only when needed.
func (s *Store) unpackSource(ctx context.Context, src Source, limits Limits) (Layer, error) {
	if err := CheckMediaType(src.MediaType); err != nil {
		return Layer{}, err
	}
	if l, err := s.Get(src.DiffID); err == nil {
		return l, nil
	}
	rc, err := src.Open(ctx)
	if err != nil {
		return Layer{}, err
	}
	defer rc.Close()
	return s.Unpack(ctx, rc, src.MediaType, src.DiffID, limits)
}

// Extract unpacks the tar stream r (plain, gzip or zstd, as Decompress
// reads it) into dir, an existing empty directory, by the extraction rules
// of the package doc (the tar's whiteouts become overlayfs whiteouts
// there too): `ADD archive.tar.gz /dest` unpacks through it. limits caps
// the stream (zero values are the defaults). On error dir holds what was
// unpacked so far; the caller removes it.
func Extract(ctx context.Context, r io.Reader, dir string, limits Limits) error {
	limits = limits.withDefaults()
	rootfd, err := unix.Open(dir, dirOpenFlags, 0)
	if err != nil {
		return pathError("opening", dir, err)
	}
	defer unix.Close(rootfd)
	dr, release, err := Decompress(r)
	if err != nil {
		return err
	}
	defer release()
	m := &meter{ctx: ctx, r: dr, h: digest.Canonical.Hash(), max: limits.MaxBytes}
	x := &extractor{root: rootfd, limits: limits, buf: make([]byte, 256<<10)}
	return x.extract(ctx, tar.NewReader(m))
}

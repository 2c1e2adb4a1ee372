package image

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
)

// blobsDir holds the verified blobs (doc.go).
const blobsDir = "blobs"

// blobPath is the file of blob d; d is valid.
func (s *Store) blobPath(d digest.Digest) string {
	return filepath.Join(s.dir, blobsDir, d.Algorithm().String(), d.Encoded())
}

// HasBlob reports whether blob d (a manifest, config or compressed layer)
// is in the store.
func (s *Store) HasBlob(d digest.Digest) bool {
	if d.Validate() != nil {
		return false
	}
	_, err := os.Lstat(s.blobPath(d))
	return err == nil
}

// OpenBlob opens blob d for reading and returns its size. The bytes were
// verified against d when they were stored. The error wraps
// ErrBlobMissing when the store does not hold d.
func (s *Store) OpenBlob(d digest.Digest) (*os.File, int64, error) {
	if err := d.Validate(); err != nil {
		return nil, 0, fmt.Errorf("%w: %q: %v", ErrBlobMissing, d, err)
	}
	f, err := os.Open(s.blobPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("%w: %s", ErrBlobMissing, d)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("image: opening blob %s: %w", d, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("image: opening blob %s: %w", d, err)
	}
	return f, fi.Size(), nil
}

// ReadBlob returns the whole of blob d, which must be small (a manifest or
// a config). The error wraps ErrBlobMissing when the store does not hold
// d.
func (s *Store) ReadBlob(d digest.Digest) ([]byte, error) {
	f, _, err := s.OpenBlob(d)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("image: reading blob %s: %w", d, err)
	}
	return b, nil
}

// PutBlob stores the bytes of r as a blob and returns their digest and
// size. When want is not "", the bytes must hash to it (and number size
// when size >= 0), or nothing is stored and the error wraps
// ErrDigestMismatch; when want is "", they are hashed with sha256. The blob
// is written to a temporary file, synced and renamed into place, so a blob
// in the store is always whole; storing a blob that is already there
// leaves it as it is.
func (s *Store) PutBlob(r io.Reader, want digest.Digest, size int64) (digest.Digest, int64, error) {
	w, err := s.NewBlobWriter(want, size)
	if err != nil {
		return "", 0, err
	}
	defer w.Abort()
	if _, err := io.Copy(w, r); err != nil {
		return "", 0, err
	}
	return w.Commit()
}

// PutBlobBytes stores b as a blob (see PutBlob) and returns its digest.
func (s *Store) PutBlobBytes(b []byte, want digest.Digest) (digest.Digest, error) {
	d, _, err := s.PutBlob(bytes.NewReader(b), want, int64(len(b)))
	return d, err
}

// BlobWriter writes one blob into the store: Write the bytes, then Commit
// (which verifies them and moves them into place) or Abort. Abort after
// Commit does nothing, so `defer w.Abort()` is the usual pattern.
type BlobWriter struct {
	s      *Store
	f      *os.File
	digest digest.Digest
	size   int64
	h      digest.Digester
	n      int64
	done   bool
}

// NewBlobWriter starts a blob whose bytes must hash to want and number size
// (size < 0: any), or, with want "", are hashed with sha256.
func (s *Store) NewBlobWriter(want digest.Digest, size int64) (*BlobWriter, error) {
	alg := digest.Canonical
	if want != "" {
		if err := want.Validate(); err != nil {
			return nil, fmt.Errorf("%w: digest %q: %v", ErrDigestMismatch, want, err)
		}
		alg = want.Algorithm()
	}
	dir := filepath.Join(s.dir, blobsDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("image: creating the blob store: %w", err)
	}
	f, err := os.CreateTemp(dir, tmpPattern)
	if err != nil {
		return nil, fmt.Errorf("image: writing a blob: %w", err)
	}
	return &BlobWriter{s: s, f: f, digest: want, size: size, h: alg.Digester()}, nil
}

// Write writes p to the blob.
func (w *BlobWriter) Write(p []byte) (int, error) {
	if w.done {
		return 0, errors.New("image: write to a finished blob")
	}
	n, err := w.f.Write(p)
	w.h.Hash().Write(p[:n])
	w.n += int64(n)
	if err != nil {
		return n, fmt.Errorf("image: writing a blob: %w", err)
	}
	return n, nil
}

// Written returns how many bytes were written so far.
func (w *BlobWriter) Written() int64 { return w.n }

// Commit checks what was written and moves it into the store, returning
// its digest and size. On a mismatch the error wraps ErrDigestMismatch and
// nothing is stored.
func (w *BlobWriter) Commit() (digest.Digest, int64, error) {
	if w.done {
		return "", 0, errors.New("image: blob committed twice")
	}
	defer w.Abort()
	got := w.h.Digest()
	switch {
	case w.digest != "" && got != w.digest:
		return "", 0, fmt.Errorf("%w: blob %s hashes to %s", ErrDigestMismatch, w.digest, got)
	case w.size >= 0 && w.n != w.size:
		return "", 0, fmt.Errorf("%w: blob %s has %d bytes, want %d", ErrDigestMismatch, got, w.n, w.size)
	}
	if err := w.f.Sync(); err != nil {
		return "", 0, fmt.Errorf("image: writing blob %s: %w", got, err)
	}
	if err := w.f.Close(); err != nil {
		return "", 0, fmt.Errorf("image: writing blob %s: %w", got, err)
	}
	p := w.s.blobPath(got)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return "", 0, fmt.Errorf("image: writing blob %s: %w", got, err)
	}
	if err := os.Rename(w.f.Name(), p); err != nil {
		return "", 0, fmt.Errorf("image: writing blob %s: %w", got, err)
	}
	syncDir(filepath.Dir(p))
	w.done = true
	return got, w.n, nil
}

// Abort discards what was written, unless Commit succeeded.
func (w *BlobWriter) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.f.Close()
	os.Remove(w.f.Name())
}

// removeBlobs removes the stored blobs keep does not name and returns how
// many bytes they held; the caller holds the exclusive lock, so no pull is
// writing one meanwhile. Leftover temporary files go too.
func (s *Store) removeBlobs(keep map[digest.Digest]bool) (removed []digest.Digest, size int64, err error) {
	root := filepath.Join(s.dir, blobsDir)
	top, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("image: listing blobs: %w", err)
	}
	for _, a := range top {
		if !a.IsDir() {
			os.Remove(filepath.Join(root, a.Name())) // a temporary file of a dead writer
			continue
		}
		ents, err := os.ReadDir(filepath.Join(root, a.Name()))
		if err != nil {
			return removed, size, fmt.Errorf("image: listing blobs: %w", err)
		}
		for _, e := range ents {
			d := digest.NewDigestFromEncoded(digest.Algorithm(a.Name()), e.Name())
			if keep[d] {
				continue
			}
			p := filepath.Join(root, a.Name(), e.Name())
			if fi, err := e.Info(); err == nil {
				size += fi.Size()
			}
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return removed, size, fmt.Errorf("image: removing blob %s: %w", d, err)
			}
			removed = append(removed, d)
		}
	}
	return removed, size, nil
}

// syncDir syncs a directory, so a rename into it lasts; errors are ignored
// (the rename itself succeeded).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

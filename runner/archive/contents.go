package archive

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/runner/image"
	"github.com/berth-registry/berth/runner/layers"
)

// Bounds on what an archive may hold.
const (
	// maxEntries caps the entries of an archive.
	maxEntries = 1 << 18
	// maxSymlinkHops caps the symlinks followed resolving one name.
	maxSymlinkHops = 40
)

// entry is one file, directory or link of the archive, by its cleaned
// name.
type entry struct {
	name string
	kind byte // tar.TypeReg, tar.TypeDir or tar.TypeSymlink (a hardlink is a copy of its target's entry)
	// link is a symlink's target, resolved against its directory: a clean
	// name inside the archive ("" is its root).
	link string
	// blob is set for a file stored in the blob store as it streamed (a
	// file named blobs/<alg>/<hex> whose bytes hash to its name);
	// otherwise spool is the file holding its bytes.
	blob  digest.Digest
	spool string
}

// contents is what an archive held: its entries, by name, with the files'
// bytes in the blob store or the spool directory.
type contents struct {
	store   *image.Store
	spool   string
	entries map[string]*entry
	// parents are the names that have entries below them.
	parents map[string]bool
}

// readArchive reads the tar (possibly gzip- or zstd-compressed) from r,
// applying the path rules of doc.go to every entry: files named
// blobs/<alg>/<hex> go to the blob store, verified, other files to
// numbered files in spool.
func readArchive(ctx context.Context, s *image.Store, r io.Reader, spool string) (*contents, error) {
	tr, closeFn, err := tarReader(r)
	if err != nil {
		return nil, err
	}
	defer closeFn()
	c := &contents{store: s, spool: spool, entries: map[string]*entry{}, parents: map[string]bool{}}
	last := ""
	for n := 0; ; n++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			if n == 0 {
				return nil, fmt.Errorf("%w: the archive is empty", ErrInvalid)
			}
			return c, nil
		}
		if err != nil {
			return nil, readError(last, err)
		}
		if n >= maxEntries {
			return nil, fmt.Errorf("%w: more than %d entries", ErrInvalid, maxEntries)
		}
		last = hdr.Name
		if err := c.add(hdr, archiveReader{tr}, n); err != nil {
			return nil, err
		}
	}
}

// readError describes a failure to read the tar after the entry last.
func readError(last string, err error) error {
	if errors.Is(err, ErrUnsupported) {
		return err
	}
	if last == "" {
		return fmt.Errorf("%w: not a tar, or truncated at its start: %v", ErrInvalid, err)
	}
	where := fmt.Sprintf("after entry %q", last)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: the archive is truncated %s", ErrInvalid, where)
	}
	return fmt.Errorf("%w: reading the archive %s: %v", ErrInvalid, where, err)
}

// archiveReader reads an entry's bytes from the archive. A read error other
// than the end of the stream (corrupt gzip or zstd data, say) wraps
// ErrInvalid, so that it stays told apart from the errors of writing the
// bytes down; a stream cut short stays io.ErrUnexpectedEOF, which callers
// describe as truncation.
type archiveReader struct{ r io.Reader }

func (a archiveReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if err != nil && err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF) {
		err = fmt.Errorf("%w: reading the archive: %w", ErrInvalid, err)
	}
	return n, err
}

// tarReader returns a tar reader of r, decompressed as its first bytes
// say (gzip, zstd or none).
func tarReader(r io.Reader) (*tar.Reader, func(), error) {
	br := bufio.NewReaderSize(r, 1<<16)
	comp, err := sniff(br)
	if err != nil {
		return nil, nil, fmt.Errorf("the archive: %w", err)
	}
	switch comp {
	case gzipped:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: gzip: %v", ErrInvalid, err)
		}
		return tar.NewReader(zr), func() { zr.Close() }, nil
	case zstded:
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: zstd: %v", ErrInvalid, err)
		}
		return tar.NewReader(zr), zr.Close, nil
	}
	return tar.NewReader(br), func() {}, nil
}

// compression is how a stream is compressed.
type compression int

// The compressions Load reads.
const (
	uncompressed compression = iota
	gzipped
	zstded
)

// sniff tells the compression of br's stream by its first bytes, without
// consuming them. xz and bzip2 are refused.
func sniff(br *bufio.Reader) (compression, error) {
	magic, err := br.Peek(6)
	if err != nil && err != io.EOF {
		return 0, fmt.Errorf("%w: reading: %v", ErrInvalid, err)
	}
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return gzipped, nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return zstded, nil
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}), bytes.HasPrefix(magic, []byte("BZh")):
		return 0, fmt.Errorf("%w: xz or bzip2 compression (decompress it first)", ErrUnsupported)
	}
	return uncompressed, nil
}

// unsafe returns an ErrUnsafeEntry error naming the entry.
func unsafe(name, format string, args ...any) error {
	return fmt.Errorf("%w: entry %q %s", ErrUnsafeEntry, name, fmt.Sprintf(format, args...))
}

// cleanName returns where a name of the archive lands: a clean relative
// name, "" for the root. Absolute names and names climbing above the root
// land outside the archive.
func cleanName(name string) (string, bool) {
	if strings.HasPrefix(name, "/") {
		return "", false
	}
	p := path.Clean(name)
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", false
	}
	if p == "." {
		p = ""
	}
	return p, true
}

// add takes entry number n of the tar.
func (c *contents) add(hdr *tar.Header, r io.Reader, n int) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	name, ok := cleanName(hdr.Name)
	if !ok {
		return unsafe(hdr.Name, "lands outside the archive")
	}
	if name == "" {
		if hdr.Typeflag == tar.TypeDir {
			return nil
		}
		return unsafe(hdr.Name, "is the archive's root but not a directory")
	}
	for p := path.Dir(name); p != "."; p = path.Dir(p) {
		if e := c.entries[p]; e != nil && e.kind != tar.TypeDir {
			return unsafe(hdr.Name, "is written through %q, which the archive made a %s", p, kindName(e.kind))
		}
	}
	if old := c.entries[name]; old != nil {
		if old.kind == tar.TypeDir && hdr.Typeflag == tar.TypeDir {
			return nil
		}
		return unsafe(hdr.Name, "appears twice in the archive")
	}
	if hdr.Typeflag != tar.TypeDir && c.parents[name] {
		return unsafe(hdr.Name, "replaces a directory of earlier entries")
	}

	e := &entry{name: name}
	switch hdr.Typeflag {
	case tar.TypeDir:
		e.kind = tar.TypeDir
	case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // old archives write '\x00'
		e.kind = tar.TypeReg
		if err := c.storeFile(e, hdr, r, n); err != nil {
			return err
		}
	case tar.TypeSymlink:
		if strings.HasPrefix(hdr.Linkname, "/") {
			return unsafe(hdr.Name, "is a symlink to %q, outside the archive", hdr.Linkname)
		}
		target, ok := cleanName(path.Join(path.Dir(name), hdr.Linkname))
		if !ok || hdr.Linkname == "" {
			return unsafe(hdr.Name, "is a symlink to %q, outside the archive", hdr.Linkname)
		}
		e.kind, e.link = tar.TypeSymlink, target
	case tar.TypeLink:
		target, ok := cleanName(hdr.Linkname)
		if !ok || target == "" {
			return unsafe(hdr.Name, "is a hardlink to %q, outside the archive", hdr.Linkname)
		}
		t := c.entries[target]
		if t == nil || t.kind != tar.TypeReg {
			return unsafe(hdr.Name, "is a hardlink to %q, which is not an earlier file of the archive", hdr.Linkname)
		}
		*e = *t
		e.name = name
	case tar.TypeChar, tar.TypeBlock:
		return unsafe(hdr.Name, "is a device node")
	case tar.TypeFifo:
		return unsafe(hdr.Name, "is a fifo")
	default:
		return unsafe(hdr.Name, "has entry type %q, which an image archive does not hold", string(hdr.Typeflag))
	}
	c.entries[name] = e
	for p := path.Dir(name); p != "."; p = path.Dir(p) {
		c.parents[p] = true
	}
	return nil
}

// kindName names an entry kind in messages.
func kindName(kind byte) string {
	switch kind {
	case tar.TypeSymlink:
		return "symlink"
	case tar.TypeDir:
		return "directory"
	}
	return "file"
}

// blobName returns the digest a name blobs/<alg>/<hex> gives its content,
// or "" for any other name.
func blobName(name string) digest.Digest {
	rest, ok := strings.CutPrefix(name, "blobs/")
	if !ok {
		return ""
	}
	alg, hex, ok := strings.Cut(rest, "/")
	if !ok {
		return ""
	}
	d := digest.NewDigestFromEncoded(digest.Algorithm(alg), hex)
	if d.Validate() != nil {
		return ""
	}
	return d
}

// storeFile keeps the bytes of a regular file: a blob in the blob store
// (verified against its name), anything else in the spool.
func (c *contents) storeFile(e *entry, hdr *tar.Header, r io.Reader, n int) error {
	if d := blobName(e.name); d != "" {
		if c.store.HasBlob(d) {
			// Stored already; the archive's copy must still be what it says.
			if _, err := io.Copy(io.Discard, layers.VerifyReader(r, d, hdr.Size)); err != nil {
				return blobError(hdr.Name, err)
			}
		} else if _, _, err := c.store.PutBlob(r, d, hdr.Size); err != nil {
			return blobError(hdr.Name, err)
		}
		e.blob = d
		return nil
	}
	e.spool = filepath.Join(c.spool, strconv.Itoa(n))
	f, err := os.OpenFile(e.spool, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("archive: spooling entry %q: %w", hdr.Name, err)
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: the archive is truncated in entry %q", ErrInvalid, hdr.Name)
		}
		return fmt.Errorf("archive: spooling entry %q: %w", hdr.Name, err)
	}
	return nil
}

// blobError describes a blob entry whose bytes could not be stored.
func blobError(name string, err error) error {
	switch {
	case errors.Is(err, image.ErrDigestMismatch), errors.Is(err, layers.ErrDigestMismatch):
		return fmt.Errorf("%w: entry %q: %v", ErrDigestMismatch, name, err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: the archive is truncated in entry %q", ErrInvalid, name)
	}
	return fmt.Errorf("archive: entry %q: %w", name, err)
}

// lookup resolves a name of the archive (from manifest.json or index.json,
// described by what) to its file, following the archive's symlinks. A name
// that lands outside the archive is unsafe; one that names nothing, or a
// directory, is invalid.
func (c *contents) lookup(name, what string) (*entry, error) {
	p, ok := cleanName(name)
	if !ok {
		return nil, fmt.Errorf("%w: %s names %q, outside the archive", ErrUnsafeEntry, what, name)
	}
	for hops := 0; ; {
		next, e, err := c.step(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %s names %q: %v", ErrInvalid, what, name, err)
		}
		if e != nil {
			return e, nil
		}
		if hops++; hops > maxSymlinkHops {
			return nil, fmt.Errorf("%w: %s names %q: too many levels of symlinks", ErrUnsafeEntry, what, name)
		}
		p = next
	}
}

// step walks p from the root: it returns the file p names, or, at the
// first symlink on the way, p with that symlink replaced by its target.
func (c *contents) step(p string) (string, *entry, error) {
	if p == "" {
		return "", nil, errors.New("the archive's root is not a file")
	}
	parts := strings.Split(p, "/")
	for i := range parts {
		cur := strings.Join(parts[:i+1], "/")
		last := i == len(parts)-1
		e := c.entries[cur]
		switch {
		case e == nil && !last && c.parents[cur]:
			continue // a directory with no entry of its own
		case e == nil:
			return "", nil, fmt.Errorf("%q is not in the archive", cur)
		case e.kind == tar.TypeSymlink:
			return path.Join(e.link, strings.Join(parts[i+1:], "/")), nil, nil
		case e.kind == tar.TypeDir && last:
			return "", nil, fmt.Errorf("%q is a directory", cur)
		case e.kind == tar.TypeDir:
			continue
		case !last:
			return "", nil, fmt.Errorf("%q is a file, not a directory", cur)
		}
		return "", e, nil
	}
	panic("unreachable")
}

// open opens the bytes of a file entry.
func (c *contents) open(e *entry) (io.ReadCloser, error) {
	if e.blob != "" {
		f, _, err := c.store.OpenBlob(e.blob)
		return f, err
	}
	f, err := os.Open(e.spool)
	if err != nil {
		return nil, fmt.Errorf("archive: reading entry %q: %w", e.name, err)
	}
	return f, nil
}

// readSmall reads a file entry that must be small (JSON).
func (c *contents) readSmall(e *entry, max int64) ([]byte, error) {
	rc, err := c.open(e)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return nil, fmt.Errorf("archive: reading entry %q: %w", e.name, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: entry %q is larger than %d bytes", ErrInvalid, e.name, max)
	}
	return b, nil
}

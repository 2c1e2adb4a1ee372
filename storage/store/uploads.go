package store

import (
	"context"
	"encoding"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/storage"
)

// Upload describes a blob upload session.
type Upload struct {
	ID        string
	Repo      string
	Size      int64     // bytes received so far
	StartedAt time.Time // when the session began
}

// streamAlgorithm is the hash computed while bytes arrive. A blob pushed
// with another algorithm (sha512) is hashed again once at the end.
const streamAlgorithm = digest.SHA256

// copyBufferSize is the size of the buffers bytes travel through between
// the request body, the driver and the hash; pipelineDepth is how many of
// them one upload may have in flight (2 MiB for an upload alone; see
// pipelineShare for many at once). Buffers of 1 MiB pushed no faster on
// a filesystem and kept 4 times the memory: zb's load peaked at 90 to 97
// MB of RSS with them, 51 MB with these.
const (
	copyBufferSize = 256 << 10
	pipelineDepth  = 8
)

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}

// pipelineShare bounds the buffers beyond its first that all uploads
// together have in flight (4 MiB): an upload alone pipelines
// pipelineDepth buffers, while many at once share these and each keeps at
// least its first, so that memory grows by one buffer per concurrent
// upload, not pipelineDepth (32 pushes at once with 8 buffers of 1 MiB
// each took 256 MiB and were OOM-killed in a 128 MiB cgroup).
var pipelineShare = make(chan struct{}, 16)

// ValidUploadID reports whether id has the form of an upload ID this store
// hands out (a UUID), so that no other string is ever used in a path.
func ValidUploadID(id string) bool {
	if len(id) != 36 {
		return false
	}
	u, err := uuid.Parse(id)
	return err == nil && u.String() == id
}

// StartUpload opens a new upload session in repo.
func (s *Store) StartUpload(ctx context.Context, repo string) (Upload, error) {
	id := uuid.NewString()
	now := time.Now().UTC()
	// An upload is not promised to survive a crash of the machine: the
	// client starts it again.
	if err := storage.WriteAll(storage.WithoutSync(ctx), s.driver, uploadStartedAtPath(repo, id), []byte(now.Format(time.RFC3339))); err != nil {
		return Upload{}, err
	}
	return Upload{ID: id, Repo: repo, StartedAt: now}, nil
}

// StatUpload describes upload id of repo, or returns ErrUploadUnknown.
func (s *Store) StatUpload(ctx context.Context, repo, id string) (Upload, error) {
	if !ValidUploadID(id) {
		return Upload{}, fmt.Errorf("%w: %q is not an upload id", ErrUploadUnknown, id)
	}
	fi, err := s.driver.Stat(ctx, uploadStartedAtPath(repo, id))
	if errors.Is(err, storage.ErrNotFound) {
		return Upload{}, fmt.Errorf("%w: %s", ErrUploadUnknown, id)
	}
	if err != nil {
		return Upload{}, err
	}
	u := Upload{ID: id, Repo: repo, StartedAt: fi.ModTime}
	data, err := s.driver.Stat(ctx, uploadDataPath(repo, id))
	switch {
	case err == nil:
		u.Size = data.Size
	case !errors.Is(err, storage.ErrNotFound):
		return Upload{}, err
	}
	return u, nil
}

// AppendUpload adds the bytes of r to upload id. With start >= 0 the chunk
// must begin where the upload ends, else a *RangeError is returned and
// nothing is written. If r fails midway, the bytes received before the
// failure are kept and the returned Upload says how many there are, so the
// client can resume.
func (s *Store) AppendUpload(ctx context.Context, repo, id string, start int64, r io.Reader) (Upload, error) {
	defer s.uploads.lock(id)()
	u, err := s.StatUpload(ctx, repo, id)
	if err != nil {
		return Upload{}, err
	}
	if start >= 0 && start != u.Size {
		return u, &RangeError{Size: u.Size, Start: start}
	}
	size, h, err := s.appendData(ctx, u, r, nil)
	u.Size = size
	if h != nil {
		s.saveHashState(ctx, u, h)
	}
	return u, err
}

// FinishUpload appends the bytes of r (which may be empty) to upload id,
// checks that the whole content hashes to expected, and makes it blob
// expected of repo. On a digest mismatch the upload is discarded and an error
// wrapping ErrDigestMismatch is returned. Nobody can read the blob before it
// has been verified. It returns the blob size.
func (s *Store) FinishUpload(ctx context.Context, repo, id string, r io.Reader, expected digest.Digest) (int64, error) {
	return s.finishUpload(ctx, repo, id, r, expected, nil)
}

// finishUpload is FinishUpload that calls verified, if set, as soon as the
// content is known to hash to expected: before it is made durable and
// moved into place, when expected is a sha256 digest (hashed as the bytes
// arrive), after that otherwise. A content that does not match is never
// committed.
func (s *Store) finishUpload(ctx context.Context, repo, id string, r io.Reader, expected digest.Digest, verified func()) (int64, error) {
	defer s.uploads.lock(id)()
	u, err := s.StatUpload(ctx, repo, id)
	if err != nil {
		return 0, err
	}
	if u.Size == 0 && expected.Algorithm() == streamAlgorithm {
		// The whole blob in this request: straight to its place, as a
		// monolithic push. A body cut short leaves the upload empty, to
		// be sent again.
		size, err := s.putBlobWhole(ctx, repo, r, expected, verified)
		if err == nil || errors.Is(err, ErrDigestMismatch) {
			if derr := s.driver.Delete(ctx, uploadPath(repo, id)); derr != nil && !errors.Is(derr, storage.ErrNotFound) {
				s.log.Warn("removing finished upload", "repository", repo, "upload", id, "error", derr)
			}
		}
		return size, err
	}
	var got digest.Digest
	var stored bool // identical bytes are stored already: the upload's data is dropped, not synced
	streamed := expected.Algorithm() == streamAlgorithm
	size, h, err := s.appendData(ctx, u, r, func(h hash.Hash) error {
		if !streamed {
			return nil
		}
		if got = digest.NewDigest(streamAlgorithm, h); got != expected {
			return errDiscard
		}
		if verified != nil {
			verified()
		}
		var err error
		if stored, err = s.keepStored(ctx, repo, expected); err == nil && stored {
			return errDiscard
		}
		return err
	})
	if err != nil && !errors.Is(err, errDiscard) {
		if h != nil {
			u.Size = size
			s.saveHashState(ctx, u, h)
		}
		return 0, err
	}
	if !streamed {
		if got, err = s.rehash(ctx, uploadDataPath(repo, id), size, expected.Algorithm()); err != nil {
			return 0, err
		}
		if got == expected && verified != nil {
			verified()
		}
	}
	if got != expected {
		if err := s.driver.Delete(ctx, uploadPath(repo, id)); err != nil {
			s.log.Warn("discarding upload after digest mismatch", "repository", repo, "upload", id, "error", err)
		}
		return 0, mismatch(got, expected)
	}
	// The content is verified: move it into the blob store, unless
	// identical bytes are already there (then a sha256 upload's data was
	// dropped above, never synced).
	if !streamed {
		if stored, err = s.keepStored(ctx, repo, expected); err != nil {
			return 0, err
		}
	}
	data, link := blobDataPath(expected), layerLinkPath(repo, expected)
	if !stored {
		if err := s.driver.Move(ctx, uploadDataPath(repo, id), data); err != nil {
			return 0, err
		}
	}
	if err := s.writeLink(ctx, link, expected); err != nil {
		return 0, err
	}
	if err := s.driver.Delete(ctx, uploadPath(repo, id)); err != nil && !errors.Is(err, storage.ErrNotFound) {
		s.log.Warn("removing finished upload", "repository", repo, "upload", id, "error", err)
	}
	return size, nil
}

// keepStored reports whether the bytes of blob d are stored already, after
// leasing them and d's layer link in repo: those may be what garbage
// collection is deleting, so the lease comes first, and a collector that
// marked them before it is let finish before looking (see gc.go). What it
// reports stored is kept for the collectors' grace from now on.
func (s *Store) keepStored(ctx context.Context, repo string, d digest.Digest) (bool, error) {
	data, link := blobDataPath(d), layerLinkPath(repo, d)
	if _, err := s.lease(ctx, repo, d); err != nil {
		return false, err
	}
	if err := s.settle(ctx, data, link); err != nil {
		return false, err
	}
	return s.exists(ctx, data)
}

// PutBlob stores the bytes of r as blob expected of repo in one request
// (a monolithic upload), verifying them as they stream.
func (s *Store) PutBlob(ctx context.Context, repo string, r io.Reader, expected digest.Digest) (int64, error) {
	return s.PutBlobVerified(ctx, repo, r, expected, nil)
}

// PutBlobVerified is PutBlob that calls verified, if set, once the bytes
// are known to hash to expected, which for a sha256 digest is before they
// are made durable and moved into place (a pull-through cache lets its
// client have the last bytes then). It is called at most once, and never
// for content that does not match.
func (s *Store) PutBlobVerified(ctx context.Context, repo string, r io.Reader, expected digest.Digest, verified func()) (int64, error) {
	if expected.Algorithm() == streamAlgorithm {
		return s.putBlobWhole(ctx, repo, r, expected, verified)
	}
	u, err := s.StartUpload(ctx, repo)
	if err != nil {
		return 0, err
	}
	size, err := s.finishUpload(ctx, repo, u.ID, r, expected, verified)
	if err != nil {
		_ = s.driver.Delete(context.WithoutCancel(ctx), uploadPath(repo, u.ID))
	}
	return size, err
}

// putBlobWhole is PutBlobVerified for a sha256 blob: no upload session is
// written (nobody could resume it), the bytes go to a writer of the blob's
// own path, hashed as they arrive, and are committed there (made durable,
// then renamed into place) only once they match expected and no copy is
// stored yet; then the layer link is written. Five fewer files and
// directory syncs than an upload session's. Bytes stored already are only
// hashed (putStoredBlob).
func (s *Store) putBlobWhole(ctx context.Context, repo string, r io.Reader, expected digest.Digest, verified func()) (int64, error) {
	data, link := blobDataPath(expected), layerLinkPath(repo, expected)
	have, err := s.exists(ctx, data)
	if err == nil && have {
		have, err = s.keepStored(ctx, repo, expected) // leased before the body is read
	}
	if err != nil {
		return 0, err
	}
	if have {
		return s.putStoredBlob(ctx, repo, r, expected, verified)
	}
	w, err := s.driver.Writer(ctx, data, false)
	if err != nil {
		return 0, err
	}
	h := streamAlgorithm.Hash()
	if err := copyHashing(w, h, r); err != nil {
		w.Cancel(context.WithoutCancel(ctx))
		return 0, err
	}
	if got := digest.NewDigest(streamAlgorithm, h); got != expected {
		w.Cancel(context.WithoutCancel(ctx))
		return 0, mismatch(got, expected)
	}
	if verified != nil {
		verified()
	}
	size := w.Size()
	have, err = s.keepStored(ctx, repo, expected)
	if err != nil {
		w.Cancel(context.WithoutCancel(ctx))
		return 0, err
	}
	if have {
		err = w.Cancel(ctx)
	} else {
		err = w.Commit(ctx)
	}
	if err != nil {
		return 0, err
	}
	if err := s.writeLink(ctx, link, expected); err != nil {
		return 0, err
	}
	return size, nil
}

// putStoredBlob is putBlobWhole for bytes stored already, and leased by
// the caller (keepStored) before the body is read: the body is hashed and
// thrown away, nothing is written or synced but the layer link once the
// body matches expected (the same blob pushed to many repositories, or
// again). Should a collector have deleted the stored bytes all the same
// while the body arrived (a body slower than the collectors' grace), the
// push fails with ErrStoredBlobCollected for the client to send again.
func (s *Store) putStoredBlob(ctx context.Context, repo string, r io.Reader, expected digest.Digest, verified func()) (int64, error) {
	h := streamAlgorithm.Hash()
	n, err := hashAll(h, r)
	if err != nil {
		return 0, err
	}
	if got := digest.NewDigest(streamAlgorithm, h); got != expected {
		return 0, mismatch(got, expected)
	}
	if verified != nil {
		verified()
	}
	have, err := s.keepStored(ctx, repo, expected)
	if err != nil {
		return 0, err
	}
	if !have {
		return 0, fmt.Errorf("%w: %s", ErrStoredBlobCollected, expected)
	}
	if err := s.writeLink(ctx, layerLinkPath(repo, expected), expected); err != nil {
		return 0, err
	}
	return n, nil
}

// mismatch is the error of content that hashes to got, not expected.
func mismatch(got, expected digest.Digest) error {
	return fmt.Errorf("%w: content is %s, client said %s", ErrDigestMismatch, got, expected)
}

// hashAll feeds h every byte of r and returns how many there were. As
// copyHashing, only a clean io.EOF ends it without error. With nothing to
// write, receiving and hashing take turns on one goroutine: handing
// buffers between goroutines would cost more than it overlaps.
func hashAll(h hash.Hash, r io.Reader) (int64, error) {
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	var n int64
	for {
		m, err := fill(r, *bp)
		h.Write((*bp)[:m])
		n += int64(m)
		switch {
		case err == io.EOF:
			return n, nil
		case err != nil:
			return n, err
		}
	}
}

// CancelUpload discards upload id and everything it received.
func (s *Store) CancelUpload(ctx context.Context, repo, id string) error {
	defer s.uploads.lock(id)()
	if _, err := s.StatUpload(ctx, repo, id); err != nil {
		return err
	}
	return s.driver.Delete(ctx, uploadPath(repo, id))
}

// errDiscard is returned by an appendData beforeCommit function to cancel
// the writer instead of committing it.
var errDiscard = errors.New("store: discard the upload's data")

// appendData streams r into the upload's data file, hashing as it writes,
// starting from the hash state saved for the bytes already there. With
// beforeCommit set the data is made durable and final once all of r is
// written, unless beforeCommit (given the hash over all of it) returns an
// error: then the writer is cancelled and that error returned. Without
// beforeCommit the data is kept for a later append. It returns the new size
// and the hash over all of it (nil if nothing could be written).
func (s *Store) appendData(ctx context.Context, u Upload, r io.Reader, beforeCommit func(hash.Hash) error) (int64, hash.Hash, error) {
	h, err := s.resumeHash(ctx, u)
	if err != nil {
		return u.Size, nil, err
	}
	wctx := ctx
	if beforeCommit == nil {
		// A chunk is not synced (the doc's contract): the upload's last
		// request syncs the whole data, or drops it unsynced when the
		// same bytes are stored already.
		wctx = storage.WithoutSync(ctx)
	}
	w, err := s.driver.Writer(wctx, uploadDataPath(u.Repo, u.ID), u.Size > 0)
	if err != nil {
		return u.Size, nil, err
	}
	copyErr := copyHashing(w, h, r)
	var endErr error
	switch {
	case beforeCommit != nil && copyErr == nil:
		if endErr = beforeCommit(h); endErr != nil {
			_ = w.Cancel(ctx)
		} else {
			endErr = w.Commit(ctx)
		}
	default:
		endErr = w.Close()
	}
	if copyErr != nil {
		return w.Size(), h, copyErr
	}
	return w.Size(), h, endErr
}

// copyHashing copies r to w, feeding h exactly the bytes w accepted. Only a
// clean io.EOF from r ends the copy without error: a body cut short (for
// example io.ErrUnexpectedEOF from a dropped connection) is reported, so a
// partial chunk is never taken for a whole one.
//
// A body that fits one buffer is written and hashed in place. A bigger one
// goes through three goroutines, each buffer from one to the next: this one
// receives into buffers, a writer writes them, a hasher hashes what the
// writer wrote. So the receiving never waits for a write (the client keeps
// sending while the driver is busy), and on two cores hashing, the longest
// of the three, costs no wall time. When copyHashing returns, h has seen
// every byte written and no goroutine touches it or w any more.
func copyHashing(w io.Writer, h hash.Hash, r io.Reader) error {
	first := copyBuffers.Get().(*[]byte)
	n, rerr := fill(r, *first)
	if rerr != nil {
		defer copyBuffers.Put(first)
		m, werr := w.Write((*first)[:n])
		h.Write((*first)[:m])
		if werr != nil {
			return werr
		}
		if rerr == io.EOF {
			return nil
		}
		return rerr
	}

	type chunk struct {
		buf *[]byte
		n   int
	}
	// Every buffer is in exactly one of these channels or with one
	// goroutine, so no send blocks. Beyond the first, as many as the
	// share has free, never waiting: with none, the three stages take
	// turns on the first.
	depth := 1
	for depth < pipelineDepth {
		select {
		case pipelineShare <- struct{}{}:
			depth++
			continue
		default:
		}
		break
	}
	defer func() {
		for range depth - 1 {
			<-pipelineShare
		}
	}()
	free := make(chan *[]byte, pipelineDepth)
	for i := 1; i < depth; i++ {
		free <- copyBuffers.Get().(*[]byte)
	}
	toWrite := make(chan chunk, pipelineDepth)
	toHash := make(chan chunk, pipelineDepth)
	failed := make(chan struct{}) // closed when a write fails
	var werr error                // the failed write's error, read after toHash is closed
	go func() {
		defer close(toHash)
		for c := range toWrite {
			if werr != nil {
				free <- c.buf
				continue
			}
			m, err := w.Write((*c.buf)[:c.n])
			toHash <- chunk{c.buf, m}
			if err != nil {
				werr = err
				close(failed)
			}
		}
	}()
	hashed := make(chan struct{})
	go func() {
		defer close(hashed)
		for c := range toHash {
			h.Write((*c.buf)[:c.n])
			free <- c.buf
		}
	}()

	buf := first // holding n bytes already read
	for {
		if n > 0 {
			toWrite <- chunk{buf, n}
		} else {
			free <- buf
		}
		if rerr != nil {
			break
		}
		select {
		case <-failed:
		case buf = <-free:
			n, rerr = fill(r, *buf)
			continue
		}
		break
	}
	close(toWrite)
	<-hashed
	for range depth {
		copyBuffers.Put(<-free)
	}
	switch {
	case werr != nil:
		return werr
	case rerr == io.EOF, rerr == nil: // nil: stopped by a failed write
		return nil
	default:
		return rerr
	}
}

// fill reads from r until buf is full or r returns an error (io.EOF
// included), so that drivers receive big writes.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// resumeHash returns the stream hash over the first u.Size bytes of the
// upload: from the saved hash state when there is one, else by reading the
// data again (an upload resumed after a crash, or begun by another registry).
func (s *Store) resumeHash(ctx context.Context, u Upload) (hash.Hash, error) {
	h := streamAlgorithm.Hash()
	if u.Size == 0 {
		return h, nil
	}
	b, err := storage.ReadAll(ctx, s.driver, uploadHashStatePath(u.Repo, u.ID, streamAlgorithm, u.Size))
	if err == nil {
		if err = h.(encoding.BinaryUnmarshaler).UnmarshalBinary(b); err == nil {
			return h, nil
		}
		h.Reset()
	}
	s.log.Info("rehashing upload: no usable hash state", "repository", u.Repo, "upload", u.ID, "size", u.Size, "reason", err)
	rd, err := s.driver.Reader(ctx, uploadDataPath(u.Repo, u.ID), 0)
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	if _, err := io.CopyN(h, rd, u.Size); err != nil {
		return nil, fmt.Errorf("rehashing upload %s: %w", u.ID, err)
	}
	return h, nil
}

// saveHashState records h as the state after u.Size bytes and drops older
// states. Failing to save is not an error: the next append rehashes.
func (s *Store) saveHashState(ctx context.Context, u Upload, h hash.Hash) {
	ctx = context.WithoutCancel(ctx)
	b, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err == nil {
		// Rebuilt by hashing the data again when it is missing or
		// unreadable (after a crash of the machine).
		err = storage.WriteAll(storage.WithoutSync(ctx), s.driver, uploadHashStatePath(u.Repo, u.ID, streamAlgorithm, u.Size), b)
	}
	if err != nil {
		s.log.Warn("saving upload hash state", "repository", u.Repo, "upload", u.ID, "error", err)
		return
	}
	dir := uploadHashStatePath(u.Repo, u.ID, streamAlgorithm, 0)
	dir = dir[:len(dir)-len("/0")]
	states, err := s.driver.List(ctx, dir)
	if err != nil {
		return
	}
	keep := uploadHashStatePath(u.Repo, u.ID, streamAlgorithm, u.Size)
	for _, p := range states {
		if p != keep {
			_ = s.driver.Delete(ctx, p)
		}
	}
}

// rehash reads size bytes at p and digests them with alg.
func (s *Store) rehash(ctx context.Context, p string, size int64, alg digest.Algorithm) (digest.Digest, error) {
	if !alg.Available() {
		return "", fmt.Errorf("%w: algorithm %s", ErrDigestMismatch, alg)
	}
	rd, err := s.driver.Reader(ctx, p, 0)
	if err != nil {
		return "", err
	}
	defer rd.Close()
	v := alg.Digester()
	if _, err := io.CopyN(v.Hash(), rd, size); err != nil {
		return "", err
	}
	return v.Digest(), nil
}

// PurgeUploads deletes the uploads, in every repository, that began before
// cutoff: each _uploads/<id> directory whose startedat file was written
// before cutoff (or, without a startedat, whose newest file was), with
// everything it received; on S3 deleting pending data also aborts its
// multipart upload. Age is counted from the start of an upload, not from
// its last chunk, so cutoff must be far earlier than any push takes. It
// returns how many uploads it deleted, and carries on past an upload it
// cannot delete, returning all such errors joined.
//
// Deletes are idempotent: several processes may purge the same storage at
// once, an upload one of them removes first is simply not counted by the
// others.
func (s *Store) PurgeUploads(ctx context.Context, cutoff time.Time) (int, error) {
	var dirs []string
	err := s.driver.Walk(ctx, repositoriesPath(), func(fi storage.FileInfo) error {
		if !fi.IsDir {
			return nil
		}
		dir, name := path.Split(fi.Path)
		if path.Base(dir) == "_uploads" {
			dirs = append(dirs, fi.Path)
			return storage.SkipDir
		}
		if strings.HasPrefix(name, "_") && name != "_uploads" {
			return storage.SkipDir // _layers, _manifests, _referrers
		}
		return nil
	})
	if errors.Is(err, storage.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	purged := 0
	var errs []error
	for _, dir := range dirs {
		ok, err := s.purgeUpload(ctx, dir, cutoff)
		if err != nil {
			if ctx.Err() != nil {
				return purged, errors.Join(append(errs, err)...)
			}
			errs = append(errs, fmt.Errorf("purging upload %s: %w", dir, err))
			continue
		}
		if ok {
			purged++
		}
	}
	return purged, errors.Join(errs...)
}

// purgeUpload deletes the upload directory dir if it began before cutoff,
// and reports whether it did. An upload that a request of this process is
// writing is left for the next purge: it is not
// abandoned, and waiting for it would hold the purge up for as long as it
// lasts.
func (s *Store) purgeUpload(ctx context.Context, dir string, cutoff time.Time) (bool, error) {
	return s.purgeIf(ctx, dir, cutoff, s.uploadStartTime)
}

// purgeIf deletes the upload directory dir if timeOf(dir) is before cutoff
// and no request of this process holds its lock.
func (s *Store) purgeIf(ctx context.Context, dir string, cutoff time.Time, timeOf func(context.Context, string) (time.Time, error)) (bool, error) {
	unlock, ok := s.uploads.tryLock(path.Base(dir))
	if !ok {
		return false, nil
	}
	defer unlock()
	t, err := timeOf(ctx, dir)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil // finished, cancelled or purged meanwhile
	}
	if err != nil || !t.Before(cutoff) {
		return false, err
	}
	err = s.driver.Delete(ctx, dir)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// uploadStartTime is when the upload in directory dir began: the time its
// startedat file was written, else (an upload whose startedat was lost)
// that of its newest file.
func (s *Store) uploadStartTime(ctx context.Context, dir string) (time.Time, error) {
	fi, err := s.driver.Stat(ctx, dir+"/startedat")
	if err == nil {
		return fi.ModTime, nil
	}
	if !errors.Is(err, storage.ErrNotFound) {
		return time.Time{}, err
	}
	return s.lastActivity(ctx, dir)
}

// UploadInfo describes an upload session for garbage collection.
type UploadInfo struct {
	Repository   string
	ID           string
	LastActivity time.Time // the newest modification time of its files
}

// IdleUploads returns the uploads, in every repository, with no activity
// (no file written) since cutoff.
func (s *Store) IdleUploads(ctx context.Context, cutoff time.Time) ([]UploadInfo, error) {
	var dirs []string
	err := s.driver.Walk(ctx, repositoriesPath(), func(fi storage.FileInfo) error {
		if !fi.IsDir {
			return nil
		}
		dir, name := path.Split(fi.Path)
		if path.Base(dir) == "_uploads" {
			dirs = append(dirs, fi.Path)
			return storage.SkipDir
		}
		if strings.HasPrefix(name, "_") && name != "_uploads" {
			return storage.SkipDir
		}
		return nil
	})
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []UploadInfo
	for _, dir := range dirs {
		last, err := s.lastActivity(ctx, dir)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if last.Before(cutoff) {
			repo := strings.TrimSuffix(strings.TrimPrefix(path.Dir(dir), repositoriesPath()+"/"), "/_uploads")
			out = append(out, UploadInfo{Repository: repo, ID: path.Base(dir), LastActivity: last})
		}
	}
	return out, nil
}

// PurgeIdleUpload deletes upload id of repo if it is still idle since
// cutoff, and reports whether it did.
func (s *Store) PurgeIdleUpload(ctx context.Context, repo, id string, cutoff time.Time) (bool, error) {
	return s.purgeIf(ctx, uploadPath(repo, id), cutoff, s.lastActivity)
}

// lastActivity is the newest modification time of the files of the upload
// in dir: every chunk rewrites its data and saves a hash state.
func (s *Store) lastActivity(ctx context.Context, dir string) (time.Time, error) {
	var newest time.Time
	found := false
	err := s.driver.Walk(ctx, dir, func(fi storage.FileInfo) error {
		if !fi.IsDir {
			found = true
			if fi.ModTime.After(newest) {
				newest = fi.ModTime
			}
		}
		return nil
	})
	if err == nil && !found {
		err = storage.ErrNotFound
	}
	return newest, err
}

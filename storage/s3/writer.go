package s3

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/berth-registry/berth/storage"
)

// The metadata of a pending object (S3 keeps user metadata keys in lower
// case).
const (
	metaUploadID  = "berth-upload-id"  // the multipart upload of the path's key; absent if none
	metaParts     = "berth-parts"      // parts 1 to this of it hold the content's first bytes
	metaPartsSize = "berth-parts-size" // and this many bytes
)

// pending describes content left by Close: a pending object.
type pending struct {
	uploadID  string // "" when all the content is in the tail
	parts     int32
	partsSize int64
	tailSize  int64 // the pending object's own size
	modTime   time.Time
}

func (p *pending) size() int64 { return p.partsSize + p.tailSize }

// headPending describes the content left by Close at p, or returns nil if
// there is none.
func (d *Driver) headPending(ctx context.Context, p string) (*pending, error) {
	return d.headPendingKey(ctx, d.pendingKey(p))
}

// headPendingKey describes the pending object at key, or returns nil if
// there is none.
func (d *Driver) headPendingKey(ctx context.Context, key string) (*pending, error) {
	out, err := d.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &d.bucket, Key: &key})
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return parsePending(key, out.Metadata, aws.ToInt64(out.ContentLength), aws.ToTime(out.LastModified))
}

func parsePending(key string, meta map[string]string, tail int64, modTime time.Time) (*pending, error) {
	get := func(name string) string {
		for k, v := range meta {
			if strings.EqualFold(k, name) {
				return v
			}
		}
		return ""
	}
	p := &pending{uploadID: get(metaUploadID), tailSize: tail, modTime: modTime}
	if tail >= minPartSize {
		return nil, fmt.Errorf("pending object %s holds %d bytes, more than a pending tail can", key, tail)
	}
	if p.uploadID == "" {
		return p, nil
	}
	parts, err1 := strconv.ParseInt(get(metaParts), 10, 32)
	size, err2 := strconv.ParseInt(get(metaPartsSize), 10, 64)
	if err1 != nil || err2 != nil || parts < 1 || parts > maxParts || size < 0 {
		return nil, fmt.Errorf("pending object %s has malformed metadata %q", key, meta)
	}
	p.parts, p.partsSize = int32(parts), size
	return p, nil
}

// commitPending commits the content left by Close at p, reporting whether
// there was any: it completes the multipart upload, with the pending bytes
// as the last part (or puts them, if there is no upload), then deletes the
// pending object. Reader and Move call it, since S3 cannot read an
// unfinished upload; a later append writer continues the committed object.
// Another process committing the same content at the same time is no
// error.
func (d *Driver) commitPending(ctx context.Context, p string) (bool, error) {
	pk, key := d.pendingKey(p), d.key(p)
	got, err := d.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &d.bucket, Key: &pk})
	if isNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer got.Body.Close()
	state, tail, err := readPending(pk, got)
	if err != nil {
		return false, err
	}
	if state.uploadID == "" {
		_, err = d.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket: &d.bucket, Key: &key, Body: bytes.NewReader(tail), ContentLength: aws.Int64(int64(len(tail))),
		})
	} else {
		err = d.completePending(ctx, key, state, tail)
	}
	if isNotFound(err) {
		// Committed by someone else since we read the pending object.
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return true, d.deleteKeys(ctx, []string{pk})
}

// completePending completes the multipart upload of key that state
// describes, with tail as the last part.
func (d *Driver) completePending(ctx context.Context, key string, state *pending, tail []byte) error {
	parts, err := d.listParts(ctx, key, state.uploadID, state.parts, state.partsSize)
	if err != nil {
		return err
	}
	if len(tail) > 0 {
		n := state.parts + 1
		out, err := d.client.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: &d.bucket, Key: &key, UploadId: &state.uploadID, PartNumber: &n,
			Body: bytes.NewReader(tail), ContentLength: aws.Int64(int64(len(tail))),
		})
		if err != nil {
			return err
		}
		parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: &n})
	}
	_, err = d.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &d.bucket, Key: &key, UploadId: &state.uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	return err
}

// readPending parses the pending object at key that got is, and reads its
// tail.
func readPending(key string, got *s3.GetObjectOutput) (*pending, []byte, error) {
	state, err := parsePending(key, got.Metadata, aws.ToInt64(got.ContentLength), aws.ToTime(got.LastModified))
	if err != nil {
		return nil, nil, err
	}
	tail, err := io.ReadAll(io.LimitReader(got.Body, minPartSize))
	if err == nil && int64(len(tail)) != state.tailSize {
		err = fmt.Errorf("read %d bytes of %d", len(tail), state.tailSize)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading pending object %s: %w", key, err)
	}
	return state, tail, nil
}

// target returns the key of the content whose pending object is at key.
func (d *Driver) target(pendingKey string) string {
	return d.base + strings.TrimPrefix(pendingKey, d.pending)
}

// deletePending aborts the multipart upload that the pending object at key
// refers to, then deletes the object. Neither being there is no error.
func (d *Driver) deletePending(ctx context.Context, key string) error {
	state, err := d.headPendingKey(ctx, key)
	if err != nil && ctx.Err() != nil {
		return err
	}
	// A malformed pending object is deleted all the same.
	if err == nil && state != nil && state.uploadID != "" {
		if err := d.abort(ctx, d.target(key), state.uploadID); err != nil {
			return err
		}
	}
	return d.deleteKeys(ctx, []string{key})
}

// abort aborts multipart upload id of key; one that is gone is no error.
func (d *Driver) abort(ctx context.Context, key, id string) error {
	_, err := d.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &d.bucket, Key: &key, UploadId: &id})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("aborting the multipart upload of %s: %w", key, err)
	}
	return nil
}

// AbortStaleUploads removes what unfinished writers left in the bucket
// under the driver's prefix before now-olderThan: content left by Close and
// untouched since (its pending object and its multipart upload), and
// multipart uploads begun before then that no recent Close refers to (a
// writer that crashed, or was never ended). It returns how many of these
// it removed. A writer still running after olderThan loses its upload, so
// olderThan must be far longer than any upload request takes (a day, say).
func (d *Driver) AbortStaleUploads(ctx context.Context, olderThan time.Duration) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	cutoff := time.Now().Add(-olderThan)
	removed := 0
	recent := map[string]bool{} // keys with content left by Close after cutoff
	objects := s3.NewListObjectsV2Paginator(d.client, &s3.ListObjectsV2Input{Bucket: &d.bucket, Prefix: &d.pending, MaxKeys: &d.pageSize})
	for objects.HasMorePages() {
		page, err := objects.NextPage(ctx)
		if err != nil {
			return removed, fmt.Errorf("s3: listing pending objects: %w", err)
		}
		for _, o := range page.Contents {
			key := aws.ToString(o.Key)
			if !aws.ToTime(o.LastModified).Before(cutoff) {
				recent[d.target(key)] = true
				continue
			}
			if err := d.deletePending(ctx, key); err != nil {
				return removed, fmt.Errorf("s3: removing stale pending object %s: %w", key, err)
			}
			removed++
		}
	}
	uploads := s3.NewListMultipartUploadsPaginator(d.client, &s3.ListMultipartUploadsInput{Bucket: &d.bucket, Prefix: &d.base})
	for uploads.HasMorePages() {
		page, err := uploads.NextPage(ctx)
		if err != nil {
			return removed, fmt.Errorf("s3: listing multipart uploads: %w", err)
		}
		for _, u := range page.Uploads {
			key := aws.ToString(u.Key)
			if recent[key] || !aws.ToTime(u.Initiated).Before(cutoff) {
				continue
			}
			if err := d.abort(ctx, key, aws.ToString(u.UploadId)); err != nil {
				return removed, fmt.Errorf("s3: %w", err)
			}
			removed++
		}
	}
	return removed, nil
}

// writer is a storage.FileWriter; see Driver for how it stores content.
type writer struct {
	d         *Driver
	ctx       context.Context // the Writer call's: Write uploads parts with it
	path, key string
	appending bool

	buf  []byte // what is not uploaded yet: less than one part
	size int64

	uploadID  string // the multipart upload holding the parts; "" before the first
	own       bool   // this writer began uploadID (no pending object refers to it)
	parts     []types.CompletedPart
	partsSize int64

	// resumed is the content left by Close that an append writer
	// continues; nil for a non-append writer, or one continuing committed
	// content.
	resumed *pending
	// replaces: Close deletes the committed object at key (that of a
	// non-append writer's path, or the one an append writer continues).
	replaces bool
	closed   bool
}

// resume makes an append writer continue what is at its path: committed
// content, else content left by Close.
func (w *writer) resume(ctx context.Context) error {
	d := w.d
	var (
		head            *s3.HeadObjectOutput
		got             *s3.GetObjectOutput
		headErr, getErr error
	)
	_ = parallel(
		func() error {
			head, headErr = d.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &d.bucket, Key: &w.key})
			return nil
		},
		func() error {
			got, getErr = d.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &d.bucket, Key: aws.String(d.pendingKey(w.path))})
			return nil
		},
	)
	if getErr == nil {
		defer got.Body.Close()
	}
	switch {
	case headErr == nil:
		return w.resumeCommitted(ctx, head)
	case !isNotFound(headErr):
		return d.fail("appending to", w.path, headErr)
	case getErr == nil:
		return w.resumePending(ctx, got)
	default:
		return d.fail("appending to", w.path, getErr)
	}
}

// resumePending continues content left by Close, whose pending object got
// is: its tail goes back in the buffer, and the parts it counts are listed
// for the final CompleteMultipartUpload.
func (w *writer) resumePending(ctx context.Context, got *s3.GetObjectOutput) error {
	state, tail, err := readPending(w.d.pendingKey(w.path), got)
	if err != nil {
		return fmt.Errorf("s3: appending to %s: %w", w.path, err)
	}
	if state.uploadID != "" {
		parts, err := w.d.listParts(ctx, w.key, state.uploadID, state.parts, state.partsSize)
		if err != nil {
			return w.d.fail("appending to", w.path, err)
		}
		w.uploadID, w.parts, w.partsSize = state.uploadID, parts, state.partsSize
	}
	w.resumed = state
	w.buf = tail
	w.size = state.size()
	return nil
}

// listParts returns parts 1 to n of upload id of key, checking that they
// hold size bytes. Parts past n, uploaded by a writer that never closed,
// are left out: the next part uploaded replaces part n+1.
func (d *Driver) listParts(ctx context.Context, key, id string, n int32, size int64) ([]types.CompletedPart, error) {
	parts := make([]types.CompletedPart, 0, n)
	var total int64
	pages := s3.NewListPartsPaginator(d.client, &s3.ListPartsInput{Bucket: &d.bucket, Key: &key, UploadId: &id})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			if isNotFound(err) {
				return nil, fmt.Errorf("%w: the multipart upload of %s is gone (aborted as stale?): %w", storage.ErrNotFound, key, err)
			}
			return nil, err
		}
		for _, p := range page.Parts {
			if num := aws.ToInt32(p.PartNumber); num >= 1 && num <= n {
				parts = append(parts, types.CompletedPart{ETag: p.ETag, PartNumber: aws.Int32(num)})
				total += aws.ToInt64(p.Size)
			}
		}
	}
	slices.SortFunc(parts, func(a, b types.CompletedPart) int { return int(*a.PartNumber - *b.PartNumber) })
	for i, p := range parts {
		if *p.PartNumber != int32(i+1) {
			return nil, fmt.Errorf("the multipart upload of %s lacks part %d", key, i+1)
		}
	}
	if len(parts) != int(n) || total != size {
		return nil, fmt.Errorf("the multipart upload of %s has %d parts of %d bytes, want %d of %d", key, len(parts), total, n, size)
	}
	return parts, nil
}

// resumeCommitted continues the committed object that head describes: a
// small one is read back into the buffer, a bigger one is copied on the
// server into the parts of a new multipart upload.
func (w *writer) resumeCommitted(ctx context.Context, head *s3.HeadObjectOutput) error {
	d := w.d
	size := aws.ToInt64(head.ContentLength)
	w.replaces = true
	if size < minPartSize {
		got, err := d.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &d.bucket, Key: &w.key, IfMatch: head.ETag})
		if err != nil {
			return d.fail("appending to", w.path, err)
		}
		defer got.Body.Close()
		w.buf, err = io.ReadAll(io.LimitReader(got.Body, minPartSize))
		if err == nil && int64(len(w.buf)) != size {
			err = fmt.Errorf("read %d bytes of %d", len(w.buf), size)
		}
		if err != nil {
			return fmt.Errorf("s3: appending to %s: %w", w.path, err)
		}
		w.size = size
		return nil
	}
	created, err := d.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &d.bucket, Key: &w.key})
	if err != nil {
		return d.fail("appending to", w.path, err)
	}
	id := aws.ToString(created.UploadId)
	parts, err := d.copyParts(ctx, w.key, id, 1, w.key, aws.ToString(head.ETag), size)
	if err != nil {
		ctx, cancel := detached(ctx)
		defer cancel()
		_ = d.abort(ctx, w.key, id)
		return d.fail("appending to", w.path, err)
	}
	w.uploadID, w.own, w.parts, w.partsSize, w.size = id, true, parts, size, size
	return nil
}

// partLimit is the size of the next part: defaultPartSize (or what a test
// set), growing by that every 1000 parts.
func (w *writer) partLimit() int {
	return int(w.d.partSize * int64(1+len(w.parts)/1000))
}

// Write buffers b, uploading the buffer as the next part each time it
// holds a whole part and more bytes come.
func (w *writer) Write(b []byte) (int, error) {
	if w.closed {
		return 0, w.errClosed()
	}
	n := 0
	for len(b) > 0 {
		limit := w.partLimit()
		if len(w.buf) >= limit {
			if err := w.flush(w.ctx); err != nil {
				return n, err
			}
			continue
		}
		k := min(len(b), limit-len(w.buf))
		w.buf = grow(w.buf, k, limit)
		w.buf = append(w.buf, b[:k]...)
		b = b[k:]
		n += k
		w.size += int64(k)
	}
	return n, nil
}

// grow returns buf with room for k more bytes, doubling its capacity up to
// limit.
func grow(buf []byte, k, limit int) []byte {
	if cap(buf)-len(buf) >= k {
		return buf
	}
	grown := make([]byte, len(buf), min(max(2*cap(buf), len(buf)+k, 64<<10), limit))
	copy(grown, buf)
	return grown
}

// flush uploads the buffer as the next part, beginning the multipart
// upload if this is the first.
func (w *writer) flush(ctx context.Context) error {
	d := w.d
	n := int32(len(w.parts) + 1)
	if n > maxParts {
		return fmt.Errorf("s3: writing %s: more than %d parts, the most S3 allows", w.path, maxParts)
	}
	if w.uploadID == "" {
		created, err := d.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &d.bucket, Key: &w.key})
		if err != nil {
			return fmt.Errorf("s3: writing %s: starting a multipart upload: %w", w.path, err)
		}
		w.uploadID, w.own = aws.ToString(created.UploadId), true
	}
	out, err := d.client.UploadPart(ctx, &s3.UploadPartInput{
		Bucket: &d.bucket, Key: &w.key, UploadId: &w.uploadID, PartNumber: &n,
		Body: bytes.NewReader(w.buf), ContentLength: aws.Int64(int64(len(w.buf))),
	})
	if err != nil {
		return fmt.Errorf("s3: writing %s: uploading part %d: %w", w.path, n, err)
	}
	w.parts = append(w.parts, types.CompletedPart{ETag: out.ETag, PartNumber: &n})
	w.partsSize += int64(len(w.buf))
	w.buf = w.buf[:0]
	return nil
}

// Size is the size of the content so far.
func (w *writer) Size() int64 { return w.size }

// Commit stores the content at the writer's key: one PutObject if no part
// was uploaded, else the buffer as the last part and
// CompleteMultipartUpload. An append writer then deletes the pending object
// it continued.
func (w *writer) Commit(ctx context.Context) error {
	if w.closed {
		return w.errClosed()
	}
	w.closed = true
	defer w.release()
	if err := ctx.Err(); err != nil {
		w.discard(ctx)
		return err
	}
	if err := w.publish(ctx); err != nil {
		w.discard(ctx)
		return w.d.fail("committing", w.path, err)
	}
	if w.resumed != nil {
		// The upload it referred to is complete, or was never begun.
		if err := w.d.deleteKeys(ctx, []string{w.d.pendingKey(w.path)}); err != nil {
			return w.d.fail("committing (deleting the pending object)", w.path, err)
		}
	}
	return nil
}

func (w *writer) publish(ctx context.Context) error {
	d := w.d
	if w.uploadID == "" {
		_, err := d.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket: &d.bucket, Key: &w.key,
			Body: bytes.NewReader(w.buf), ContentLength: aws.Int64(int64(len(w.buf))),
		})
		return err
	}
	if len(w.buf) > 0 || len(w.parts) == 0 {
		if err := w.flush(ctx); err != nil {
			return err
		}
	}
	_, err := d.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &d.bucket, Key: &w.key, UploadId: &w.uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: w.parts},
	})
	return err
}

// Close keeps the content for a later append writer, in any process: the
// buffer goes up as one more part if it is big enough for one, and the rest
// into the pending object, with the upload's id and parts. The committed
// object it replaces is deleted. Close carries on if the Writer's context
// is done (what was received must not be lost), for up to 5 minutes.
func (w *writer) Close() error {
	if w.closed {
		return w.errClosed()
	}
	w.closed = true
	defer w.release()
	d := w.d
	ctx, cancel := detached(w.ctx)
	defer cancel()
	if len(w.buf) >= minPartSize {
		if err := w.flush(ctx); err != nil {
			return err
		}
	}
	prev := w.resumed
	if !w.appending {
		var err error
		if prev, err = d.headPending(ctx, w.path); err != nil {
			return d.fail("closing", w.path, err)
		}
	}
	in := &s3.PutObjectInput{
		Bucket: &d.bucket, Key: aws.String(d.pendingKey(w.path)),
		Body: bytes.NewReader(w.buf), ContentLength: aws.Int64(int64(len(w.buf))),
	}
	if w.uploadID != "" {
		in.Metadata = map[string]string{
			metaUploadID:  w.uploadID,
			metaParts:     strconv.Itoa(len(w.parts)),
			metaPartsSize: strconv.FormatInt(w.partsSize, 10),
		}
	}
	if _, err := d.client.PutObject(ctx, in); err != nil {
		return d.fail("closing", w.path, err)
	}
	if w.replaces || !w.appending {
		if err := d.deleteKeys(ctx, []string{w.key}); err != nil {
			return d.fail("closing (deleting the content it replaces)", w.path, err)
		}
	}
	if prev != nil && prev.uploadID != "" && prev.uploadID != w.uploadID {
		if err := d.abort(ctx, w.key, prev.uploadID); err != nil {
			return d.fail("closing", w.path, err)
		}
	}
	return nil
}

// Cancel aborts the writer's multipart upload. An append writer also
// deletes the content it continued; with ctx done it leaves that in place
// and only aborts an upload it began itself.
func (w *writer) Cancel(ctx context.Context) error {
	if w.closed {
		return w.errClosed()
	}
	w.closed = true
	defer w.release()
	if err := ctx.Err(); err != nil {
		w.discard(ctx)
		return err
	}
	d := w.d
	if !w.appending {
		if w.own {
			if err := d.abort(ctx, w.key, w.uploadID); err != nil {
				return d.fail("cancelling", w.path, err)
			}
		}
		return nil
	}
	if w.uploadID != "" {
		if err := d.abort(ctx, w.key, w.uploadID); err != nil {
			return d.fail("cancelling", w.path, err)
		}
	}
	if err := d.deleteKeys(ctx, []string{w.key, d.pendingKey(w.path)}); err != nil {
		return d.fail("cancelling", w.path, err)
	}
	return nil
}

// discard aborts the multipart upload this writer began, if any, even with
// ctx done: nothing else would.
func (w *writer) discard(ctx context.Context) {
	if w.own {
		ctx, cancel := detached(ctx)
		defer cancel()
		_ = w.d.abort(ctx, w.key, w.uploadID)
	}
}

// release drops the buffer of an ended writer.
func (w *writer) release() { w.buf = nil }

func (w *writer) errClosed() error {
	return fmt.Errorf("%w: %s", storage.ErrClosed, w.path)
}

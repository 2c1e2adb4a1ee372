package s3

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/berth-registry/berth/storage"
)

// Config says which bucket a Driver uses and how to reach it.
type Config struct {
	Bucket    string
	Region    string // empty: the SDK's chain (AWS_REGION, the shared config), else "us-east-1"
	Endpoint  string // base URL of an S3-compatible server ("http://127.0.0.1:7070"); empty: AWS
	PathStyle bool   // address the bucket in the path, not the host name (most S3-compatible servers)
	// AccessKey and SecretKey are static credentials. With both empty the
	// SDK's default chain is used: the environment, the shared config
	// files, a container or instance role.
	AccessKey string
	SecretKey string
	// Prefix is the root of the storage inside the bucket ("registry");
	// leading, trailing and doubled slashes do not matter. Empty: the
	// bucket's root.
	Prefix string
	// Redirect makes the Driver a storage.Redirector: clients fetch blobs
	// from presigned URLs, valid for PresignExpiry (default 20 minutes).
	Redirect      bool
	PresignExpiry time.Duration
}

const (
	defaultRegion        = "us-east-1"
	defaultPresignExpiry = 20 * time.Minute
	// maxAttempts bounds the tries of one request: the standard retryer
	// retries throttling, 5xx answers and connection errors with
	// exponential backoff and jitter.
	maxAttempts = 5

	// reservedDir is the top-level name under the root that holds the
	// driver's own objects; paths in it are storage.ErrInvalidPath.
	reservedDir = "_berth"
	// pendingDir holds the state of content left by Close (see Driver).
	pendingDir = reservedDir + "/pending/"

	// minPartSize is S3's smallest multipart part but the last.
	minPartSize = 5 << 20
	// defaultPartSize is the size of a writer's first 1000 parts. Part n
	// is defaultPartSize*(1+(n-1)/1000) bytes, so that the 10000 parts S3
	// allows hold 440 GiB while a writer buffers 8 MiB for any blob under
	// 7.8 GiB.
	defaultPartSize = 8 << 20
	// maxParts is S3's limit on the parts of a multipart upload.
	maxParts = 10000
	// maxCopySize is the largest object CopyObject copies, and the largest
	// part UploadPartCopy copies.
	maxCopySize = 5 << 30
	// defaultCopyPartSize is the part size of a multipart copy: big enough
	// for few requests, small enough to copy copyConcurrency parts at once.
	defaultCopyPartSize = 1 << 30
	copyConcurrency     = 4
	// maxIdleConns is how many idle connections to the endpoint the
	// driver keeps: a registry serving many requests at once makes as
	// many S3 calls at once (the SDK's default is 10).
	maxIdleConns = 100
	// detachedTimeout bounds what a writer does after its context is done
	// or without one (Close, and discarding an upload): one part upload
	// and a few small requests.
	detachedTimeout = 5 * time.Minute
	// deleteBatch is how many keys one DeleteObjects call takes at most.
	deleteBatch = 1000
	// defaultPageSize is how many keys one listing call returns at most.
	defaultPageSize = 1000
)

// Driver is a storage.Driver keeping the content at path "/a/b" in the
// object <prefix>/a/b of a bucket: the same relative keys as the
// filesystem driver's files, so that a tree can be copied between the two.
// Directories are implicit, as in S3: a directory is the common prefix of
// the keys below it.
//
//	<prefix>/
//	├── a/b                   committed content of "/a/b"
//	└── _berth/pending/a/b    content of "/a/b" left by Close: its last bytes
//	                          (under 5 MiB) as the body; in its metadata, the
//	                          multipart upload of <prefix>/a/b holding the rest
//	                          (berth-upload-id) and how many parts and bytes of
//	                          it count (berth-parts, berth-parts-size)
//
// A writer buffers one part in memory (8 MiB, more past 1000 parts).
// Committed with less than that, it stores the content with one PutObject;
// otherwise each full part is uploaded as it fills, as a part of a
// multipart upload of the key, and Commit completes that upload.
//
// Close leaves the content resumable by any process using the bucket (Berth
// replicas): it uploads what it buffered as one more part if that is 5 MiB
// or more, and puts the rest and the upload's id in the pending object. A
// later Writer(path, true), in this process or another, reads that object,
// lists the upload's parts, and continues; its Commit completes the upload,
// with the pending bytes as part of the last part, and removes the pending
// object. Content left by Close is a file for Stat, List, Walk and Delete.
// S3 cannot read an unfinished upload, so Reader and Move commit such
// content first (the rare case: the content store reads an upload back only
// when its hash state is lost); an append writer then continues the
// committed object, copying it into a new upload on the server.
//
// Committed content wins over a pending object at the same path: a
// non-append Commit or a Move onto a path leaves any pending object there
// in place, hidden, until Delete or AbortStaleUploads removes it (Close,
// the only way a pending object is made, removes the committed one).
//
// Multipart uploads that no writer finishes (a crashed replica, an
// abandoned upload session) are removed by AbortStaleUploads.
type Driver struct {
	client  *s3.Client
	presign *s3.PresignClient // nil when redirects are off
	bucket  string
	base    string // key prefix of the root: "" or "<prefix>/"
	pending string // base + pendingDir
	// compatible: the endpoint is an S3-compatible server, not AWS.
	compatible bool

	// Sizes that tests make small to exercise many parts or pages quickly.
	partSize      int64 // a writer's first part size; at least minPartSize
	copyPartSize  int64 // a multipart copy's part size, between minPartSize and maxCopySize
	copyThreshold int64 // Move copies bigger objects in parts; at most maxCopySize
	pageSize      int32 // keys per listing call; 1 to 1000
}

var (
	_ storage.Driver        = (*Driver)(nil)
	_ storage.Redirector    = (*Driver)(nil)
	_ storage.UploadJanitor = (*Driver)(nil)
	_ storage.BatchDeleter  = (*Driver)(nil)
)

// directoryRace tells the retryer to try again a write that an S3-compatible
// store backed by a filesystem refused because a concurrent delete was
// removing the emptied directory the new object goes into (versitygw answers
// 409 ExistingObjectIsDirectory): the layout has no key that is a prefix of
// another, so the conflict is always transient. AWS S3 never answers so.
func directoryRace(err error) aws.Ternary {
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "ExistingObjectIsDirectory" {
		return aws.TrueTernary
	}
	return aws.UnknownTernary
}

// New returns a Driver for the bucket cfg names, after checking with
// HeadBucket that it is there and that the credentials may use it.
func New(ctx context.Context, cfg Config) (*Driver, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("s3: no bucket given")
	}
	if (cfg.AccessKey == "") != (cfg.SecretKey == "") {
		return nil, errors.New("s3: give both an access key and a secret key, or neither (the default credential chain)")
	}
	opts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
			t.MaxIdleConns, t.MaxIdleConnsPerHost = maxIdleConns, maxIdleConns
		})),
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = maxAttempts
				// No client-side retry quota: when S3 throttles (503
				// SlowDown) every request should back off and retry,
				// not fail fast once a shared token bucket is empty.
				o.RateLimiter = ratelimit.None
				o.Retryables = append(o.Retryables, retry.IsErrorRetryableFunc(directoryRace))
			})
		}),
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.AccessKey != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKey, cfg.SecretKey, "")))
	}
	if cfg.Endpoint != "" {
		// By default the SDK adds CRC checksums to every upload, sent as
		// aws-chunked trailers, and checks those of downloads. Many
		// S3-compatible servers reject or mishandle the trailers (or the
		// checksums of multipart uploads), so with an endpoint the SDK
		// sends and checks checksums only where the API requires them
		// (DeleteObjects). AWS itself keeps the defaults.
		opts = append(opts,
			config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
			config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3: loading the AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = defaultRegion // neither the config nor the SDK's chain named one
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
	})

	d := &Driver{
		client:        client,
		compatible:    cfg.Endpoint != "",
		bucket:        cfg.Bucket,
		partSize:      defaultPartSize,
		copyPartSize:  defaultCopyPartSize,
		copyThreshold: maxCopySize,
		pageSize:      defaultPageSize,
	}
	if prefix := strings.Trim(path.Clean("/"+cfg.Prefix), "/"); prefix != "" {
		d.base = prefix + "/"
	}
	d.pending = d.base + pendingDir
	if cfg.Redirect {
		expiry := cfg.PresignExpiry
		if expiry <= 0 {
			expiry = defaultPresignExpiry
		}
		d.presign = s3.NewPresignClient(client, s3.WithPresignExpires(expiry))
	}

	if _, err := client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &d.bucket}); err != nil {
		where := cfg.Endpoint
		if where == "" {
			where = "AWS region " + awsCfg.Region
		}
		return nil, fmt.Errorf("s3: bucket %q at %s is not reachable with these credentials: %w", cfg.Bucket, where, err)
	}
	return d, nil
}

// key returns the object key of valid path p, other than "/".
func (d *Driver) key(p string) string { return d.base + p[1:] }

// pendingKey returns the key of the pending object of valid path p.
func (d *Driver) pendingKey(p string) string { return d.pending + p[1:] }

// dirPrefix returns the key prefix of everything below directory p.
func (d *Driver) dirPrefix(p string) string {
	if p == "/" {
		return d.base
	}
	return d.key(p) + "/"
}

// pendingDirPrefix returns the key prefix of the pending objects below
// directory p.
func (d *Driver) pendingDirPrefix(p string) string {
	if p == "/" {
		return d.pending
	}
	return d.pendingKey(p) + "/"
}

// check validates p, rejects the reserved directory and, for the methods
// that change content, the root.
func check(p string, changes bool) error {
	validate := storage.ValidatePath
	if changes {
		validate = storage.ValidateChangePath
	}
	if err := validate(p); err != nil {
		return err
	}
	if first, _, _ := strings.Cut(p[1:], "/"); first == reservedDir {
		return fmt.Errorf("%w %q: /%s is reserved for the s3 driver's own objects", storage.ErrInvalidPath, p, reservedDir)
	}
	return nil
}

// Reader returns the body of a GetObject of the content at p from offset
// (a ranged GET), committing content left by Close first.
func (d *Driver) Reader(ctx context.Context, p string, offset int64) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := check(p, false); err != nil {
		return nil, err
	}
	if p == "/" {
		return nil, notFound(p)
	}
	if offset < 0 {
		return nil, fmt.Errorf("%w: %d for %s", storage.ErrInvalidOffset, offset, p)
	}
	in := &s3.GetObjectInput{Bucket: &d.bucket, Key: aws.String(d.key(p))}
	if offset > 0 {
		in.Range = aws.String(fmt.Sprintf("bytes=%d-", offset))
	}
	out, err := d.client.GetObject(ctx, in)
	if isNotFound(err) {
		// Content left by Close is committed first: S3 cannot read an
		// unfinished multipart upload.
		var committed bool
		if committed, err = d.commitPending(ctx, p); err != nil {
			return nil, d.fail("reading", p, err)
		}
		if !committed {
			return nil, notFound(p)
		}
		out, err = d.client.GetObject(ctx, in)
	}
	if err == nil {
		if offset > 0 && !strings.HasPrefix(aws.ToString(out.ContentRange), fmt.Sprintf("bytes %d-", offset)) {
			// A server that ignores Range sends everything: skip to offset.
			if _, err := io.CopyN(io.Discard, out.Body, offset); err != nil {
				out.Body.Close()
				return nil, fmt.Errorf("s3: reading %s: skipping to offset %d: %w", p, offset, err)
			}
		}
		return out.Body, nil
	}
	if offset == 0 || !hasCode(err, "InvalidRange") {
		return nil, d.fail("reading", p, err)
	}
	// The offset is at or past the end: S3 answers both with 416.
	head, err := d.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &d.bucket, Key: in.Key})
	if err != nil {
		return nil, d.fail("reading", p, err)
	}
	if size := aws.ToInt64(head.ContentLength); offset != size {
		return nil, fmt.Errorf("%w: %d for %s of %d bytes", storage.ErrInvalidOffset, offset, p, size)
	}
	return io.NopCloser(strings.NewReader("")), nil
}

// Writer returns a writer for p; see Driver for how it uploads.
func (d *Driver) Writer(ctx context.Context, p string, appending bool) (storage.FileWriter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := check(p, true); err != nil {
		return nil, err
	}
	w := &writer{d: d, ctx: ctx, path: p, key: d.key(p), appending: appending}
	if appending {
		if err := w.resume(ctx); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// CreateExclusive puts b at p with If-None-Match: *, which S3 (and the
// stores that implement conditional writes) refuse with 412 when an object
// is at the key: storage.ErrExists. A store that ignores the condition
// overwrites; the store package's claims read theirs back for that case.
func (d *Driver) CreateExclusive(ctx context.Context, p string, b []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := check(p, true); err != nil {
		return err
	}
	_, err := d.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &d.bucket, Key: aws.String(d.key(p)), IfNoneMatch: aws.String("*"),
		Body: bytes.NewReader(b), ContentLength: aws.Int64(int64(len(b))),
	})
	if hasCode(err, "PreconditionFailed") || hasCode(err, "ConditionalRequestConflict") {
		return fmt.Errorf("%w: %s", storage.ErrExists, p)
	}
	var respErr *awshttp.ResponseError
	if errors.As(err, &respErr) && (respErr.HTTPStatusCode() == http.StatusPreconditionFailed || respErr.HTTPStatusCode() == http.StatusConflict) {
		return fmt.Errorf("%w: %s", storage.ErrExists, p)
	}
	if err != nil {
		return d.fail("creating", p, err)
	}
	return nil
}

// Stat describes the committed file, the content left by Close, or the
// directory at p, in that order of precedence.
func (d *Driver) Stat(ctx context.Context, p string) (storage.FileInfo, error) {
	if err := ctx.Err(); err != nil {
		return storage.FileInfo{}, err
	}
	if err := check(p, false); err != nil {
		return storage.FileInfo{}, err
	}
	if p == "/" {
		return storage.FileInfo{Path: p, IsDir: true}, nil
	}
	head, err := d.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &d.bucket, Key: aws.String(d.key(p))})
	if err == nil {
		return storage.FileInfo{Path: p, Size: aws.ToInt64(head.ContentLength), ModTime: aws.ToTime(head.LastModified)}, nil
	}
	if !isNotFound(err) {
		return storage.FileInfo{}, d.fail("stat", p, err)
	}
	var (
		pend            *pending
		dir, pendingDir bool
	)
	err = parallel(
		func() (err error) { pend, err = d.headPending(ctx, p); return err },
		func() (err error) { dir, err = d.hasKeys(ctx, d.dirPrefix(p)); return err },
		func() (err error) { pendingDir, err = d.hasKeys(ctx, d.pendingDirPrefix(p)); return err },
	)
	switch {
	case err != nil:
		return storage.FileInfo{}, d.fail("stat", p, err)
	case pend != nil:
		return storage.FileInfo{Path: p, Size: pend.size(), ModTime: pend.modTime}, nil
	case dir || pendingDir:
		return storage.FileInfo{Path: p, IsDir: true}, nil
	}
	return storage.FileInfo{}, notFound(p)
}

// hasKeys reports whether any key starts with prefix.
func (d *Driver) hasKeys(ctx context.Context, prefix string) (bool, error) {
	out, err := d.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{
		Bucket: &d.bucket, Prefix: &prefix, MaxKeys: aws.Int32(1),
	})
	if err != nil {
		return false, err
	}
	return len(out.Contents) > 0, nil
}

// List merges the names below p of committed content, directories, and
// content left by Close.
func (d *Driver) List(ctx context.Context, p string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := check(p, false); err != nil {
		return nil, err
	}
	var committed, pending []string
	err := parallel(
		func() (err error) { committed, err = d.listNames(ctx, d.dirPrefix(p)); return err },
		func() (err error) { pending, err = d.listNames(ctx, d.pendingDirPrefix(p)); return err },
	)
	if err != nil {
		return nil, d.fail("listing", p, err)
	}
	names := append(committed, pending...)
	if p == "/" {
		names = slices.DeleteFunc(names, func(name string) bool { return name == reservedDir })
	}
	if len(names) == 0 && p != "/" {
		return nil, notFound(p)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	paths := make([]string, len(names))
	for i, name := range names {
		paths[i] = join(p, name)
	}
	return paths, nil
}

// listNames returns the names of the objects and common prefixes directly
// below prefix (a directory's, ending in "/"), leaving out those that no
// valid path can name (such as the "dir/" markers some tools create).
func (d *Driver) listNames(ctx context.Context, prefix string) ([]string, error) {
	var names []string
	pages := s3.NewListObjectsV2Paginator(d.client, &s3.ListObjectsV2Input{
		Bucket: &d.bucket, Prefix: &prefix, Delimiter: aws.String("/"), MaxKeys: &d.pageSize,
	})
	add := func(name string) {
		if validName(name) {
			names = append(names, name)
		}
	}
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, o := range page.Contents {
			add(strings.TrimPrefix(aws.ToString(o.Key), prefix))
		}
		for _, cp := range page.CommonPrefixes {
			add(strings.TrimSuffix(strings.TrimPrefix(aws.ToString(cp.Prefix), prefix), "/"))
		}
	}
	return names, nil
}

// validName reports whether name can be one component of a storage path.
func validName(name string) bool {
	return name != "" && !strings.Contains(name, "/") && storage.ValidatePath("/"+name) == nil
}

// Move copies src to dst on the server (CopyObject, or a multipart
// UploadPartCopy above 5 GiB) and deletes src.
func (d *Driver) Move(ctx context.Context, src, dst string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := check(src, true); err != nil {
		return err
	}
	if err := check(dst, true); err != nil {
		return err
	}
	srcKey, dstKey := d.key(src), d.key(dst)
	head, err := d.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &d.bucket, Key: &srcKey})
	if isNotFound(err) {
		// Content left by Close is committed first, to be copied.
		var committed bool
		if committed, err = d.commitPending(ctx, src); err != nil {
			return d.fail("moving", src, err)
		}
		if !committed {
			return notFound(src)
		}
		head, err = d.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &d.bucket, Key: &srcKey})
	}
	if err != nil {
		return d.fail("moving", src, err)
	}
	if src == dst {
		return nil
	}
	size := aws.ToInt64(head.ContentLength)
	if size <= d.copyThreshold {
		_, err = d.client.CopyObject(ctx, &s3.CopyObjectInput{
			Bucket: &d.bucket, Key: &dstKey, CopySource: aws.String(d.copySource(srcKey)),
			CopySourceIfMatch: head.ETag,
		})
	} else {
		err = d.copyMultipart(ctx, srcKey, dstKey, size, aws.ToString(head.ETag))
	}
	if err != nil {
		return d.fail("moving "+src+" to", dst, err)
	}
	// The pending object of src goes too, should a hidden one be there, so
	// that it cannot surface once the committed content is gone.
	if err := d.deleteKeys(ctx, []string{srcKey, d.pendingKey(src)}); err != nil {
		return d.fail("moving (deleting the source)", src, err)
	}
	return nil
}

// copyMultipart copies the object srcKey, of size bytes and ETag etag, to
// dstKey with a multipart upload of UploadPartCopy parts.
func (d *Driver) copyMultipart(ctx context.Context, srcKey, dstKey string, size int64, etag string) error {
	created, err := d.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &d.bucket, Key: &dstKey})
	if err != nil {
		return err
	}
	id := aws.ToString(created.UploadId)
	parts, err := d.copyParts(ctx, dstKey, id, 1, srcKey, etag, size)
	if err == nil {
		_, err = d.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
			Bucket: &d.bucket, Key: &dstKey, UploadId: &id,
			MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		})
	}
	if err != nil {
		ctx, cancel := detached(ctx)
		defer cancel()
		_ = d.abort(ctx, dstKey, id)
	}
	return err
}

// copyParts copies the object srcKey (of size bytes, at least minPartSize,
// pinned to ETag etag) into upload id of key as parts first, first+1, ...,
// each of copyPartSize bytes but the last, which holds the rest (at least
// minPartSize, so that more parts may follow). Up to copyConcurrency parts
// are copied at once.
func (d *Driver) copyParts(ctx context.Context, key, id string, first int32, srcKey, etag string, size int64) ([]types.CompletedPart, error) {
	var ranges [][2]int64 // first and last byte
	for start := int64(0); start < size; start += d.copyPartSize {
		ranges = append(ranges, [2]int64{start, min(start+d.copyPartSize, size) - 1})
	}
	if n := len(ranges); n > 1 && ranges[n-1][1]-ranges[n-1][0]+1 < minPartSize {
		ranges[n-2][1] = size - 1
		ranges = ranges[:n-1]
	}
	if int(first)-1+len(ranges) > maxParts {
		return nil, fmt.Errorf("copying %d bytes takes more than %d parts", size, maxParts)
	}
	parts := make([]types.CompletedPart, len(ranges))
	errs := make([]error, len(ranges))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, copyConcurrency)
	var wg sync.WaitGroup
	for i, r := range ranges {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			n := first + int32(i)
			out, err := d.client.UploadPartCopy(ctx, &s3.UploadPartCopyInput{
				Bucket: &d.bucket, Key: &key, UploadId: &id, PartNumber: &n,
				CopySource:        aws.String(d.copySource(srcKey)),
				CopySourceIfMatch: aws.String(etag),
				CopySourceRange:   aws.String(fmt.Sprintf("bytes=%d-%d", r[0], r[1])),
			})
			if err != nil {
				errs[i] = err
				cancel()
				return
			}
			parts[i] = types.CompletedPart{ETag: out.CopyPartResult.ETag, PartNumber: &n}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return parts, nil
}

// copySource returns the x-amz-copy-source of key: bucket and key,
// URL-encoded. Everything but unreserved characters and the slashes
// between names is escaped (url.PathEscape leaves "+" alone, which some
// servers decode as a space).
func (d *Driver) copySource(key string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	s := d.bucket + "/" + key
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_.~/", c) >= 0 {
			b.WriteByte(c)
		} else {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}

// Delete removes the committed file, the content left by Close, or the
// directory tree at p: every object whose key is p's or starts with p's and
// "/" (never a sibling such as "/ab" of "/a"), DeleteObjects 1000 keys at a
// time, and the multipart uploads that content left by Close refers to.
func (d *Driver) Delete(ctx context.Context, p string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := check(p, true); err != nil {
		return err
	}
	key := d.key(p)
	var (
		file    bool
		pending []string
	)
	err := parallel(
		func() error {
			_, err := d.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &d.bucket, Key: &key})
			if isNotFound(err) {
				return nil
			}
			file = err == nil
			return err
		},
		func() (err error) { pending, err = d.pendingBelow(ctx, p); return err },
	)
	if err != nil {
		return d.fail("deleting", p, err)
	}
	for _, pk := range pending {
		if err := d.deletePending(ctx, pk); err != nil {
			return d.fail("deleting", p, err)
		}
	}
	found := file || len(pending) > 0
	if file {
		if err := d.deleteKeys(ctx, []string{key}); err != nil {
			return d.fail("deleting", p, err)
		}
	}
	prefix := key + "/"
	pages := s3.NewListObjectsV2Paginator(d.client, &s3.ListObjectsV2Input{Bucket: &d.bucket, Prefix: &prefix, MaxKeys: &d.pageSize})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return d.fail("deleting", p, err)
		}
		keys := make([]string, len(page.Contents))
		for i, o := range page.Contents {
			keys[i] = aws.ToString(o.Key)
		}
		if len(keys) > 0 {
			found = true
			if err := d.deleteKeys(ctx, keys); err != nil {
				return d.fail("deleting", p, err)
			}
		}
	}
	if !found {
		return notFound(p)
	}
	return nil
}

// pendingBelow returns the keys of the pending objects of p and of the
// paths below it.
func (d *Driver) pendingBelow(ctx context.Context, p string) ([]string, error) {
	exact := d.pendingKey(p)
	var keys []string
	// One listing finds both: the pending tree is small, so the siblings
	// it also returns ("/ab" for "/a") cost little.
	pages := s3.NewListObjectsV2Paginator(d.client, &s3.ListObjectsV2Input{Bucket: &d.bucket, Prefix: &exact, MaxKeys: &d.pageSize})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, o := range page.Contents {
			if k := aws.ToString(o.Key); k == exact || strings.HasPrefix(k, exact+"/") {
				keys = append(keys, k)
			}
		}
	}
	return keys, nil
}

// deleteKeys deletes keys, deleteBatch at a time. Missing keys are no error.
func (d *Driver) deleteKeys(ctx context.Context, keys []string) error {
	for batch := range slices.Chunk(keys, deleteBatch) {
		failed, err := d.deleteObjects(ctx, batch)
		if err != nil {
			return err
		}
		if len(failed) > 0 {
			e := failed[0]
			return fmt.Errorf("deleting %d of %d objects failed; %s: %s %s",
				len(failed), len(batch), aws.ToString(e.Key), aws.ToString(e.Code), aws.ToString(e.Message))
		}
	}
	return nil
}

// withContentMD5 adds a Content-MD5 header to a request. AWS requires a
// checksum of DeleteObjects' body and takes the CRC32 the SDK sends; many
// S3-compatible servers accept only Content-MD5 there, which the SDK no
// longer sends.
func withContentMD5(o *s3.Options) {
	o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
		return stack.Build.Add(middleware.BuildMiddlewareFunc("BerthContentMD5",
			func(ctx context.Context, in middleware.BuildInput, next middleware.BuildHandler) (middleware.BuildOutput, middleware.Metadata, error) {
				req, ok := in.Request.(*smithyhttp.Request)
				if !ok || req.GetStream() == nil {
					return next.HandleBuild(ctx, in)
				}
				body, err := io.ReadAll(req.GetStream())
				if err != nil {
					return middleware.BuildOutput{}, middleware.Metadata{}, err
				}
				sum := md5.Sum(body)
				req.Header.Set("Content-MD5", base64.StdEncoding.EncodeToString(sum[:]))
				if in.Request, err = req.SetStream(bytes.NewReader(body)); err != nil {
					return middleware.BuildOutput{}, middleware.Metadata{}, err
				}
				return next.HandleBuild(ctx, in)
			}), middleware.After)
	})
}

// RedirectURL returns a presigned GET or HEAD URL of the committed content
// at p, valid for Config.PresignExpiry. It does not check that the content
// is there. It returns an error wrapping storage.ErrUnsupported when
// Config.Redirect is off, and for other methods.
func (d *Driver) RedirectURL(ctx context.Context, method, p string) (string, error) {
	if d.presign == nil {
		return "", fmt.Errorf("%w: s3 redirects are off", storage.ErrUnsupported)
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if err := check(p, true); err != nil {
		return "", err
	}
	key := aws.String(d.key(p))
	var (
		req *v4.PresignedHTTPRequest
		err error
	)
	switch method {
	case http.MethodGet:
		req, err = d.presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: &d.bucket, Key: key})
	case http.MethodHead:
		req, err = d.presign.PresignHeadObject(ctx, &s3.HeadObjectInput{Bucket: &d.bucket, Key: key})
	default:
		return "", fmt.Errorf("%w: s3 presigns GET and HEAD, not %s", storage.ErrUnsupported, method)
	}
	if err != nil {
		return "", fmt.Errorf("s3: presigning %s %s: %w", method, p, err)
	}
	return req.URL, nil
}

// detached returns a context that is not cancelled with ctx, for work that
// must be done even so (keeping what a writer received, aborting an
// upload), bounded by detachedTimeout.
func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), detachedTimeout)
}

// parallel runs fns at once and returns the first error in argument order.
func parallel(fns ...func() error) error {
	errs := make([]error, len(fns))
	var wg sync.WaitGroup
	for i, fn := range fns[1:] {
		wg.Go(func() { errs[i+1] = fn() })
	}
	errs[0] = fns[0]()
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
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

// fail turns err from S3, met doing what (a verb) on path p, into the error
// to return: storage.ErrNotFound where it means nothing is there.
func (d *Driver) fail(what, p string, err error) error {
	if isNotFound(err) {
		return notFound(p)
	}
	if isFull(err) {
		return fmt.Errorf("%w: s3: %s %s: %w", storage.ErrFull, what, p, err)
	}
	return fmt.Errorf("s3: %s %s: %w", what, p, err)
}

// isFull reports whether err from S3 means the server has no room for a
// write: a quota or a full disk behind an S3-compatible server (MinIO's
// codes, 507 Insufficient Storage), or the operating system's ENOSPC as
// the server passed it on.
func isFull(err error) bool {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "XMinioStorageFull", "StorageFull", "QuotaExceeded", "XMinioAdminBucketQuotaExceeded":
			return true
		}
		if strings.Contains(apiErr.ErrorMessage(), "no space left on device") {
			return true
		}
	}
	var respErr *awshttp.ResponseError
	return errors.As(err, &respErr) && respErr.HTTPStatusCode() == http.StatusInsufficientStorage
}

// isNotFound reports whether err from S3 means that no object (or no
// multipart upload) is at a key; a missing bucket is another error.
func isNotFound(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, storage.ErrNotFound) {
		return true
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "NoSuchKey", "NotFound", "NoSuchUpload":
			return true
		case "NoSuchBucket":
			return false
		}
	}
	var respErr *awshttp.ResponseError
	return errors.As(err, &respErr) && respErr.HTTPStatusCode() == http.StatusNotFound
}

// hasCode reports whether err is an S3 error with the given code.
func hasCode(err error, code string) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode() == code
}

package s3

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// deleteConcurrency is how many requests DeleteFiles has in flight at
// most: DeleteObjects of up to 1000 keys each, or the few requests that
// remove one path's content left by Close.
const deleteConcurrency = 4

// DeleteFiles deletes the file at each path as Delete does a file's: the
// content left by Close there (its pending object, and the multipart
// upload that object refers to) first, then the committed object. A
// directory at a path is left alone: its objects have other keys.
//
// It finds the content left by Close with one listing of the pending
// objects below the directory that holds all the paths (rather than a
// request per path; the pending tree is small), removes that content for
// the paths that have some, then deletes the committed objects with
// DeleteObjects, 1000 keys a request, up to four requests at once.
// A path whose content left by Close could not be removed keeps its
// committed object, as with Delete, so that trying again finds it whole.
// A key that DeleteObjects reports it could not delete makes its path's
// result an error wrapping a smithy.APIError with S3's code and message.
func (d *Driver) DeleteFiles(ctx context.Context, paths []string) []error {
	errs := make([]error, len(paths))
	if err := ctx.Err(); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	index := map[string][]int{} // each valid path: where it is in paths
	var unique []string
	for i, p := range paths {
		if err := check(p, true); err != nil {
			errs[i] = err
			continue
		}
		if _, ok := index[p]; !ok {
			unique = append(unique, p)
		}
		index[p] = append(index[p], i)
	}
	for j, err := range d.deleteFiles(ctx, unique) {
		for _, i := range index[unique[j]] {
			errs[i] = err
		}
	}
	return errs
}

// deleteFiles is DeleteFiles for valid paths, each given once.
func (d *Driver) deleteFiles(ctx context.Context, paths []string) []error {
	errs := make([]error, len(paths))
	if len(paths) == 0 {
		return errs
	}
	fail := func(j int, err error) { errs[j] = fmt.Errorf("s3: deleting %s: %w", paths[j], err) }

	closed, err := d.pendingAmong(ctx, paths)
	if err != nil {
		for j := range paths {
			fail(j, err)
		}
		return errs
	}
	sem := make(chan struct{}, deleteConcurrency)
	var wg sync.WaitGroup
	for _, j := range closed {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := d.deletePending(ctx, d.pendingKey(paths[j])); err != nil {
				fail(j, err)
			}
		})
	}
	wg.Wait()

	var (
		keys   []string
		owners []int // owners[k] is the index in paths of keys[k]
	)
	for j, p := range paths {
		if errs[j] == nil {
			keys = append(keys, d.key(p))
			owners = append(owners, j)
		}
	}
	for start := 0; start < len(keys); start += deleteBatch {
		end := min(start+deleteBatch, len(keys))
		batch, owner := keys[start:end], owners[start:end]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := ctx.Err(); err != nil {
				for _, j := range owner {
					errs[j] = err
				}
				return
			}
			failed, err := d.deleteObjects(ctx, batch)
			if err != nil {
				for _, j := range owner {
					fail(j, err)
				}
				return
			}
			for _, e := range failed {
				code := aws.ToString(e.Code)
				if code == "NoSuchKey" {
					continue // gone already: deleted
				}
				apiErr := &smithy.GenericAPIError{Code: code, Message: aws.ToString(e.Message)}
				k := indexOf(batch, aws.ToString(e.Key))
				if k < 0 {
					// An error about a key not asked for: which path it
					// concerns is unknown, so none is trusted.
					for _, j := range owner {
						fail(j, fmt.Errorf("DeleteObjects reported an error for key %q, not in the request: %w", aws.ToString(e.Key), apiErr))
					}
					return
				}
				fail(owner[k], apiErr)
			}
		})
	}
	wg.Wait()
	return errs
}

// indexOf returns the index of key in keys, or -1.
func indexOf(keys []string, key string) int {
	for k, s := range keys {
		if s == key {
			return k
		}
	}
	return -1
}

// pendingAmong returns the indexes of the paths that have content left by
// Close: it lists the pending objects below the deepest directory that
// holds all the paths, once.
func (d *Driver) pendingAmong(ctx context.Context, paths []string) ([]int, error) {
	want := make(map[string]int, len(paths)) // pending key: index in paths
	prefix := d.pendingKey(paths[0])
	for j, p := range paths {
		k := d.pendingKey(p)
		want[k] = j
		n := 0
		for n < len(prefix) && n < len(k) && prefix[n] == k[n] {
			n++
		}
		prefix = prefix[:n]
	}
	// Cut at a directory, never inside a name (nor a UTF-8 sequence);
	// d.pending ends in "/", so there is one.
	prefix = prefix[:strings.LastIndexByte(prefix, '/')+1]

	var found []int
	pages := s3.NewListObjectsV2Paginator(d.client, &s3.ListObjectsV2Input{Bucket: &d.bucket, Prefix: &prefix, MaxKeys: &d.pageSize})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, o := range page.Contents {
			if j, ok := want[aws.ToString(o.Key)]; ok {
				found = append(found, j)
			}
		}
	}
	return found, nil
}

// deleteObjects deletes keys (at most deleteBatch) with one DeleteObjects
// request, and returns the errors it reports for single keys. Missing keys
// are no error.
func (d *Driver) deleteObjects(ctx context.Context, keys []string) ([]types.Error, error) {
	ids := make([]types.ObjectIdentifier, len(keys))
	for i, k := range keys {
		ids[i] = types.ObjectIdentifier{Key: aws.String(k)}
	}
	var opts []func(*s3.Options)
	if d.compatible {
		opts = append(opts, withContentMD5)
	}
	out, err := d.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{
		Bucket: &d.bucket,
		Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)},
	}, opts...)
	if err != nil {
		return nil, err
	}
	return out.Errors, nil
}

package s3

import (
	"container/heap"
	"context"
	"errors"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/berth-registry/berth/storage"
)

// Walk visits everything below p in io/fs.WalkDir order. It reads two flat
// listings (ListObjectsV2 without a delimiter: 1000 keys a call, rather than
// a call per directory), of the committed objects below p and of the
// pending objects below p, merged in key order, and reorders that stream on
// the fly, holding back only what a key still to come may precede.
//
// A listing is in byte order of whole keys, which is walk order except
// where a name is followed by a byte below '/': "a-b" lists before "a/1",
// but walk order visits directory "a" and its contents first. So an entry
// whose path has such a byte (after a name's first) waits until the listing
// has passed the keys that would precede it: for "a-b" and "x/a.b", those
// below "a/" and "x/a/". Entries are visited in the order of their paths
// with "/" taken as the lowest byte, which is walk order. Registry paths
// (hex digests, "data", "link") rarely hold such bytes; repository and tag
// names with "-" or "." hold back their subtree until the sibling they
// might follow has been listed.
func (d *Driver) Walk(ctx context.Context, p string, fn storage.WalkFunc) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := check(p, false); err != nil {
		return err
	}
	entries := &merged{
		a: d.newListing(ctx, d.dirPrefix(p), false, p == "/"),
		b: d.newListing(ctx, d.pendingDirPrefix(p), true, false),
	}
	first, err := entries.peek()
	if err != nil {
		return d.fail("walking", p, err)
	}
	if first == nil {
		if p == "/" {
			return nil
		}
		return notFound(p)
	}

	var (
		held walkHeap // entries read and not yet visited
		dirs []string // the directories of the last entry read, outermost first
		skip string   // a directory whose remaining contents are skipped, with a trailing "/"
	)
	for {
		next, err := entries.peek()
		if err != nil {
			return d.fail("walking", p, err)
		}
		// Visit the held entries that nothing still to come precedes.
		for held.Len() > 0 && (next == nil || held[0].release == "" || next.rel >= held[0].release) {
			e := heap.Pop(&held).(*walkEntry)
			if skip != "" {
				if strings.HasPrefix(e.rel, skip) {
					continue
				}
				skip = ""
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			e.info.Path = join(p, e.rel)
			err := fn(e.info)
			if errors.Is(err, storage.SkipDir) {
				if e.info.IsDir {
					skip = e.rel + "/"
				} else if i := strings.LastIndexByte(e.rel, '/'); i >= 0 {
					skip = e.rel[:i+1]
				} else {
					return nil // the rest of the directory walked
				}
				continue
			}
			if err != nil {
				return err
			}
		}
		if next == nil {
			return nil
		}
		entries.take()
		// Hold the entry and the directories it is the first entry of.
		k := 0
		for i := 0; i < len(next.rel); i++ {
			if next.rel[i] != '/' {
				continue
			}
			if dir := next.rel[:i]; k < len(dirs) && dirs[k] == dir {
				k++
			} else {
				dirs = append(dirs[:k], dir)
				k++
				heap.Push(&held, newWalkEntry(dir, storage.FileInfo{IsDir: true}))
			}
		}
		dirs = dirs[:k]
		heap.Push(&held, newWalkEntry(next.rel, next.info))
	}
}

// walkEntry is a file or directory read from the listings, waiting to be
// visited.
type walkEntry struct {
	rel   string // path relative to the directory walked
	order string // rel with "/" as "\x00": walk order is the byte order of these
	// release is the key (relative, as rel) that the listing must reach
	// before the entry can be visited; "" if it can be at once.
	release string
	info    storage.FileInfo
}

func newWalkEntry(rel string, info storage.FileInfo) *walkEntry {
	e := &walkEntry{rel: rel, order: strings.ReplaceAll(rel, "/", "\x00"), info: info}
	// The first byte below '/' that is not the first of a name: a
	// directory named by what precedes it would come before the entry, and
	// its keys list before that name followed by '0' (the byte after '/').
	// An earlier such byte gives a later key, so the first one is enough.
	for i := 1; i < len(rel); i++ {
		if rel[i] < '/' && rel[i-1] != '/' {
			e.release = rel[:i] + "0"
			break
		}
	}
	return e
}

// walkHeap orders walk entries by walk order (container/heap).
type walkHeap []*walkEntry

func (h walkHeap) Len() int           { return len(h) }
func (h walkHeap) Less(i, j int) bool { return h[i].order < h[j].order }
func (h walkHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *walkHeap) Push(x any)        { *h = append(*h, x.(*walkEntry)) }
func (h *walkHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}

// listed is a file read from a listing.
type listed struct {
	rel  string // key relative to the listing's prefix
	info storage.FileInfo
}

// listing reads the keys below a prefix, page by page, as files.
type listing struct {
	d       *Driver
	ctx     context.Context
	prefix  string
	pending bool // pending objects: the size is the content's, from the metadata
	root    bool // leave out the reserved directory
	pages   *s3.ListObjectsV2Paginator
	page    []types.Object
	next    *listed
}

func (d *Driver) newListing(ctx context.Context, prefix string, pending, root bool) *listing {
	return &listing{
		d: d, ctx: ctx, prefix: prefix, pending: pending, root: root,
		pages: s3.NewListObjectsV2Paginator(d.client, &s3.ListObjectsV2Input{
			Bucket: &d.bucket, Prefix: aws.String(prefix), MaxKeys: &d.pageSize,
		}),
	}
}

// peek returns the next file, or nil at the end.
func (l *listing) peek() (*listed, error) {
	for l.next == nil {
		if len(l.page) == 0 {
			if !l.pages.HasMorePages() {
				return nil, nil
			}
			page, err := l.pages.NextPage(l.ctx)
			if err != nil {
				return nil, err
			}
			l.page = page.Contents
			continue
		}
		o := l.page[0]
		l.page = l.page[1:]
		key := aws.ToString(o.Key)
		rel := strings.TrimPrefix(key, l.prefix)
		if storage.ValidatePath("/"+rel) != nil || l.root && (rel == reservedDir || strings.HasPrefix(rel, reservedDir+"/")) {
			continue // not a path, or the driver's own
		}
		f := &listed{rel: rel, info: storage.FileInfo{Size: aws.ToInt64(o.Size), ModTime: aws.ToTime(o.LastModified)}}
		if l.pending {
			state, err := l.d.headPendingKey(l.ctx, key)
			if err != nil {
				return nil, err
			}
			if state == nil {
				continue // committed or cancelled since listed
			}
			f.info.Size, f.info.ModTime = state.size(), state.modTime
		}
		l.next = f
	}
	return l.next, nil
}

func (l *listing) take() { l.next = nil }

// merged merges two listings by key; where both hold a path, the first
// one's file wins (committed content over a pending object).
type merged struct {
	a, b *listing
	from *listing // the listing of the file peek returned
}

func (m *merged) peek() (*listed, error) {
	a, err := m.a.peek()
	if err != nil {
		return nil, err
	}
	b, err := m.b.peek()
	if err != nil {
		return nil, err
	}
	switch {
	case a == nil && b == nil:
		return nil, nil
	case b == nil || a != nil && a.rel < b.rel:
		m.from = m.a
		return a, nil
	case a == nil || b.rel < a.rel:
		m.from = m.b
		return b, nil
	}
	m.b.take() // the same path: the committed file wins
	m.from = m.a
	return a, nil
}

func (m *merged) take() { m.from.take() }

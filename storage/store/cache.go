package store

import (
	"container/list"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/storage"
)

// manifestCache keeps recently used manifest bodies by digest, bounded in
// bytes, least recently used out first. Manifests are immutable, so an entry
// is never stale; whether a repository holds a manifest is always checked in
// storage, never cached.
type manifestCache struct {
	mu      sync.Mutex
	limit   int64
	used    int64
	order   *list.List // front: most recently used; values are Manifest
	entries map[digest.Digest]*list.Element
}

func newManifestCache(limit int64) *manifestCache {
	return &manifestCache{limit: limit, order: list.New(), entries: map[digest.Digest]*list.Element{}}
}

func (c *manifestCache) get(d digest.Digest) (Manifest, bool) {
	if c.limit <= 0 {
		return Manifest{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[d]
	if !ok {
		return Manifest{}, false
	}
	c.order.MoveToFront(e)
	return e.Value.(Manifest), true
}

func (c *manifestCache) add(m Manifest) {
	size := int64(len(m.Body))
	if c.limit <= 0 || size > c.limit/8 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[m.Digest]; ok {
		return
	}
	c.entries[m.Digest] = c.order.PushFront(m)
	c.used += size
	for c.used > c.limit {
		e := c.order.Back()
		old := e.Value.(Manifest)
		c.order.Remove(e)
		delete(c.entries, old.Digest)
		c.used -= int64(len(old.Body))
	}
}

// tagRecheck is how long a tag read from its link is trusted on its
// link's version alone; then it is read again. tagCacheSize bounds the
// entries: the cache starts over after that many reads.
const (
	tagRecheck   = time.Second
	tagCacheSize = 10000
)

// tagCache keeps the digests of tags read recently, by link path, each with
// the version of the link file it came from (storage.Versioner). A GET by
// tag then costs one version check (one stat on the filesystem) instead of
// a read of the link. The check sees every change at once: the store
// replaces a link by renaming a new file over it (a new inode and new
// times), and Distribution rewrites it in place (new times); so an update by
// this process or any other on the same storage, a replica included, is
// seen by the next GET. The only change a check could miss is a new file
// with the old one's inode number and the very same times (two updates
// within one clock tick, the inode freed and reused in between); it is
// missed for at most tagRecheck, after which the link is read again. On a
// driver without versions (S3) every GET reads the link.
type tagCache struct {
	entries sync.Map // link path -> *tagEntry
	n       atomic.Int64
}

type tagEntry struct {
	version storage.Version
	digest  digest.Digest
	read    time.Time
	// revision: the manifest was found in the repository (its revision
	// link) after the link was read (see GetManifestByTag).
	revision bool
}

// resolve returns the digest in the link at p: from the cache if the
// link's version is unchanged and the entry recent, else read with read
// (or, on a driver with versions, with its version, then cached). It also
// returns the cache entry the digest came from or went to (nil if none).
func (c *tagCache) resolve(ctx context.Context, d storage.Driver, p string, read func(context.Context, string) (digest.Digest, error)) (digest.Digest, *tagEntry, error) {
	v, ok := d.(storage.Versioner)
	if !ok {
		dg, err := read(ctx, p)
		return dg, nil, err
	}
	if e, ok := c.entries.Load(p); ok {
		e := e.(*tagEntry)
		if time.Since(e.read) < tagRecheck {
			ver, err := v.Version(ctx, p)
			if err == nil && ver == e.version {
				return e.digest, e, nil
			}
			if err != nil && !errors.Is(err, storage.ErrNotFound) {
				return "", nil, err
			}
		}
	}
	b, ver, err := v.ReadVersion(ctx, p)
	if errors.Is(err, storage.ErrUnsupported) {
		dg, err := read(ctx, p)
		return dg, nil, err
	}
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			c.entries.Delete(p)
		}
		return "", nil, err
	}
	dg, err := parseLink(p, b)
	if err != nil {
		return "", nil, err
	}
	if c.n.Add(1) > tagCacheSize {
		c.entries.Clear()
		c.n.Store(1)
	}
	e := &tagEntry{version: ver, digest: dg, read: time.Now()}
	c.entries.Store(p, e)
	return dg, e, nil
}

// sawRevision records that the manifest of entry e (at p) was found in its
// repository, unless the entry was replaced meanwhile.
func (c *tagCache) sawRevision(p string, e *tagEntry) {
	if e == nil || e.revision {
		return
	}
	seen := *e
	seen.revision = true
	c.entries.CompareAndSwap(p, e, &seen)
}

package store

import (
	"container/list"
	"sync"

	"github.com/opencontainers/go-digest"
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

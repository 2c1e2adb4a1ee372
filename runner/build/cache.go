package build

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/berth-registry/berth/runner/image"
)

// cache is the local build cache: one file per step key naming the layer
// the step made (see the layout in doc.go).
type cache struct {
	dir    string
	images *image.Store
}

// cacheEntry is a cache file.
type cacheEntry struct {
	Layer image.Layer `json:"layer"`
	// Step is the step's history entry, for whoever reads the file.
	Step string `json:"step"`
	// Created is when the step made the layer: its history time in
	// every image that reuses it, so that a rebuild with nothing changed
	// gives the same image ID.
	Created time.Time `json:"created"`
}

// stepKey is the key of a step: its parent's key and what the step is.
func stepKey(parent string, step any) string {
	raw, err := json.Marshal(step)
	if err != nil {
		panic(err) // plain structs always encode
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s", parent, raw)
	return hex.EncodeToString(h.Sum(nil))
}

func (c *cache) path(key string) string {
	return filepath.Join(c.dir, key[:2], key+".json")
}

// get returns the layer of key when the cache has one whose layer and
// blob are still stored; an entry whose layer was pruned is removed.
func (c *cache) get(key string) (cacheEntry, bool) {
	raw, err := os.ReadFile(c.path(key))
	if err != nil {
		return cacheEntry{}, false
	}
	var e cacheEntry
	if json.Unmarshal(raw, &e) != nil || e.Layer.DiffID == "" {
		os.Remove(c.path(key))
		return cacheEntry{}, false
	}
	if _, err := c.images.LayerStore().Get(e.Layer.DiffID); err != nil || !c.images.HasBlob(e.Layer.Digest) {
		os.Remove(c.path(key))
		return cacheEntry{}, false
	}
	return e, true
}

// put records the layer of key (written to a temporary file and renamed).
func (c *cache) put(key string, e cacheEntry) error {
	raw, err := json.Marshal(e)
	if err != nil {
		return err
	}
	p := c.path(key)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(raw); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), p)
}

package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/berth-registry/berth/storage"
)

// This file is the store's half of garbage collection's interlock; package
// gc holds the other half and the argument why the two are safe together
// (gc/doc.go). It uses nothing but what every driver offers, so it holds on
// S3 as on a filesystem, across replicas and a collector on another machine:
//
//   - A lease is a small object under _berth/gc/leases naming (repository,
//     digest) pairs a client relies on. The store writes one BEFORE it checks
//     for doom lists whenever it relies on something that already exists:
//     PutManifest (its references, its children and its own body),
//     FinishUpload (identical bytes already stored, and the layer link),
//     MountBlob (the target link and the bytes). StatBlob (a HEAD) writes
//     one after the check for an old blob, at most once a minute per blob
//     and process, so that the manifest a client pushes after a HEAD finds
//     the blob kept.
//   - A doom list is one object under _berth/gc/doomed per collector round
//     naming, one per line, the paths of what the round is about to delete
//     (a path is "doomed" while a valid list names it). The collector writes
//     it BEFORE it reads the leases, and deletes only what no lease names.
//     Lists are never rewritten (each round has a name of its own), so a
//     store reads each once and keeps it while it is listed.
//   - A store that finds a path it relies on doomed waits until the
//     collector has decided (the list goes, or the path does) and looks
//     again; HEAD and mount do not wait, they answer "unknown" at once (the
//     client uploads instead). A list older than DoomTTL is void: the
//     collector never deletes later than DoomTTL/4 after writing it.
//   - When its round is over the collector moves its list to
//     _berth/gc/deleted (Undoom), where it stays for TombstoneTTL as a
//     tombstone: what it names may have been deleted lately. A void list a
//     killed collector left is moved there too (CleanUpGC). A sparse
//     manifest (Options.SparseManifests) is accepted without a reference
//     only if no doom list, valid or void, and no tombstone names it
//     (recentlyDeleted): a client that saw the blob before a
//     collection deleted it (a HEAD, then its other layers, then the
//     manifest) is refused as it would be without sparse manifests.
//
// Each side writes its flag before reading the other's, on storage with
// read-after-write consistency (a filesystem; S3 since 2020), so at least
// one sees the other: either the collector sees the lease and spares the
// item, or the store sees the list and waits for the delete.

// DoomTTL is how long a doom list stays valid by its modification time.
// The collector stops deleting an item DoomTTL/4 after it marked it, which
// leaves three quarters for clock skew between hosts and storage.
const DoomTTL = time.Minute

// TombstoneTTL is how long a finished doom list is kept as a tombstone
// (see above): longer than any client takes from looking at a blob (HEAD)
// to pushing the manifest that references it.
const TombstoneTTL = 24 * time.Hour

// DefaultLeaseAfter is the default Options.LeaseAfter.
const DefaultLeaseAfter = 10 * time.Minute

// gcRoot is where the interlock's objects live, beside blobs/ and
// repositories/ (Distribution never looks there).
func gcRoot() string      { return rootPath + "/_berth/gc" }
func leasesPath() string  { return gcRoot() + "/leases" }
func doomedRoot() string  { return gcRoot() + "/doomed" }
func deletedRoot() string { return gcRoot() + "/deleted" }
func clockPath() string   { return gcRoot() + "/clock" }
func lastRunPath() string { return gcRoot() + "/last-run" }

// ItemKind says what an Item is.
type ItemKind int

// The kinds of items garbage collection deletes.
const (
	// ItemManifest is a manifest revision of a repository: its revision
	// link, its referrers-index entry and the tag history links naming it.
	ItemManifest ItemKind = iota + 1
	// ItemLayerLink is the link of a blob into a repository.
	ItemLayerLink
	// ItemBlob is the stored bytes of a blob or manifest.
	ItemBlob
)

// Item is something garbage collection may delete.
type Item struct {
	Kind       ItemKind
	Repository string        // empty for ItemBlob
	Digest     digest.Digest // the blob, linked blob or manifest
	// Subject (ItemManifest): the manifest's subject, whose referrers
	// index lists it. TagHistory: the tags whose history lists it.
	Subject    digest.Digest
	TagHistory []string
}

// path is the file whose presence makes the item exist, the one a doom
// list names.
func (it Item) path() string {
	switch it.Kind {
	case ItemManifest:
		return revisionLinkPath(it.Repository, it.Digest)
	case ItemLayerLink:
		return layerLinkPath(it.Repository, it.Digest)
	default:
		return blobDataPath(it.Digest)
	}
}

// group is the kind the item is deleted as: any kind but a manifest or a
// layer link is a blob, as path says.
func (it Item) group() ItemKind {
	if it.Kind == ItemManifest || it.Kind == ItemLayerLink {
		return it.Kind
	}
	return ItemBlob
}

// files are the paths deleting the item removes.
func (it Item) files() []string {
	out := []string{it.path()}
	if it.Kind == ItemManifest {
		if it.Subject != "" {
			out = append(out, referrerPath(it.Repository, it.Subject, it.Digest))
		}
		for _, t := range it.TagHistory {
			out = append(out, tagIndexLinkPath(it.Repository, t, it.Digest))
		}
		out = append(out, pullPath(it.Repository, it.Digest)) // a cached manifest's pull note, if any
	}
	return out
}

// Lease names what a client relied on: a manifest, layer link or blob
// digest in a repository. Leases protect the blob Digest everywhere, its
// layer link and manifest revision in Repository.
type Lease struct {
	Repository string
	Digest     digest.Digest
}

// lease writes a lease for ds in repo and returns its path. It must come
// before the doom checks it protects. A lease stays until it expires, even
// after the operation succeeded (a collector may be between reading the
// graph and reading the leases); an operation that fails may drop it.
func (s *Store) lease(ctx context.Context, repo string, ds ...digest.Digest) (string, error) {
	var b strings.Builder
	for _, d := range ds {
		b.WriteString(repo)
		b.WriteByte(' ')
		b.WriteString(d.String())
		b.WriteByte('\n')
	}
	var r [8]byte
	_, _ = rand.Read(r[:])
	name := fmt.Sprintf("%s/%020d-%s", leasesPath(), time.Now().UnixNano(), hex.EncodeToString(r[:]))
	// Only collectors running now read it: it need not survive a crash
	// of the machine, which ends them too.
	if err := storage.WriteAll(storage.WithoutSync(ctx), s.driver, name, []byte(b.String())); err != nil {
		return "", fmt.Errorf("writing a garbage-collection lease: %w", err)
	}
	return name, nil
}

// dropLease removes the lease of an operation that failed: it relies on
// nothing.
func (s *Store) dropLease(ctx context.Context, p string) {
	if err := s.driver.Delete(context.WithoutCancel(ctx), p); err != nil && !errors.Is(err, storage.ErrNotFound) {
		s.log.Warn("removing the lease of a failed operation (it expires by itself)", "path", p, "error", err)
	}
}

// leaseMemo remembers the HEAD leases this process wrote recently, so that
// a blob HEADed often costs one lease per LeaseAfter/10, not one per HEAD.
type leaseMemo struct {
	mu   sync.Mutex
	seen map[Lease]time.Time
}

// due reports whether l needs a new lease now, and records it if so.
func (m *leaseMemo) due(l Lease, every time.Duration) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	if m.seen == nil || len(m.seen) > 100000 {
		m.seen = map[Lease]time.Time{}
	}
	if t, ok := m.seen[l]; ok && now.Sub(t) < every {
		return false
	}
	m.seen[l] = now
	return true
}

// doomList is a doom list as a store read it.
type doomList struct {
	written time.Time       // its modification time: void DoomTTL later
	paths   map[string]bool // what it names
}

// doomLists caches the doom lists a store has read, by object path. A list
// is written once and removed, never changed, so a cached one is current
// while the listing still shows it.
type doomLists struct {
	mu    sync.Mutex
	lists map[string]doomList
}

// doomedPaths returns what the valid doom lists name now: one listing,
// plus one read of each list not seen before.
func (s *Store) doomedPaths(ctx context.Context) (map[string]bool, error) {
	return s.listedPaths(ctx, doomedRoot(), &s.dooms, DoomTTL)
}

// listedPaths returns what the lists under root younger than ttl name: one
// listing, plus one read of each list not in cache (which keeps those the
// listing still shows).
func (s *Store) listedPaths(ctx context.Context, root string, cache *doomLists, ttl time.Duration) (map[string]bool, error) {
	names, err := s.driver.List(ctx, root)
	if errors.Is(err, storage.ErrNotFound) {
		names = nil
	} else if err != nil {
		return nil, err
	}
	cache.mu.Lock()
	known := cache.lists
	cache.mu.Unlock()
	current := make(map[string]doomList, len(names))
	var out map[string]bool
	for _, name := range names {
		l, ok := known[name]
		if !ok {
			l, ok, err = s.readDoomList(ctx, name)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
		}
		current[name] = l
		if time.Since(l.written) >= ttl {
			continue
		}
		if out == nil {
			out = map[string]bool{}
		}
		for p := range l.paths {
			out[p] = true
		}
	}
	cache.mu.Lock()
	cache.lists = current
	cache.mu.Unlock()
	return out, nil
}

// readDoomList reads the doom list at name; ok is false when it is gone or
// is not a list (a directory).
func (s *Store) readDoomList(ctx context.Context, name string) (l doomList, ok bool, err error) {
	fi, err := s.driver.Stat(ctx, name)
	if errors.Is(err, storage.ErrNotFound) || err == nil && fi.IsDir {
		return l, false, nil
	}
	if err != nil {
		return l, false, err
	}
	b, err := storage.ReadAll(ctx, s.driver, name)
	if errors.Is(err, storage.ErrNotFound) {
		return l, false, nil // removed meanwhile: nothing is doomed by it
	}
	if err != nil {
		return l, false, err
	}
	l = doomList{written: fi.ModTime, paths: map[string]bool{}}
	for line := range strings.Lines(string(b)) {
		if p := strings.TrimSpace(line); p != "" {
			l.paths[p] = true
		}
	}
	return l, true, nil
}

// anyDoomed reports whether a valid doom list names any of paths.
func (s *Store) anyDoomed(ctx context.Context, paths ...string) (bool, error) {
	doomed, err := s.doomedPaths(ctx)
	if err != nil {
		return false, err
	}
	for _, p := range paths {
		if doomed[p] {
			return true, nil
		}
	}
	return false, nil
}

// settle waits until no valid doom list names any of paths: the collector
// that doomed them has deleted them or spared them. The caller then looks
// at what is there. It must have written its lease first. A doomed path
// that holds nothing is settled: the collector deletes a path last of all
// it does for an item, so only the list's removal is left.
func (s *Store) settle(ctx context.Context, paths ...string) error {
	wait := 10 * time.Millisecond
	for {
		doomed, err := s.doomedPaths(ctx)
		if err != nil {
			return err
		}
		var pending []string
		for _, p := range paths {
			if !doomed[p] {
				continue
			}
			have, err := s.exists(ctx, p)
			if err != nil {
				return err
			}
			if have {
				pending = append(pending, p)
			}
		}
		if len(pending) == 0 {
			return nil
		}
		paths = pending
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
}

// parallel runs fn(0..n-1) with at most limit at a time and returns the
// first error.
func parallel(ctx context.Context, n, limit int, fn func(ctx context.Context, i int) error) error {
	if n == 1 {
		return fn(ctx, 0)
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(limit)
	for i := range n {
		g.Go(func() error { return fn(ctx, i) })
	}
	return g.Wait()
}

// Now returns the storage's clock: the modification time of an object it
// writes and removes at once. The collector measures ages against it, so
// that a skewed collector host cannot make recent content look old.
func (s *Store) Now(ctx context.Context) (time.Time, error) {
	var r [8]byte
	_, _ = rand.Read(r[:])
	p := clockPath() + "/" + hex.EncodeToString(r[:])
	if err := s.withReserve(ctx, func() error { return storage.WriteAll(ctx, s.driver, p, nil) }); err != nil {
		return time.Time{}, err
	}
	fi, err := s.driver.Stat(ctx, p)
	if derr := s.driver.Delete(context.WithoutCancel(ctx), p); derr != nil && err == nil && !errors.Is(derr, storage.ErrNotFound) {
		err = derr
	}
	if err != nil {
		return time.Time{}, err
	}
	return fi.ModTime, nil
}

// Doom writes the doom list id (letters, digits and dashes, unique to one
// collector round) naming items, so that from now on the store treats
// them as about to go (see the top of this file).
func (s *Store) Doom(ctx context.Context, id string, items []Item) error {
	var b strings.Builder
	for _, it := range items {
		b.WriteString(it.path())
		b.WriteByte('\n')
	}
	// Another collector may be removing an old list: an S3 server can
	// refuse a write under a prefix while a delete is in flight
	// (versitygw's posix backend answers 409). The write is idempotent.
	var err error
	for attempt := range 4 {
		err = s.withReserve(ctx, func() error { return storage.WriteAll(ctx, s.driver, doomedRoot()+"/"+id, []byte(b.String())) })
		if err == nil || ctx.Err() != nil || storage.IsFull(err) {
			return err
		}
		time.Sleep(time.Duration(attempt+1) * 20 * time.Millisecond)
	}
	return err
}

// Undoom ends the doom list id (after its round deleted or spared its
// items): it moves it among the tombstones; other lists stay.
func (s *Store) Undoom(ctx context.Context, id string) error {
	err := s.withReserve(ctx, func() error { return s.driver.Move(ctx, doomedRoot()+"/"+id, deletedRoot()+"/"+id) })
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	return err
}

// recentlyDeleted returns what a collector may have deleted in the last
// TombstoneTTL: the paths the doom lists name, valid or void (a collector
// deleting now, or one killed), and those the tombstones younger than
// TombstoneTTL name. The doom lists are read first: a list moved among the
// tombstones in between is seen in one place or the other.
func (s *Store) recentlyDeleted(ctx context.Context) (map[string]bool, error) {
	out, err := s.listedPaths(ctx, doomedRoot(), &s.dooms, TombstoneTTL)
	if err != nil {
		return nil, err
	}
	tombs, err := s.listedPaths(ctx, deletedRoot(), &s.tombstones, TombstoneTTL)
	if out == nil {
		return tombs, err
	}
	maps.Copy(out, tombs)
	return out, err
}

// Leases returns what the leases written at or after since name.
func (s *Store) Leases(ctx context.Context, since time.Time) ([]Lease, error) {
	var paths []string
	err := s.driver.Walk(ctx, leasesPath(), func(fi storage.FileInfo) error {
		if !fi.IsDir && !fi.ModTime.Before(since) {
			paths = append(paths, fi.Path)
		}
		return nil
	})
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	var mu sync.Mutex
	var out []Lease
	err = parallel(ctx, len(paths), 16, func(ctx context.Context, i int) error {
		b, err := storage.ReadAll(ctx, s.driver, paths[i])
		if errors.Is(err, storage.ErrNotFound) {
			return nil // an expired lease removed meanwhile
		}
		if err != nil {
			return err
		}
		var ls []Lease
		for line := range strings.Lines(string(b)) {
			repo, ds, ok := strings.Cut(strings.TrimSpace(line), " ")
			d, err := digest.Parse(ds)
			if !ok || err != nil {
				continue
			}
			ls = append(ls, Lease{Repository: repo, Digest: d})
		}
		mu.Lock()
		out = append(out, ls...)
		mu.Unlock()
		return nil
	})
	return out, err
}

// DeleteItems deletes the files of items: those of the manifests first,
// then the layer links, then the blobs, each kind done before the next
// starts, so that a run killed in between never leaves a revision whose
// bytes are gone. It returns, for each item, nil or why it could not be
// deleted; an item already gone counts as deleted.
func (s *Store) DeleteItems(ctx context.Context, items []Item) []error {
	out := make([]error, len(items))
	for _, kind := range []ItemKind{ItemManifest, ItemLayerLink, ItemBlob} {
		// An item's own path goes last, after its other files (see settle).
		for _, primary := range []bool{false, true} {
			var paths []string
			var owner []int
			for i, it := range items {
				switch {
				case it.group() != kind:
				case primary && out[i] == nil:
					paths = append(paths, it.path())
					owner = append(owner, i)
				case !primary:
					for _, p := range it.files()[1:] {
						paths = append(paths, p)
						owner = append(owner, i)
					}
				}
			}
			if len(paths) == 0 {
				continue
			}
			for j, err := range s.deleteFiles(ctx, paths) {
				if err != nil && out[owner[j]] == nil {
					out[owner[j]] = err
				}
			}
		}
	}
	// The manifest cache may keep a deleted body: GetManifest serves it
	// only while the revision link exists, and manifests go first.
	return out
}

// deleteFiles deletes the files at paths, in batches where the driver can
// (S3 DeleteObjects), else several at a time; a path holding nothing counts
// as deleted.
func (s *Store) deleteFiles(ctx context.Context, paths []string) []error {
	return storage.DeleteFiles(ctx, s.driver, paths, 16)
}

// CleanUpGC removes the leases written before leaseCutoff and the
// tombstones older than TombstoneTTL, and makes tombstones of the doom
// lists that are no longer valid (left by a collector that was killed).
// It returns how many it removed or moved.
func (s *Store) CleanUpGC(ctx context.Context, leaseCutoff time.Time) (int, error) {
	var paths []string
	collect := func(root string, old func(storage.FileInfo) bool) error {
		err := s.driver.Walk(ctx, root, func(fi storage.FileInfo) error {
			if !fi.IsDir && old(fi) {
				paths = append(paths, fi.Path)
			}
			return nil
		})
		if errors.Is(err, storage.ErrNotFound) {
			return nil
		}
		return err
	}
	if err := collect(leasesPath(), func(fi storage.FileInfo) bool { return fi.ModTime.Before(leaseCutoff) }); err != nil {
		return 0, err
	}
	if err := collect(deletedRoot(), func(fi storage.FileInfo) bool { return time.Since(fi.ModTime) > TombstoneTTL }); err != nil {
		return 0, err
	}
	// A void doom list (its collector was killed) becomes a tombstone: its
	// collector may have deleted what it names.
	var void []string
	err := s.driver.Walk(ctx, doomedRoot(), func(fi storage.FileInfo) error {
		if !fi.IsDir && time.Since(fi.ModTime) > DoomTTL {
			void = append(void, fi.Path)
		}
		return nil
	})
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return 0, err
	}
	var errs []error
	n := 0
	for _, p := range void {
		if err := s.Undoom(ctx, path.Base(p)); err != nil {
			errs = append(errs, err)
		} else {
			n++
		}
	}
	errs = append(errs, s.deleteFiles(ctx, paths)...)
	for _, err := range errs {
		if err == nil {
			n++
		}
	}
	return n, errors.Join(errs...)
}

// BlobInfo describes the stored bytes of a blob.
type BlobInfo struct {
	Digest  digest.Digest
	Size    int64
	ModTime time.Time
}

// LinkInfo describes a link file (a layer link or a manifest revision).
type LinkInfo struct {
	Digest  digest.Digest
	ModTime time.Time
}

// TagInfo describes a tag: where it points and when it was last pushed.
type TagInfo struct {
	Tag     string
	Digest  digest.Digest
	ModTime time.Time
	// History lists every digest the tag pointed at (its index links).
	History []digest.Digest
}

// walkWorkers is how many directory walks WalkBlobs has in flight: on a
// cold filesystem each waits for the disk, on S3 for a round trip, and
// both serve many at once far faster than one after the other.
const walkWorkers = 32

// WalkBlobs calls fn for each blob in the shared blob store, in digest
// order. Entries that are not blobs are skipped. It walks the blob store's
// fan-out directories (blobs/<alg>/<hex[0:2]>) several at a time.
func (s *Store) WalkBlobs(ctx context.Context, fn func(BlobInfo) error) error {
	root := blobsPath()
	algs, err := s.driver.List(ctx, root)
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var dirs []string
	for _, alg := range algs {
		fans, err := s.driver.List(ctx, alg)
		if errors.Is(err, storage.ErrNotFound) {
			continue // a file, or gone meanwhile
		}
		if err != nil {
			return err
		}
		dirs = append(dirs, fans...)
	}
	found := make([][]BlobInfo, len(dirs))
	err = parallel(ctx, len(dirs), walkWorkers, func(ctx context.Context, i int) error {
		err := s.driver.Walk(ctx, dirs[i], func(fi storage.FileInfo) error {
			if fi.IsDir {
				return nil
			}
			rel := strings.Split(strings.TrimPrefix(fi.Path, root+"/"), "/")
			// <alg>/<hex[0:2]>/<hex>/data
			if len(rel) != 4 || rel[3] != "data" {
				return nil
			}
			d := digest.NewDigestFromEncoded(digest.Algorithm(rel[0]), rel[2])
			if d.Validate() != nil || rel[1] != rel[2][:2] {
				return nil
			}
			found[i] = append(found[i], BlobInfo{Digest: d, Size: fi.Size, ModTime: fi.ModTime})
			return nil
		})
		if errors.Is(err, storage.ErrNotFound) {
			return nil // a file, or gone meanwhile
		}
		return err
	})
	if err != nil {
		return err
	}
	for _, bs := range found {
		for _, b := range bs {
			if err := fn(b); err != nil {
				return err
			}
		}
	}
	return nil
}

// RepositoryDirs returns every repository that holds anything: manifests,
// layer links or uploads (Repositories lists only those with manifests, as
// the catalog does), in lexical order.
func (s *Store) RepositoryDirs(ctx context.Context) ([]string, error) {
	repos := []string{}
	err := s.WalkRepositoryDirs(ctx, func(repo string) error {
		repos = append(repos, repo)
		return nil
	})
	return repos, err
}

// WalkRepositoryDirs calls fn with each repository RepositoryDirs returns,
// in the same order, as the walk finds it.
func (s *Store) WalkRepositoryDirs(ctx context.Context, fn func(repo string) error) error {
	root := repositoriesPath()
	seen := map[string]bool{}
	err := s.driver.Walk(ctx, root, func(fi storage.FileInfo) error {
		if !fi.IsDir {
			return nil
		}
		name := path.Base(fi.Path)
		if !strings.HasPrefix(name, "_") {
			return nil
		}
		if dir := path.Dir(fi.Path); dir != root {
			if repo := strings.TrimPrefix(dir, root+"/"); !seen[repo] {
				seen[repo] = true
				if err := fn(repo); err != nil {
					return err
				}
			}
		}
		return storage.SkipDir
	})
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	return err
}

// ManifestRevisions returns the manifests that are part of repo (its
// revision links), in digest order.
func (s *Store) ManifestRevisions(ctx context.Context, repo string) ([]LinkInfo, error) {
	return s.links(ctx, manifestsPath(repo)+"/revisions")
}

// LayerLinks returns the blobs linked into repo (its _layers links), in
// digest order.
func (s *Store) LayerLinks(ctx context.Context, repo string) ([]LinkInfo, error) {
	return s.links(ctx, repoPath(repo)+"/_layers")
}

// TagInfos returns the tags of repo with their push times and histories,
// in tag order. A tag whose current link is missing or unreadable is left
// out (it resolves to nothing).
func (s *Store) TagInfos(ctx context.Context, repo string) ([]TagInfo, error) {
	root := tagsPath(repo)
	byTag := map[string]*TagInfo{}
	var order []string
	err := s.driver.Walk(ctx, root, func(fi storage.FileInfo) error {
		rel := strings.Split(strings.TrimPrefix(fi.Path, root+"/"), "/")
		// A history entry's directory stands for its link (the digest is
		// all that is needed): it is not read.
		history := fi.IsDir && len(rel) == 4 && rel[1] == "index"
		if !history && (fi.IsDir || path.Base(fi.Path) != "link") {
			return nil
		}
		t := byTag[rel[0]]
		if t == nil {
			t = &TagInfo{Tag: rel[0]}
			byTag[rel[0]] = t
			order = append(order, rel[0])
		}
		switch {
		case len(rel) == 3 && rel[1] == "current":
			d, err := s.readLink(ctx, fi.Path)
			if errors.Is(err, storage.ErrNotFound) {
				return nil
			}
			if err != nil {
				s.log.Warn("gc: skipping an unreadable tag link", "path", fi.Path, "error", err)
				return nil
			}
			t.Digest, t.ModTime = d, fi.ModTime
		case history:
			d := digest.NewDigestFromEncoded(digest.Algorithm(rel[2]), rel[3])
			if d.Validate() == nil {
				t.History = append(t.History, d)
			}
			return storage.SkipDir
		}
		return nil
	})
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	out := []TagInfo{}
	for _, name := range order {
		out = append(out, *byTag[name])
	}
	return out, nil
}

// DeleteTagIf removes tag from repo if it still points at d and was not
// pushed after pushed (retention decided on that state). It reports
// whether it removed it.
func (s *Store) DeleteTagIf(ctx context.Context, repo, tag string, d digest.Digest, pushed time.Time) (bool, error) {
	p := tagCurrentLinkPath(repo, tag)
	fi, err := s.driver.Stat(ctx, p)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	cur, err := s.readLink(ctx, p)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil || cur != d || fi.ModTime.After(pushed) {
		return false, err
	}
	err = s.driver.Delete(ctx, tagPath(repo, tag))
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err == nil {
		s.summaryUntagged(ctx, repo, tag)
	}
	return err == nil, err
}

// links collects the <alg>/<hex>/link files under dir. Where the backend
// records directory times (a filesystem), a link's directory stands for it
// and is not read: its time is when the link was last written into it,
// which is at or after the link's own. A directory left without its link
// by a crash then counts as a link, which only keeps or deletes nothing.
func (s *Store) links(ctx context.Context, dir string) ([]LinkInfo, error) {
	out := []LinkInfo{}
	err := s.driver.Walk(ctx, dir, func(fi storage.FileInfo) error {
		rel := strings.Split(strings.TrimPrefix(fi.Path, dir+"/"), "/")
		switch {
		case fi.IsDir && len(rel) == 2 && !fi.ModTime.IsZero():
		case !fi.IsDir && len(rel) == 3 && rel[2] == "link":
		default:
			return nil
		}
		if d := digest.NewDigestFromEncoded(digest.Algorithm(rel[0]), rel[1]); d.Validate() == nil {
			out = append(out, LinkInfo{Digest: d, ModTime: fi.ModTime})
		}
		if fi.IsDir {
			return storage.SkipDir
		}
		return nil
	})
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	return out, nil
}

// SaveLastRun stores b, the record of the collection that just ended, in
// place of the previous one.
func (s *Store) SaveLastRun(ctx context.Context, b []byte) error {
	return storage.WriteAll(ctx, s.driver, lastRunPath(), b)
}

// LastRun returns the record SaveLastRun stored last; ok is false when
// there is none.
func (s *Store) LastRun(ctx context.Context) (b []byte, ok bool, err error) {
	b, err = storage.ReadAll(ctx, s.driver, lastRunPath())
	if errors.Is(err, storage.ErrNotFound) {
		return nil, false, nil
	}
	return b, err == nil, err
}

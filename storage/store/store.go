package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/storage"
)

// Options tune a Store. The zero value is ready to use.
type Options struct {
	// Logger receives the store's warnings (a hash state that had to be
	// rebuilt, a half-written link). Nil means slog.Default().
	Logger *slog.Logger
	// ManifestCacheBytes bounds the in-memory cache of manifest bodies by
	// digest (manifests are immutable, so the cache is always coherent).
	// Zero means 64 MiB; negative disables the cache.
	ManifestCacheBytes int64
	// LeaseAfter is the age past which a blob that a client HEADs gets a
	// garbage-collection lease, so that a collector running meanwhile keeps
	// it for the manifest the client pushes next (see gc.go). Zero means
	// DefaultLeaseAfter.
	LeaseAfter time.Duration
	// SparseManifests accepts manifests whose layers, config or child
	// manifests are not (yet) in the repository: an index mirrored for some
	// of its platforms, an image whose non-distributable layers stay
	// elsewhere. Those references are kept by garbage collection once they
	// are pushed. False refuses them with ErrManifestBlobUnknown.
	SparseManifests bool
}

// Store keeps registry content in a storage.Driver. It is safe for concurrent
// use, including by several processes over the same driver (replicas over one
// bucket): all state lives in the driver, and the in-memory caches hold
// immutable content (manifests by digest) or content checked against the
// driver on every use (tags, by their link's version: see tagCache).
type Store struct {
	driver    storage.Driver
	log       *slog.Logger
	manifests *manifestCache
	tags      tagCache // recently read tags, checked by their links' versions
	uploads   keyLocks // serialise the writers of one upload in this process, by upload id
	// leaseAfter is Options.LeaseAfter; leaseMemo rate-limits HEAD leases.
	leaseAfter time.Duration
	leaseMemo  leaseMemo
	dooms      doomLists // the doom lists read so far
	tombstones doomLists // the tombstones read so far
	sparse     bool      // Options.SparseManifests
	// summaryLocks serialise the summary updates of a repository;
	// summaries holds the summaries read, by path (see ReadSummary).
	summaryLocks summaryLocks
	summaries    sync.Map // string -> cachedSummary
}

// New returns a Store over d.
func New(d storage.Driver, opts Options) *Store {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ManifestCacheBytes == 0 {
		opts.ManifestCacheBytes = 64 << 20
	}
	if opts.LeaseAfter <= 0 {
		opts.LeaseAfter = DefaultLeaseAfter
	}
	return &Store{driver: d, log: opts.Logger, manifests: newManifestCache(opts.ManifestCacheBytes), leaseAfter: opts.LeaseAfter, sparse: opts.SparseManifests}
}

// Driver returns the driver the store keeps its content in.
func (s *Store) Driver() storage.Driver { return s.driver }

// Ping checks that the storage answers (for readiness probes). It asks for
// the registry's root, which every backend must look up (a driver may know
// "/" without asking anyone); an empty storage is ready too.
func (s *Store) Ping(ctx context.Context) error {
	_, err := s.driver.Stat(ctx, rootPath)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	return nil
}

// readLink reads a link file and parses the digest it holds.
func (s *Store) readLink(ctx context.Context, p string) (digest.Digest, error) {
	b, err := storage.ReadAll(ctx, s.driver, p)
	if err != nil {
		return "", err
	}
	return parseLink(p, b)
}

// parseLink parses the content b of the link file at p.
func parseLink(p string, b []byte) (digest.Digest, error) {
	d, err := digest.Parse(strings.TrimSpace(string(b)))
	if err != nil {
		return "", fmt.Errorf("link %s holds %q: %w", p, b, err)
	}
	return d, nil
}

func (s *Store) writeLink(ctx context.Context, p string, d digest.Digest) error {
	return storage.WriteAll(ctx, s.driver, p, []byte(d.String()))
}

// writeTagLinks points tag of repo at d: the tag's history entry (its
// index link), then its current link. Only the current link is synced:
// the history is read only to clean it up (garbage collection,
// Distribution's), so a crash of the machine that loses an entry loses no
// tag.
func (s *Store) writeTagLinks(ctx context.Context, repo, tag string, d digest.Digest) error {
	if err := s.writeLink(storage.WithoutSync(ctx), tagIndexLinkPath(repo, tag, d), d); err != nil {
		return err
	}
	return s.writeLink(ctx, tagCurrentLinkPath(repo, tag), d)
}

// exists reports whether p holds anything; errors other than not-found are returned.
func (s *Store) exists(ctx context.Context, p string) (bool, error) {
	_, err := s.driver.Stat(ctx, p)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	return false, err
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

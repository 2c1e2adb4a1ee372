package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/manifest"
	"github.com/berth-registry/berth/storage"
)

// Manifest is a stored manifest as served to clients.
type Manifest struct {
	Digest    digest.Digest
	MediaType string
	Body      []byte // must not be modified: it may be shared through the cache
}

// PutResult tells what PutManifest stored.
type PutResult struct {
	Digest   digest.Digest
	Manifest *manifest.Manifest // the parsed manifest (Subject set means a referrer)
	// Absent lists the references a sparse manifest was accepted without
	// (see Options.SparseManifests), in the manifest's order.
	Absent []digest.Digest
}

// ResolveTag returns the digest tag points at in repo, or ErrManifestUnknown.
// Where the driver versions files (storage.Versioner), a tag read in the
// last tagRecheck is checked by its link's version instead of read again
// (see tagCache).
func (s *Store) ResolveTag(ctx context.Context, repo, tag string) (digest.Digest, error) {
	d, _, err := s.resolveTag(ctx, repo, tag)
	return d, err
}

func (s *Store) resolveTag(ctx context.Context, repo, tag string) (digest.Digest, *tagEntry, error) {
	d, e, err := s.tags.resolve(ctx, s.driver, tagCurrentLinkPath(repo, tag), s.readLink)
	if errors.Is(err, storage.ErrNotFound) {
		return "", nil, fmt.Errorf("%w: tag %q in %s", ErrManifestUnknown, tag, repo)
	}
	return d, e, err
}

// GetManifestByTag returns the manifest tag points at in repo, or
// ErrManifestUnknown: ResolveTag, then GetManifest, except that a tag
// checked by its link's version (see tagCache) whose manifest was found in
// the repository since its link was read is served without looking again.
// The store writes a manifest's revision link before any tag link to it,
// and deletes the tags of a manifest (changing their links' versions)
// before its revision link, so while a tag link stays as read its manifest
// stays in the repository. Only another program deleting a revision before
// its tags (Distribution does) could have a GET serve the manifest for at
// most tagRecheck after its revision went, as if the GET came first.
func (s *Store) GetManifestByTag(ctx context.Context, repo, tag string) (Manifest, error) {
	d, e, err := s.resolveTag(ctx, repo, tag)
	if err != nil {
		return Manifest{}, err
	}
	if e != nil && e.revision {
		if m, ok := s.manifests.get(d); ok {
			return m, nil
		}
	}
	m, err := s.GetManifest(ctx, repo, d)
	if err == nil {
		s.tags.sawRevision(tagCurrentLinkPath(repo, tag), e)
	}
	return m, err
}

// GetManifest returns manifest d of repo, or ErrManifestUnknown.
func (s *Store) GetManifest(ctx context.Context, repo string, d digest.Digest) (Manifest, error) {
	ok, err := s.exists(ctx, revisionLinkPath(repo, d))
	if err != nil {
		return Manifest{}, err
	}
	if !ok {
		return Manifest{}, fmt.Errorf("%w: %s in %s", ErrManifestUnknown, d, repo)
	}
	if m, ok := s.manifests.get(d); ok {
		return m, nil
	}
	body, err := storage.ReadAll(ctx, s.driver, blobDataPath(d))
	if errors.Is(err, storage.ErrNotFound) {
		return Manifest{}, fmt.Errorf("%w: %s in %s (its bytes are missing)", ErrManifestUnknown, d, repo)
	}
	if err != nil {
		return Manifest{}, err
	}
	if got := d.Algorithm().FromBytes(body); got != d {
		return Manifest{}, fmt.Errorf("stored manifest %s is corrupt: its bytes hash to %s", d, got)
	}
	m := Manifest{Digest: d, MediaType: manifest.DetectMediaType(body), Body: body}
	s.manifests.add(m)
	return m, nil
}

// PutManifest validates body (pushed with the given Content-Type) and stores
// it in repo, under each of tags (validated by the caller). When want is not
// empty the body must hash to it (a push by digest) and want is the
// manifest's identity: the digest algorithm is want's, else sha256.
//
// The blobs and child manifests the manifest references must be in repo,
// else ErrManifestBlobUnknown; with Options.SparseManifests those that are
// simply absent are allowed (PutResult.Absent lists them), but never one
// that a garbage collector deleted while the push waited on it: the client
// relied on it. A subject need not be in repo.
func (s *Store) PutManifest(ctx context.Context, repo string, tags []string, want digest.Digest, contentType string, body []byte) (PutResult, error) {
	m, err := manifest.Parse(contentType, body)
	if err != nil {
		return PutResult{}, err
	}
	alg := digest.SHA256
	if want != "" {
		alg = want.Algorithm()
	}
	d := alg.FromBytes(body)
	if want != "" && d != want {
		return PutResult{}, fmt.Errorf("%w: manifest body hashes to %s, not %s", ErrDigestMismatch, d, want)
	}
	absent, err := s.checkReferences(ctx, repo, d, m)
	if err != nil {
		return PutResult{}, err
	}
	// Bytes first, then the revision link, then the referrer entry and the
	// tag: a crash in between leaves at worst unreferenced bytes for GC.
	have, err := s.exists(ctx, blobDataPath(d))
	if err != nil {
		return PutResult{}, err
	}
	if !have {
		if err := storage.WriteAll(ctx, s.driver, blobDataPath(d), body); err != nil {
			return PutResult{}, err
		}
	}
	if err := s.writeLink(ctx, revisionLinkPath(repo, d), d); err != nil {
		return PutResult{}, err
	}
	if m.Subject != nil {
		if err := s.writeReferrer(ctx, repo, d, m, len(body)); err != nil {
			return PutResult{}, err
		}
	}
	for _, tag := range tags {
		if err := s.writeTagLinks(ctx, repo, tag, d); err != nil {
			return PutResult{}, err
		}
	}
	s.manifests.add(Manifest{Digest: d, MediaType: m.MediaType, Body: body})
	if m.Subject != nil {
		s.summaryReferred(ctx, repo, m.Subject.Digest, d, m.ArtifactType, false)
	}
	s.summaryTagged(ctx, repo, tags, d, m, len(body))
	return PutResult{Digest: d, Manifest: m, Absent: absent}, nil
}

// checkReferences makes sure that every blob and child manifest m (whose
// digest is d) references is in repo, and that garbage collection will not
// delete them, nor m's own stored body or revision: it leases them all
// first, then waits for a collector that marked any of them to decide, then
// looks (see gc.go). A missing reference is ErrManifestBlobUnknown, unless
// the store accepts sparse manifests and no collector deleted it lately
// (recentlyDeleted): then it is returned in absent.
func (s *Store) checkReferences(ctx context.Context, repo string, d digest.Digest, m *manifest.Manifest) (absent []digest.Digest, err error) {
	blobs := m.BlobReferences()
	leased := make([]digest.Digest, 0, len(blobs)+len(m.Manifests)+1)
	for _, b := range blobs {
		leased = append(leased, b.Digest)
	}
	for _, c := range m.Manifests {
		leased = append(leased, c.Digest)
	}
	leased = append(leased, d)
	lease, err := s.lease(ctx, repo, leased...)
	if err != nil {
		return nil, err
	}
	// Its own body and revision too, if stored before: a collector
	// deleting them must finish before they are written again.
	type ref struct {
		d          digest.Digest
		link, what string
	}
	refs := make([]ref, 0, len(blobs)+len(m.Manifests))
	for _, b := range blobs {
		refs = append(refs, ref{b.Digest, layerLinkPath(repo, b.Digest), b.MediaType})
	}
	for _, c := range m.Manifests {
		refs = append(refs, ref{c.Digest, revisionLinkPath(repo, c.Digest), "child manifest " + c.MediaType})
	}
	settled := []string{blobDataPath(d), revisionLinkPath(repo, d)}
	for _, r := range refs {
		settled = append(settled, r.link, blobDataPath(r.d))
	}
	err = s.settle(ctx, settled...)
	missing := make([]bool, len(refs))
	// Read only if something is missing, and then once.
	recentlyDeleted := sync.OnceValues(func() (map[string]bool, error) { return s.recentlyDeleted(ctx) })
	if err == nil && len(refs) > 0 {
		err = parallel(ctx, len(refs), 8, func(ctx context.Context, i int) error {
			r := refs[i]
			for _, p := range []string{r.link, blobDataPath(r.d)} {
				ok, err := s.exists(ctx, p)
				if err != nil {
					return err
				}
				if ok {
					continue
				}
				// A collection that deleted it lately (or while this
				// push waited) refuses even a sparse manifest: the client
				// may have seen it (a HEAD) and not pushed it for that.
				deleted, err := recentlyDeleted()
				switch {
				case err != nil:
					return err
				case deleted[p]:
					return fmt.Errorf("%w: %s (%s) was deleted by garbage collection lately; push it again", ErrManifestBlobUnknown, r.d, r.what)
				case !s.sparse:
					return fmt.Errorf("%w: %s (%s)", ErrManifestBlobUnknown, r.d, r.what)
				}
				missing[i] = true
				return nil
			}
			return nil
		})
	}
	if err != nil {
		s.dropLease(ctx, lease)
		return nil, err
	}
	for i, r := range refs {
		if missing[i] && !slices.Contains(absent, r.d) {
			absent = append(absent, r.d)
		}
	}
	return absent, nil
}

// DeleteManifest removes manifest d from repo, with every tag that points at
// it and its entry in the referrers index. Its bytes stay until garbage
// collection.
func (s *Store) DeleteManifest(ctx context.Context, repo string, d digest.Digest) error {
	m, err := s.GetManifest(ctx, repo, d)
	if err != nil {
		return err
	}
	tags, err := s.Tags(ctx, repo)
	if err != nil && !errors.Is(err, ErrNameUnknown) {
		return err
	}
	var untagged []string
	defer func() { s.summaryUntagged(ctx, repo, untagged...) }()
	for _, t := range tags {
		cur, err := s.ResolveTag(ctx, repo, t)
		if err == nil && cur == d {
			if err := s.driver.Delete(ctx, tagPath(repo, t)); err != nil && !errors.Is(err, storage.ErrNotFound) {
				return err
			}
			untagged = append(untagged, t)
		}
	}
	if parsed, err := manifest.Parse("", m.Body); err == nil && parsed.Subject != nil {
		p := path.Dir(referrerPath(repo, parsed.Subject.Digest, d))
		if err := s.driver.Delete(ctx, p); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		s.summaryReferred(ctx, repo, parsed.Subject.Digest, d, "", true)
	}
	err = s.driver.Delete(ctx, revisionDirPath(repo, d))
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("%w: %s in %s", ErrManifestUnknown, d, repo)
	}
	return err
}

// DeleteTag removes tag from repo; the manifest it pointed at stays.
func (s *Store) DeleteTag(ctx context.Context, repo, tag string) error {
	err := s.driver.Delete(ctx, tagPath(repo, tag))
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("%w: tag %q in %s", ErrManifestUnknown, tag, repo)
	}
	if err == nil {
		s.summaryUntagged(ctx, repo, tag)
	}
	return err
}

// Tags returns the tags of repo in lexical order, or ErrNameUnknown if the
// repository holds nothing at all.
func (s *Store) Tags(ctx context.Context, repo string) ([]string, error) {
	paths, err := s.driver.List(ctx, tagsPath(repo))
	if errors.Is(err, storage.ErrNotFound) {
		// The repository exists while it holds anything, e.g. blobs whose
		// manifests were all deleted: its tag list is then empty.
		ok, err := s.exists(ctx, repoPath(repo))
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%w: %s", ErrNameUnknown, repo)
		}
		return []string{}, nil
	}
	if err != nil {
		return nil, err
	}
	tags := make([]string, 0, len(paths))
	for _, p := range paths {
		tags = append(tags, path.Base(p))
	}
	sort.Strings(tags)
	return tags, nil
}

// Repositories returns the names of all repositories in lexical order. A
// repository is a directory under repositories/ holding _manifests.
func (s *Store) Repositories(ctx context.Context) ([]string, error) {
	root := repositoriesPath()
	repos := []string{}
	err := s.driver.Walk(ctx, root, func(fi storage.FileInfo) error {
		if !fi.IsDir {
			return nil
		}
		name := path.Base(fi.Path)
		if name == "_manifests" {
			repos = append(repos, strings.TrimPrefix(path.Dir(fi.Path), root+"/"))
			return storage.SkipDir
		}
		if strings.HasPrefix(name, "_") {
			return storage.SkipDir
		}
		return nil
	})
	if errors.Is(err, storage.ErrNotFound) {
		return []string{}, nil
	}
	if err != nil {
		return nil, err
	}
	sort.Strings(repos)
	return repos, nil
}

// writeReferrer writes the entry of manifest m (digest d, size bytes long)
// in repo's referrers index under its subject: the descriptor the
// referrers API lists.
func (s *Store) writeReferrer(ctx context.Context, repo string, d digest.Digest, m *manifest.Manifest, size int) error {
	b, err := json.Marshal(v1.Descriptor{
		MediaType:    m.MediaType,
		Digest:       d,
		Size:         int64(size),
		ArtifactType: m.ArtifactType,
		Annotations:  m.Annotations,
	})
	if err != nil {
		return err
	}
	return storage.WriteAll(ctx, s.driver, referrerPath(repo, m.Subject.Digest, d), b)
}

// ReferrerEntry is one entry of a repository's referrers index: Referrer
// is listed among the referrers of Subject.
type ReferrerEntry struct {
	Subject, Referrer digest.Digest
}

// ReferrerEntries returns every entry of repo's referrers index, in no
// particular order, from one walk that reads no entry's content.
func (s *Store) ReferrerEntries(ctx context.Context, repo string) ([]ReferrerEntry, error) {
	root := repoPath(repo) + "/_referrers/"
	var out []ReferrerEntry
	err := s.driver.Walk(ctx, root[:len(root)-1], func(fi storage.FileInfo) error {
		if fi.IsDir || path.Base(fi.Path) != "descriptor" {
			return nil
		}
		// <alg>/<hex>/<alg>/<hex>/descriptor
		rel := strings.Split(strings.TrimPrefix(fi.Path, root), "/")
		if len(rel) != 5 {
			return nil
		}
		subject := digest.NewDigestFromEncoded(digest.Algorithm(rel[0]), rel[1])
		referrer := digest.NewDigestFromEncoded(digest.Algorithm(rel[2]), rel[3])
		if subject.Validate() == nil && referrer.Validate() == nil {
			out = append(out, ReferrerEntry{Subject: subject, Referrer: referrer})
		}
		return nil
	})
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	return out, err
}

// IndexReferrer writes the referrers-index entry of manifest d of repo, as
// its push would have: content written by another registry (CNCF
// Distribution keeps no such index) becomes visible to the referrers API.
// It reports whether it wrote one: not when d has no subject, and not when
// d left repo meanwhile (a concurrent delete; the entry is removed again,
// since the delete may have run before the write).
func (s *Store) IndexReferrer(ctx context.Context, repo string, d digest.Digest) (bool, error) {
	stored, err := s.GetManifest(ctx, repo, d)
	if errors.Is(err, ErrManifestUnknown) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	m, err := manifest.Parse(stored.MediaType, stored.Body)
	if err != nil {
		return false, fmt.Errorf("manifest %s in %s: %w", d, repo, err)
	}
	if m.Subject == nil {
		return false, nil
	}
	if err := s.writeReferrer(ctx, repo, d, m, len(stored.Body)); err != nil {
		return false, err
	}
	ok, err := s.exists(ctx, revisionLinkPath(repo, d))
	if err == nil && !ok {
		err = s.driver.Delete(ctx, path.Dir(referrerPath(repo, m.Subject.Digest, d)))
		if errors.Is(err, storage.ErrNotFound) {
			err = nil
		}
	}
	return ok, err
}

// Referrers returns the descriptors of the manifests in repo whose subject is
// d, filtered by artifactType when it is not empty. An unknown repository or
// subject has no referrers: the result is empty, not an error.
func (s *Store) Referrers(ctx context.Context, repo string, d digest.Digest, artifactType string) ([]v1.Descriptor, error) {
	out := []v1.Descriptor{}
	err := s.driver.Walk(ctx, referrersPath(repo, d), func(fi storage.FileInfo) error {
		if fi.IsDir || path.Base(fi.Path) != "descriptor" {
			return nil
		}
		b, err := storage.ReadAll(ctx, s.driver, fi.Path)
		if errors.Is(err, storage.ErrNotFound) {
			return nil // deleted while we walked
		}
		if err != nil {
			return err
		}
		var desc v1.Descriptor
		if err := json.Unmarshal(b, &desc); err != nil {
			s.log.Warn("skipping unreadable referrer entry", "path", fi.Path, "error", err)
			return nil
		}
		if artifactType == "" || desc.ArtifactType == artifactType {
			out = append(out, desc)
		}
		return nil
	})
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	return out, nil
}

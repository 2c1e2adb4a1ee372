package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/manifest"
	"github.com/berth-registry/berth/storage"
)

// This file is the store's part of the pull-through cache (package
// registry/proxy): manifests stored as an upstream served them, the time a
// cached tag was last checked against its upstream, the last pull of each
// cached manifest, and the claims that let one process of many download a
// blob while the others wait for it.

// CacheManifest stores body, a manifest an upstream registry served, in
// repo as manifest d, under tag if tag is not empty. Unlike PutManifest it
// does not ask for the blobs and child manifests body references to be in
// repo: a cache fetches those when a client asks for them. body must hash
// to d and parse as contentType (or as what it declares itself); what is
// stored is body, byte for byte.
func (s *Store) CacheManifest(ctx context.Context, repo, tag string, d digest.Digest, contentType string, body []byte) (Manifest, error) {
	if err := d.Validate(); err != nil {
		return Manifest{}, fmt.Errorf("%w: %v", manifest.ErrDigestInvalid, err)
	}
	if got := d.Algorithm().FromBytes(body); got != d {
		return Manifest{}, fmt.Errorf("%w: manifest body hashes to %s, not %s", ErrDigestMismatch, got, d)
	}
	m, err := manifest.Parse(contentType, body)
	if err != nil {
		return Manifest{}, err
	}
	lease, err := s.lease(ctx, repo, d)
	if err != nil {
		return Manifest{}, err
	}
	if err := s.settle(ctx, blobDataPath(d), revisionLinkPath(repo, d)); err != nil {
		s.dropLease(ctx, lease)
		return Manifest{}, err
	}
	have, err := s.exists(ctx, blobDataPath(d))
	if err != nil {
		return Manifest{}, err
	}
	if !have {
		if err := storage.WriteAll(ctx, s.driver, blobDataPath(d), body); err != nil {
			return Manifest{}, err
		}
	}
	if err := s.writeLink(ctx, revisionLinkPath(repo, d), d); err != nil {
		return Manifest{}, err
	}
	if m.Subject != nil {
		if err := s.writeReferrer(ctx, repo, d, m, len(body)); err != nil {
			return Manifest{}, err
		}
		s.summaryReferred(ctx, repo, m.Subject.Digest, d, m.ArtifactType, false)
	}
	if tag != "" {
		if err := s.writeTagLinks(ctx, repo, tag, d); err != nil {
			return Manifest{}, err
		}
		s.summaryTagged(ctx, repo, []string{tag}, d, m, len(body))
	}
	out := Manifest{Digest: d, MediaType: m.MediaType, Body: body}
	s.manifests.add(out)
	return out, nil
}

// TagChecked returns the digest tag points at in repo and when its link
// was last written: for a cached repository, when the tag was last fetched
// or confirmed from the upstream (see TouchTag). It returns
// ErrManifestUnknown when repo has no such tag.
func (s *Store) TagChecked(ctx context.Context, repo, tag string) (digest.Digest, time.Time, error) {
	p := tagCurrentLinkPath(repo, tag)
	fi, err := s.driver.Stat(ctx, p)
	if errors.Is(err, storage.ErrNotFound) {
		return "", time.Time{}, fmt.Errorf("%w: tag %q in %s", ErrManifestUnknown, tag, repo)
	}
	if err != nil {
		return "", time.Time{}, err
	}
	d, err := s.ResolveTag(ctx, repo, tag)
	if err != nil {
		return "", time.Time{}, err
	}
	return d, fi.ModTime, nil
}

// TouchTag writes tag's link in repo again with the digest d it holds,
// which sets the time TagChecked returns to now.
func (s *Store) TouchTag(ctx context.Context, repo, tag string, d digest.Digest) error {
	return s.writeLink(ctx, tagCurrentLinkPath(repo, tag), d)
}

// RecordPull notes that manifest d of repo was pulled now. Garbage
// collection's cache retention reads these notes (Pulls); the caller
// rate-limits them (a note a few minutes old is as good).
func (s *Store) RecordPull(ctx context.Context, repo string, d digest.Digest) error {
	return storage.WriteAll(ctx, s.driver, pullPath(repo, d), []byte(time.Now().UTC().Format(time.RFC3339)))
}

// Pulls returns, for each manifest of repo that RecordPull noted, when it
// was last pulled (the note's modification time on storage's clock).
func (s *Store) Pulls(ctx context.Context, repo string) (map[digest.Digest]time.Time, error) {
	out := map[digest.Digest]time.Time{}
	err := s.driver.Walk(ctx, pullsPath(repo), func(fi storage.FileInfo) error {
		if fi.IsDir {
			return nil
		}
		d, ok := digestOfPath(fi.Path)
		if ok {
			out[d] = fi.ModTime
		}
		return nil
	})
	if errors.Is(err, storage.ErrNotFound) {
		return out, nil
	}
	return out, err
}

// digestOfPath reads "<alg>/<hex>" from the last two components of p.
func digestOfPath(p string) (digest.Digest, bool) {
	hexStart := len(p)
	for hexStart > 0 && p[hexStart-1] != '/' {
		hexStart--
	}
	algStart := hexStart - 1
	for algStart > 0 && p[algStart-1] != '/' {
		algStart--
	}
	if algStart < 1 || hexStart < 1 {
		return "", false
	}
	d := digest.Digest(p[algStart:hexStart-1] + ":" + p[hexStart:])
	return d, d.Validate() == nil
}

// HasBlobData reports whether the bytes of blob d are stored, in any
// repository.
func (s *Store) HasBlobData(ctx context.Context, d digest.Digest) (bool, error) {
	return s.exists(ctx, blobDataPath(d))
}

// Claim is a process's claim on downloading blob D from an upstream,
// stored so that the other processes over the same storage wait for the
// blob rather than download it too.
type Claim struct {
	Owner string    `json:"owner"` // unique to the claiming process and download
	Since time.Time `json:"-"`     // when the claim was last written, on storage's clock
}

// ReadClaim returns the claim on blob d, or ok false if there is none.
func (s *Store) ReadClaim(ctx context.Context, d digest.Digest) (c Claim, ok bool, err error) {
	p := claimPath(d)
	b, err := storage.ReadAll(ctx, s.driver, p)
	if errors.Is(err, storage.ErrNotFound) {
		return Claim{}, false, nil
	}
	if err != nil {
		return Claim{}, false, err
	}
	fi, err := s.driver.Stat(ctx, p)
	if errors.Is(err, storage.ErrNotFound) {
		return Claim{}, false, nil
	}
	if err != nil {
		return Claim{}, false, err
	}
	if json.Unmarshal(b, &c) != nil {
		return Claim{Since: fi.ModTime}, true, nil // half-written: someone holds it
	}
	c.Since = fi.ModTime
	return c, true, nil
}

// TakeClaim takes the claim on blob d for owner if no claim is held, and
// reports whether it did. Where the driver creates files exclusively
// (storage.ExclusiveCreator) exactly one of racing processes takes it;
// elsewhere each writes its claim, waits settle and reads it back, the
// last writer winning (processes whose writes land further apart than
// settle may both take it).
func (s *Store) TakeClaim(ctx context.Context, d digest.Digest, owner string, settle time.Duration) (bool, error) {
	b, err := json.Marshal(Claim{Owner: owner})
	if err != nil {
		return false, err
	}
	if ec, ok := s.driver.(storage.ExclusiveCreator); ok {
		err := ec.CreateExclusive(ctx, claimPath(d), b)
		if errors.Is(err, storage.ErrExists) {
			return false, nil
		}
		return err == nil, err
	}
	return s.ReplaceClaim(ctx, d, owner, settle)
}

// ReplaceClaim writes owner's claim on blob d over whatever claim is held
// (one that went stale), waits settle and reads it back: it reports
// whether owner's claim is the one that stayed.
func (s *Store) ReplaceClaim(ctx context.Context, d digest.Digest, owner string, settle time.Duration) (bool, error) {
	if err := s.WriteClaim(ctx, d, owner); err != nil {
		return false, err
	}
	t := time.NewTimer(settle)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false, ctx.Err()
	case <-t.C:
	}
	c, ok, err := s.ReadClaim(ctx, d)
	return ok && c.Owner == owner, err
}

// WriteClaim writes (or renews) owner's claim on blob d, replacing any.
func (s *Store) WriteClaim(ctx context.Context, d digest.Digest, owner string) error {
	b, err := json.Marshal(Claim{Owner: owner})
	if err != nil {
		return err
	}
	return storage.WriteAll(ctx, s.driver, claimPath(d), b)
}

// DropClaim removes the claim on blob d if owner still holds it.
func (s *Store) DropClaim(ctx context.Context, d digest.Digest, owner string) error {
	c, ok, err := s.ReadClaim(ctx, d)
	if err != nil || !ok || c.Owner != owner {
		return err
	}
	err = s.driver.Delete(ctx, claimPath(d))
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	return err
}

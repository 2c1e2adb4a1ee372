package store

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/storage"
)

// What garbage collection (package gc) needs from the store: enumeration of
// what is stored, with modification times, and a sweep of one blob or one
// layer link that a concurrent push cannot race. The interlock has two
// halves, both here:
//
//   - Whenever the store lets a client rely on a blob that already exists
//     (StatBlob for a HEAD, MountBlob, FinishUpload finding identical bytes,
//     PutManifest checking references or finding its own body stored), it
//     touches the blob's data file, and for StatBlob the repository's layer
//     link, if their ModTime is older than Options.TouchAfter. Touching a
//     file that is gone fails with not found, and the client is told the
//     blob is unknown.
//   - SweepBlob and SweepLayerLink never delete a file in place. They move it
//     aside (an atomic rename, which keeps its ModTime), read the ModTime of
//     what they moved, and delete it only if it is still older than the
//     cutoff; otherwise they move it back. A touch that happens before the
//     rename is seen by the check after it; a touch after the rename finds
//     nothing and fails. So no client is ever told a blob exists that the
//     sweep then deletes while its age was recent.
//
// A sweep killed between the rename and the delete leaves a doomed file
// next to where the file was; WalkBlobs reports it and RestoreBlob puts it
// back, so the next run converges.

// DefaultTouchAfter is the default Options.TouchAfter.
const DefaultTouchAfter = 10 * time.Minute

// doomedName is the name a swept file takes, in its own directory, between
// the rename aside and the delete.
const doomedName = "gc-doomed"

// BlobInfo describes the stored bytes of a blob.
type BlobInfo struct {
	Digest  digest.Digest
	Size    int64
	ModTime time.Time
	// Doomed: only the moved-aside copy of a sweep that did not finish is
	// there (see RestoreBlob).
	Doomed bool
}

// LinkInfo describes a link file (a layer link or a manifest revision).
type LinkInfo struct {
	Digest  digest.Digest
	ModTime time.Time
}

// WalkBlobs calls fn for each blob in the shared blob store, in digest
// order. Entries that are not blobs are skipped.
func (s *Store) WalkBlobs(ctx context.Context, fn func(BlobInfo) error) error {
	root := blobsPath()
	err := s.driver.Walk(ctx, root, func(fi storage.FileInfo) error {
		if fi.IsDir {
			return nil
		}
		rel := strings.Split(strings.TrimPrefix(fi.Path, root+"/"), "/")
		// <alg>/<hex[0:2]>/<hex>/data
		if len(rel) != 4 || (rel[3] != "data" && rel[3] != doomedName) {
			return nil
		}
		d := digest.NewDigestFromEncoded(digest.Algorithm(rel[0]), rel[2])
		if d.Validate() != nil || rel[1] != rel[2][:2] {
			return nil
		}
		return fn(BlobInfo{Digest: d, Size: fi.Size, ModTime: fi.ModTime, Doomed: rel[3] == doomedName})
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

// links collects the <alg>/<hex>/link files under dir.
func (s *Store) links(ctx context.Context, dir string) ([]LinkInfo, error) {
	out := []LinkInfo{}
	err := s.driver.Walk(ctx, dir, func(fi storage.FileInfo) error {
		if fi.IsDir {
			return nil
		}
		rel := strings.Split(strings.TrimPrefix(fi.Path, dir+"/"), "/")
		if len(rel) != 3 || rel[2] != "link" {
			return nil
		}
		d := digest.NewDigestFromEncoded(digest.Algorithm(rel[0]), rel[1])
		if d.Validate() != nil {
			return nil
		}
		out = append(out, LinkInfo{Digest: d, ModTime: fi.ModTime})
		return nil
	})
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	return out, nil
}

// CanSweep reports whether the driver lets the store touch files
// (storage.Toucher), without which a sweep could race a push.
func (s *Store) CanSweep() bool {
	_, ok := s.driver.(storage.Toucher)
	return ok
}

// SweepBlob deletes the bytes of blob d if their ModTime is before cutoff,
// checked after moving them aside so that a concurrent touch either is seen
// or fails. It reports whether it deleted them and how many bytes; a blob
// already gone is not an error. The caller must have found d unreferenced.
func (s *Store) SweepBlob(ctx context.Context, d digest.Digest, cutoff time.Time) (bool, int64, error) {
	return s.sweepFile(ctx, blobDataPath(d), cutoff)
}

// SweepLayerLink removes the link of blob d from repo under the same rule
// as SweepBlob. Only the link file goes: a link written meanwhile stays.
func (s *Store) SweepLayerLink(ctx context.Context, repo string, d digest.Digest, cutoff time.Time) (bool, error) {
	ok, _, err := s.sweepFile(ctx, layerLinkPath(repo, d), cutoff)
	return ok, err
}

// RestoreBlob puts back the bytes of d that a killed sweep moved aside:
// moved back if no data is there, else the aside copy is dropped (the
// bytes are identical: content addressed). Nothing aside is not an error.
func (s *Store) RestoreBlob(ctx context.Context, d digest.Digest) error {
	p := blobDataPath(d)
	aside := path.Dir(p) + "/" + doomedName
	have, err := s.exists(ctx, p)
	if err != nil {
		return err
	}
	if have {
		err = s.driver.Delete(ctx, aside)
	} else {
		err = s.driver.Move(ctx, aside, p)
	}
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	return err
}

func (s *Store) sweepFile(ctx context.Context, p string, cutoff time.Time) (bool, int64, error) {
	fi, err := s.driver.Stat(ctx, p)
	if errors.Is(err, storage.ErrNotFound) {
		return false, 0, nil
	}
	if err != nil {
		return false, 0, err
	}
	if !fi.ModTime.Before(cutoff) {
		return false, 0, nil // cheap early out; the check that counts is below
	}
	aside := path.Dir(p) + "/" + doomedName
	if err := s.driver.Move(ctx, p, aside); errors.Is(err, storage.ErrNotFound) {
		return false, 0, nil
	} else if err != nil {
		return false, 0, err
	}
	fi, err = s.driver.Stat(ctx, aside)
	if errors.Is(err, storage.ErrNotFound) {
		return false, 0, nil // another collector restored or removed it
	}
	if err == nil && fi.ModTime.Before(cutoff) {
		err = s.driver.Delete(ctx, aside)
		if errors.Is(err, storage.ErrNotFound) {
			return false, 0, nil
		}
		if err != nil {
			return false, 0, err
		}
		return true, fi.Size, nil
	}
	// Touched since the first look (or unreadable): put it back. Identical
	// bytes written at p meanwhile are replaced by identical bytes.
	if merr := s.driver.Move(context.WithoutCancel(ctx), aside, p); merr != nil && !errors.Is(merr, storage.ErrNotFound) {
		return false, 0, fmt.Errorf("restoring %s after a sweep check: %w", p, merr)
	}
	return false, 0, err
}

// touchIfOld makes the file at p (described by fi) recent if its ModTime is
// older than the store's TouchAfter, so that garbage collection spares it.
// It returns storage.ErrNotFound if the file is gone.
func (s *Store) touchIfOld(ctx context.Context, p string, fi storage.FileInfo) error {
	t, ok := s.driver.(storage.Toucher)
	if !ok || time.Since(fi.ModTime) < s.touchAfter {
		return nil
	}
	return t.Touch(ctx, p)
}

// touchBlob stats the bytes of d and touches them if old. It returns their
// size, or ErrBlobUnknown.
func (s *Store) touchBlob(ctx context.Context, d digest.Digest) (int64, error) {
	p := blobDataPath(d)
	fi, err := s.driver.Stat(ctx, p)
	if err == nil {
		err = s.touchIfOld(ctx, p, fi)
	}
	if errors.Is(err, storage.ErrNotFound) {
		return 0, fmt.Errorf("%w: %s", ErrBlobUnknown, d)
	}
	if err != nil {
		return 0, err
	}
	return fi.Size, nil
}

package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/storage"
)

// StatBlob returns the size of blob d if it is part of repo. A client may
// rely on the answer (skip an upload), so a blob that garbage collection is
// deleting is unknown, and an old blob gets a lease so that the manifest
// pushed next finds it kept (see gc.go).
func (s *Store) StatBlob(ctx context.Context, repo string, d digest.Digest) (int64, error) {
	link, data := layerLinkPath(repo, d), blobDataPath(d)
	size, mod, err := s.statLinked(ctx, repo, d)
	if err != nil {
		return 0, err
	}
	if doomed, err := s.anyDoomed(ctx, link, data); err != nil {
		return 0, err
	} else if doomed {
		return 0, fmt.Errorf("%w: %s in %s (being garbage-collected)", ErrBlobUnknown, d, repo)
	}
	if time.Since(mod) > s.leaseAfter && s.leaseMemo.due(Lease{repo, d}, s.leaseAfter/10) {
		if _, err := s.lease(ctx, repo, d); err != nil {
			s.log.Warn("could not lease a blob a client checked", "repository", repo, "digest", d, "error", err)
		}
	}
	return size, nil
}

// BlobSize returns the size of blob d if it is part of repo, for a read
// (GET): unlike StatBlob it neither checks garbage collection's doom
// lists nor leases, since a pull relies on nothing beyond its own read. A
// blob being collected is one no kept manifest references, or one a push's
// lease is keeping: either way reading it is harmless.
func (s *Store) BlobSize(ctx context.Context, repo string, d digest.Digest) (int64, error) {
	size, _, err := s.statLinked(ctx, repo, d)
	return size, err
}

// statLinked returns the size and modification time of blob d if it is
// linked into repo and its bytes are stored.
func (s *Store) statLinked(ctx context.Context, repo string, d digest.Digest) (int64, time.Time, error) {
	ok, err := s.exists(ctx, layerLinkPath(repo, d))
	if err != nil {
		return 0, time.Time{}, err
	}
	if !ok {
		return 0, time.Time{}, fmt.Errorf("%w: %s in %s", ErrBlobUnknown, d, repo)
	}
	fi, err := s.driver.Stat(ctx, blobDataPath(d))
	if errors.Is(err, storage.ErrNotFound) {
		return 0, time.Time{}, fmt.Errorf("%w: %s", ErrBlobUnknown, d)
	}
	if err != nil {
		return 0, time.Time{}, err
	}
	return fi.Size, fi.ModTime, nil
}

// statBlobData returns the size of the stored bytes of d, in any repository.
func (s *Store) statBlobData(ctx context.Context, d digest.Digest) (int64, error) {
	fi, err := s.driver.Stat(ctx, blobDataPath(d))
	if errors.Is(err, storage.ErrNotFound) {
		return 0, fmt.Errorf("%w: %s", ErrBlobUnknown, d)
	}
	if err != nil {
		return 0, err
	}
	return fi.Size, nil
}

// OpenBlob opens blob d of repo for reading from offset and returns its total
// size. For the filesystem driver the reader is an *os.File, so copying it to
// a connection uses sendfile.
func (s *Store) OpenBlob(ctx context.Context, repo string, d digest.Digest, offset int64) (io.ReadCloser, int64, error) {
	size, _, err := s.statLinked(ctx, repo, d)
	if err != nil {
		return nil, 0, err
	}
	r, err := s.driver.Reader(ctx, blobDataPath(d), offset)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, 0, fmt.Errorf("%w: %s", ErrBlobUnknown, d)
	}
	if err != nil {
		return nil, 0, err
	}
	return r, size, nil
}

// BlobRedirectURL returns a URL from which a client can fetch blob d directly,
// when the driver can give one; otherwise an error wrapping
// storage.ErrUnsupported. The caller must have checked that d is in the
// repository (StatBlob).
func (s *Store) BlobRedirectURL(ctx context.Context, method string, d digest.Digest) (string, error) {
	r, ok := s.driver.(storage.Redirector)
	if !ok {
		return "", storage.ErrUnsupported
	}
	return r.RedirectURL(ctx, method, blobDataPath(d))
}

// DeleteBlob removes blob d from repo. The bytes stay in the shared blob
// store until garbage collection finds nothing referencing them.
func (s *Store) DeleteBlob(ctx context.Context, repo string, d digest.Digest) error {
	p := layerLinkPath(repo, d)
	err := s.driver.Delete(ctx, p[:len(p)-len("/link")])
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("%w: %s in %s", ErrBlobUnknown, d, repo)
	}
	return err
}

// MountBlob makes blob d part of repo without uploading it again. With from
// set, d must be part of repository from; with from empty, d must exist in
// the shared blob store (automatic cross-mount). It returns the blob size.
// A blob garbage collection is deleting cannot be mounted (the client
// uploads it instead).
func (s *Store) MountBlob(ctx context.Context, repo, from string, d digest.Digest) (size int64, err error) {
	link, data := layerLinkPath(repo, d), blobDataPath(d)
	lease, err := s.lease(ctx, repo, d)
	if err != nil {
		return 0, err
	}
	defer func() {
		if err != nil {
			s.dropLease(ctx, lease)
		}
	}()
	check := []string{data}
	if from != "" {
		check = append(check, layerLinkPath(from, d))
	}
	if doomed, err := s.anyDoomed(ctx, check...); err != nil {
		return 0, err
	} else if doomed {
		return 0, fmt.Errorf("%w: %s (being garbage-collected)", ErrBlobUnknown, d)
	}
	if from != "" {
		size, _, err = s.statLinked(ctx, from, d)
	} else {
		size, err = s.statBlobData(ctx, d)
	}
	if err != nil {
		return 0, err
	}
	// The target link may be an old one the collector is removing: let it
	// finish before writing ours.
	if err := s.settle(ctx, link); err != nil {
		return 0, err
	}
	if err := s.writeLink(ctx, link, d); err != nil {
		return 0, err
	}
	return size, nil
}

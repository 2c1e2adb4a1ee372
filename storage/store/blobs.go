package store

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/storage"
)

// StatBlob returns the size of blob d if it is part of repo. A client may
// rely on the answer (skip an upload), so an old blob and its link are
// touched for garbage collection (see gc.go).
func (s *Store) StatBlob(ctx context.Context, repo string, d digest.Digest) (int64, error) {
	link := layerLinkPath(repo, d)
	fi, err := s.driver.Stat(ctx, link)
	if err == nil {
		err = s.touchIfOld(ctx, link, fi)
	}
	if errors.Is(err, storage.ErrNotFound) {
		return 0, fmt.Errorf("%w: %s in %s", ErrBlobUnknown, d, repo)
	}
	if err != nil {
		return 0, err
	}
	return s.touchBlob(ctx, d)
}

// statLinkedBlob is StatBlob without the touch, for reads.
func (s *Store) statLinkedBlob(ctx context.Context, repo string, d digest.Digest) (int64, error) {
	ok, err := s.exists(ctx, layerLinkPath(repo, d))
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, fmt.Errorf("%w: %s in %s", ErrBlobUnknown, d, repo)
	}
	return s.statBlobData(ctx, d)
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
	size, err := s.statLinkedBlob(ctx, repo, d)
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
func (s *Store) MountBlob(ctx context.Context, repo, from string, d digest.Digest) (int64, error) {
	var size int64
	var err error
	if from != "" {
		size, err = s.StatBlob(ctx, from, d)
	} else {
		size, err = s.touchBlob(ctx, d)
	}
	if err != nil {
		return 0, err
	}
	if err := s.writeLink(ctx, layerLinkPath(repo, d), d); err != nil {
		return 0, err
	}
	return size, nil
}

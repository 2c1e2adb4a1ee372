package image

import (
	"fmt"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/berth-registry/berth/manifest"
	"github.com/berth-registry/berth/runner/pull"
)

// maxIndexDepth is how many indexes may lead to an image manifest (an index
// of indexes is 2), as the pull client allows.
const maxIndexDepth = 3

// Index is the multi-platform index (an OCI image index or a Docker
// manifest list) a reference names.
type Index struct {
	// Digest is the index's digest.
	Digest digest.Digest
	// MediaType, Size and Manifests describe the stored index blob; "", 0
	// and nil when the store does not hold it (a pull by an older berth).
	MediaType string
	Size      int64
	Manifests []ocispec.Descriptor
	// Blobs are the stored blobs the index reaches: itself, and through
	// its entries (nested indexes included) every manifest, config and
	// layer blob the store holds.
	Blobs []digest.Digest
	// Complete says that the store holds all of them, every platform: the
	// index can be pushed or saved whole (`berth pull --all-platforms`).
	// A plain pull stores the index and one platform's image only.
	Complete bool
}

// Index returns the index ref names (a reference, completed as Get
// completes it): the one it was pulled through, loaded or tagged with.
// ok is false when ref names a single image (or is an ID). Errors wrap
// ErrNotFound.
func (s *Store) Index(ref string) (ix Index, ok bool, err error) {
	idx, err := s.readIndex()
	if err != nil {
		return Index{}, false, err
	}
	_, key, err := s.resolve(idx, ref)
	if err != nil {
		return Index{}, false, err
	}
	if key == "" || idx.Refs[key].Index == "" {
		return Index{}, false, nil
	}
	return s.index(idx.Refs[key].Index), true, nil
}

// index walks index d through the stored blobs (see Index).
func (s *Store) index(d digest.Digest) Index {
	ix := Index{Digest: d, Complete: true}
	seen := map[digest.Digest]bool{}
	keep := func(d digest.Digest) bool {
		if seen[d] {
			return true
		}
		if !s.HasBlob(d) {
			ix.Complete = false
			return false
		}
		seen[d] = true
		ix.Blobs = append(ix.Blobs, d)
		return true
	}
	var walk func(d digest.Digest, mediaType string, depth int)
	walk = func(d digest.Digest, mediaType string, depth int) {
		if seen[d] || !keep(d) {
			return
		}
		body, err := s.readManifest(d)
		var m *manifest.Manifest
		if err == nil {
			m, err = manifest.Parse(mediaType, body)
		}
		if err != nil || (depth == 0 && !m.IsIndex()) {
			ix.Complete = false
			return
		}
		if depth == 0 {
			ix.MediaType, ix.Size, ix.Manifests = m.MediaType, int64(len(body)), m.Manifests
		}
		if !m.IsIndex() {
			for _, b := range m.BlobReferences() {
				keep(b.Digest)
			}
			return
		}
		if depth == maxIndexDepth {
			ix.Complete = false
			return
		}
		for _, c := range m.Manifests {
			walk(c.Digest, c.MediaType, depth+1)
		}
	}
	walk(d, "", 0)
	return ix
}

// readManifest reads a stored blob that should be a manifest, refusing one
// larger than a manifest can be.
func (s *Store) readManifest(d digest.Digest) ([]byte, error) {
	f, size, err := s.OpenBlob(d)
	if err != nil {
		return nil, err
	}
	f.Close()
	if size > manifest.MaxSize {
		return nil, fmt.Errorf("%w: blob %s is %d bytes, too large for a manifest", ErrCorrupt, d, size)
	}
	return s.ReadBlob(d)
}

// RecordIndex records a multi-platform index that was loaded here, whose
// blobs are all stored (Index.Complete), and names it by refs (references,
// completed as Pull completes them; not digests): push and save give out
// the whole index. img is the image of the index for this host, recorded
// as Record records it, for run; with img.ManifestDigest "", none of the
// index's images is recorded and the references name the index alone (it
// has no image for this host), and the returned Image is zero. Errors
// wrap ErrBlobMissing (the index is not complete), ErrCorrupt or
// pull.ErrInvalidReference. The caller holds Hold.
func (s *Store) RecordIndex(index digest.Digest, img Image, refs ...string) (Image, error) {
	if ix := s.index(index); !ix.Complete {
		return Image{}, fmt.Errorf("%w: index %s: not every platform's blobs are stored", ErrBlobMissing, index)
	}
	return s.record(img, index, refs)
}

// recordRefs makes each key (a reference in full form) name entry; the
// caller holds refs.lock. It returns the index as written.
func (s *Store) recordRefs(entry refEntry, keys []string) (*refIndex, error) {
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return idx, nil
	}
	for _, k := range keys {
		idx.Refs[k] = entry
	}
	return idx, s.writeIndex(idx)
}

// tagKeys completes refs to the keys of the reference index, refusing
// digests: a name given here is a tag.
func (s *Store) tagKeys(refs []string) ([]string, error) {
	keys := make([]string, len(refs))
	for i, ref := range refs {
		r, err := pull.ParseReference(ref, s.DefaultRegistry)
		if err != nil {
			return nil, err
		}
		if r.Digest != "" {
			return nil, fmt.Errorf("%w: %s: an image built or loaded here is named by a tag, not a digest", pull.ErrInvalidReference, ref)
		}
		keys[i] = r.String()
	}
	return keys, nil
}

// recordIndexOnly makes keys name index d alone (no image of it runs
// here); the caller holds Hold.
func (s *Store) recordIndexOnly(d digest.Digest, keys []string) error {
	unlock, err := s.flock(refsLock, unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer unlock()
	_, err = s.recordRefs(refEntry{Index: d}, keys)
	return err
}

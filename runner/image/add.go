package image

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/berth-registry/berth/runner/pull"
)

// Hold keeps Prune from running until release is called: take it before
// storing the blobs and layers of a new image (PutBlob, the layer store's
// Unpack) and release it after Record, so that nothing stored for the
// image is pruned before the image names it. Pull holds it by itself.
func (s *Store) Hold() (release func(), err error) {
	return s.flock(lockFile, unix.LOCK_SH)
}

// Record adds an image that was built or loaded here (not pulled) and
// names it by refs (references, completed as Pull completes them; none
// leaves it dangling until tagged). Its manifest (img.ManifestDigest) and
// config (img.ID) must already be stored blobs, and its layers must be in
// the layer store; their blobs should be stored too, or the image cannot
// be pushed or saved. img.RawConfig, Config, Platform, Size, and Layers'
// DiffIDs are taken from the stored manifest and config; Pulled is set to
// now when zero. The caller holds Hold.
func (s *Store) Record(img Image, refs ...string) (Image, error) {
	return s.record(img, "", refs)
}

// record is Record and RecordIndex: refs name img's manifest, through
// index when it is not "" (and only index when img.ManifestDigest is "").
func (s *Store) record(img Image, index digest.Digest, refs []string) (Image, error) {
	keys, err := s.tagKeys(refs)
	if err != nil {
		return Image{}, err
	}
	if img.ManifestDigest == "" {
		if index == "" {
			return Image{}, fmt.Errorf("%w: no manifest to record", ErrNotFound)
		}
		return Image{}, s.recordIndexOnly(index, keys)
	}
	full, err := s.imageFromBlobs(img.ManifestDigest)
	if err != nil {
		return Image{}, err
	}
	if img.ID != "" && img.ID != full.ID {
		return Image{}, fmt.Errorf("%w: manifest %s names config %s, not %s", ErrCorrupt, img.ManifestDigest, full.ID, img.ID)
	}
	full.Pulled = img.Pulled
	if full.Pulled.IsZero() {
		full.Pulled = time.Now().UTC()
	}
	if _, err := s.storedLayers(full); err != nil {
		return Image{}, err
	}
	for _, l := range full.Layers {
		sl, _ := s.layers.Get(l.DiffID)
		full.Size += sl.Size
	}

	unlock, err := s.flock(refsLock, unix.LOCK_EX)
	if err != nil {
		return Image{}, err
	}
	defer unlock()
	if err := s.writeRecord(full); err != nil {
		return Image{}, err
	}
	idx, err := s.recordRefs(refEntry{ID: full.ID, Manifest: full.ManifestDigest, Index: index}, keys)
	if err != nil {
		return Image{}, err
	}
	full.References = refsByID(idx)[full.ID]
	return full, nil
}

// imageFromBlobs reads an image manifest and its config from the stored
// blobs and returns the image they describe (without references, size or
// time).
func (s *Store) imageFromBlobs(manifest digest.Digest) (Image, error) {
	raw, err := s.ReadBlob(manifest)
	if err != nil {
		return Image{}, err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil || m.Config.Digest == "" {
		return Image{}, fmt.Errorf("%w: manifest %s is not an image manifest", ErrCorrupt, manifest)
	}
	mt := m.MediaType
	if mt == "" {
		mt = ocispec.MediaTypeImageManifest
	}
	cfg, err := s.ReadBlob(m.Config.Digest)
	if err != nil {
		return Image{}, err
	}
	img := Image{ID: m.Config.Digest, ManifestDigest: manifest, ManifestMediaType: mt, RawConfig: cfg}
	if err := json.Unmarshal(cfg, &img.Config); err != nil {
		return Image{}, fmt.Errorf("%w: config %s: %v", ErrCorrupt, m.Config.Digest, err)
	}
	if len(img.Config.RootFS.DiffIDs) != len(m.Layers) {
		return Image{}, fmt.Errorf("%w: config %s lists %d diff_ids for the manifest's %d layers",
			ErrCorrupt, m.Config.Digest, len(img.Config.RootFS.DiffIDs), len(m.Layers))
	}
	img.Platform = pull.Platform{OS: img.Config.OS, Architecture: img.Config.Architecture, Variant: img.Config.Variant}.Normalize()
	for i, l := range m.Layers {
		img.Layers = append(img.Layers, Layer{DiffID: img.Config.RootFS.DiffIDs[i], Digest: l.Digest, MediaType: l.MediaType, Size: l.Size})
	}
	return img, nil
}

// Tag makes target (a reference, completed as Pull completes it; not a
// digest) name the image source names (a reference or an ID, as Get takes
// it), as `berth tag` does. A reference that named another image moves.
// When source is a reference to a multi-platform index (Index), target
// names it too; for a reference that names an index alone (no image of it
// runs here), the returned Image is zero. Errors wrap ErrNotFound,
// ErrAmbiguous or pull.ErrInvalidReference.
func (s *Store) Tag(source, target string) (Image, error) {
	r, err := pull.ParseReference(target, s.DefaultRegistry)
	if err != nil {
		return Image{}, err
	}
	if r.Digest != "" {
		return Image{}, fmt.Errorf("%w: %s: a tag names an image, a digest cannot be given to one", pull.ErrInvalidReference, target)
	}
	unlock, err := s.flock(refsLock, unix.LOCK_EX)
	if err != nil {
		return Image{}, err
	}
	defer unlock()
	idx, err := s.readIndex()
	if err != nil {
		return Image{}, err
	}
	id, key, err := s.resolve(idx, source)
	if err != nil {
		return Image{}, err
	}
	// The index moves with the tag: target pushes as the whole index when
	// the store holds every platform of it, else as this platform's image.
	var index digest.Digest
	if key != "" {
		index = idx.Refs[key].Index
	}
	if id == "" {
		idx.Refs[r.String()] = refEntry{Index: index}
		return Image{}, s.writeIndex(idx)
	}
	img, err := s.readRecord(id)
	if err != nil {
		return Image{}, err
	}
	manifest := img.ManifestDigest
	if key != "" {
		manifest = idx.Refs[key].Manifest
	}
	idx.Refs[r.String()] = refEntry{ID: id, Manifest: manifest, Index: index}
	if err := s.writeIndex(idx); err != nil {
		return Image{}, err
	}
	img.References = refsByID(idx)[id]
	return img, nil
}

package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/berth-registry/berth/runner/layers"
	"github.com/berth-registry/berth/runner/pull"
)

// DefaultStateDir is the state directory of a root berth.
const DefaultStateDir = "/var/lib/berth"

// Names in the state directory (drawn in doc.go).
const (
	layersDir  = "layers"
	imagesDir  = "images"
	refsFile   = "refs.json"
	lockFile   = "lock"
	refsLock   = "refs.lock"
	recordExt  = ".json"
	tmpPattern = ".tmp-*"
)

// Store is the local image store in one state directory. It is safe for
// concurrent use, and several processes may share the directory.
type Store struct {
	// DefaultRegistry (host[:port]) completes references that name no
	// registry in Get, Remove and Pull (unless PullOptions gives one);
	// "" refuses them. Set it before using the Store.
	DefaultRegistry string

	dir    string
	layers *layers.Store
}

// Image is a pulled image.
type Image struct {
	// ID is the digest of the image config.
	ID digest.Digest
	// References are the references naming the image (host/name:tag or
	// host/name@digest), sorted; none for an image whose references all
	// moved to newer pulls (a dangling image, which Prune removes).
	References []string
	// ManifestDigest and ManifestMediaType describe the manifest of the
	// latest pull of the image.
	ManifestDigest    digest.Digest
	ManifestMediaType string
	// Platform is the platform of the config.
	Platform pull.Platform
	// RawConfig is the config as pulled (its digest is ID); Config is it
	// decoded.
	RawConfig []byte
	Config    ocispec.Image
	// Layers are the image's layers, base first.
	Layers []Layer
	// Size is the sum of the layers' uncompressed sizes.
	Size int64
	// Pulled is when the image was last pulled.
	Pulled time.Time
}

// Layer is one layer of an Image.
type Layer struct {
	// DiffID is the digest of the uncompressed layer, its key in the layer
	// store.
	DiffID digest.Digest `json:"diffID"`
	// Digest, MediaType and Size describe the blob in the registry.
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType"`
	Size      int64         `json:"size"`
}

// DiffIDs returns the diff_ids of the image's layers, base first.
func (img Image) DiffIDs() []digest.Digest {
	out := make([]digest.Digest, len(img.Layers))
	for i, l := range img.Layers {
		out[i] = l.DiffID
	}
	return out
}

// record is an image record file.
type record struct {
	ID                digest.Digest `json:"id"`
	ManifestDigest    digest.Digest `json:"manifestDigest"`
	ManifestMediaType string        `json:"manifestMediaType"`
	Platform          string        `json:"platform"`
	Config            []byte        `json:"config"` // base64: the exact bytes, which the ID hashes
	Layers            []Layer       `json:"layers"`
	Size              int64         `json:"size"`
	Pulled            time.Time     `json:"pulled"`
}

// refEntry is a value of the reference index.
type refEntry struct {
	ID       digest.Digest `json:"id"`
	Manifest digest.Digest `json:"manifest"`
	// Index is the index (manifest list) the reference named when it was
	// pulled or loaded, whose child Manifest is; "" when it named Manifest
	// itself. Its blob is stored (unless an older berth pulled it), and
	// every platform's blobs too after `pull --all-platforms`. ID and
	// Manifest are "" when the index has no image for this host.
	Index digest.Digest `json:"index,omitempty"`
}

// refIndex is refs.json.
type refIndex struct {
	Refs map[string]refEntry `json:"refs"`
}

// Open opens the image store in stateDir, creating it (mode 0700) if
// needed, with its layer store in stateDir/layers.
func Open(stateDir string) (*Store, error) {
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		return nil, fmt.Errorf("image: state directory %s: %w", stateDir, err)
	}
	for _, d := range []string{abs, filepath.Join(abs, imagesDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("image: creating the store: %w", err)
		}
	}
	ls, err := layers.Open(filepath.Join(abs, layersDir))
	if err != nil {
		return nil, err
	}
	return &Store{dir: abs, layers: ls}, nil
}

// Dir returns the state directory.
func (s *Store) Dir() string { return s.dir }

// LayerStore returns the layer store the images' layers are in.
func (s *Store) LayerStore() *layers.Store { return s.layers }

// List returns every recorded image, most recently pulled first.
func (s *Store) List() ([]Image, error) {
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	byID := refsByID(idx)
	var out []Image
	root := filepath.Join(s.dir, imagesDir)
	algs, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("image: listing: %w", err)
	}
	for _, alg := range algs {
		ents, err := os.ReadDir(filepath.Join(root, alg.Name()))
		if err != nil {
			return nil, fmt.Errorf("image: listing: %w", err)
		}
		for _, e := range ents {
			hex, ok := strings.CutSuffix(e.Name(), recordExt)
			if !ok {
				continue
			}
			id := digest.NewDigestFromEncoded(digest.Algorithm(alg.Name()), hex)
			if id.Validate() != nil {
				continue
			}
			img, err := s.readRecord(id)
			if errors.Is(err, ErrNotFound) {
				continue // removed meanwhile
			}
			if err != nil {
				return nil, err
			}
			img.References = byID[id]
			out = append(out, img)
		}
	}
	slices.SortStableFunc(out, func(a, b Image) int {
		if c := b.Pulled.Compare(a.Pulled); c != 0 {
			return c
		}
		return strings.Compare(string(a.ID), string(b.ID))
	})
	return out, nil
}

// Get returns the image named by ref: a reference (completed with
// DefaultRegistry and the "latest" tag as pull.ParseReference does), the
// full ID ("sha256:<hex>"), or a unique prefix of the ID's hex, with or
// without "sha256:". Errors wrap ErrNotFound or ErrAmbiguous.
func (s *Store) Get(ref string) (Image, error) {
	img, _, err := s.Lookup(ref)
	return img, err
}

// Lookup returns the image ref names, as Get does, and the digest of the
// manifest that names it under ref: the manifest pulled, tagged or recorded
// with that reference, which may be an older manifest of the same image
// than img.ManifestDigest (the latest pull's, which an ID gives).
// `berth push` pushes that manifest, so that a pulled and retagged image
// keeps its digest.
func (s *Store) Lookup(ref string) (Image, digest.Digest, error) {
	idx, err := s.readIndex()
	if err != nil {
		return Image{}, "", err
	}
	id, key, err := s.resolve(idx, ref)
	if err != nil {
		return Image{}, "", err
	}
	if id == "" {
		return Image{}, "", fmt.Errorf("%w: %s names a multi-platform index with no image for %s (it can be pushed or saved, not run)", ErrNotFound, ref, pull.HostPlatform())
	}
	img, err := s.readRecord(id)
	if err != nil {
		return Image{}, "", err
	}
	img.References = refsByID(idx)[id]
	manifest := img.ManifestDigest
	if m := idx.Refs[key].Manifest; key != "" && m != "" {
		manifest = m
	}
	return img, manifest, nil
}

// resolve finds ref in idx: as a reference (the index key it matched is
// returned; id is "" for a reference that names an index alone, see
// RecordIndex), else as an ID or ID prefix (key "").
func (s *Store) resolve(idx *refIndex, ref string) (digest.Digest, string, error) {
	if e, ok := idx.Refs[ref]; ok {
		return e.ID, ref, nil
	}
	if r, err := pull.ParseReference(ref, s.DefaultRegistry); err == nil {
		if e, ok := idx.Refs[r.String()]; ok {
			return e.ID, r.String(), nil
		}
	}
	id, err := s.matchID(ref)
	return id, "", err
}

// matchID finds the one recorded image whose ID is, or starts with, ref.
func (s *Store) matchID(ref string) (digest.Digest, error) {
	alg, prefix, ok := strings.Cut(ref, ":")
	if !ok {
		alg, prefix = string(digest.Canonical), ref
	}
	if prefix == "" || strings.Trim(prefix, "0123456789abcdef") != "" || !digest.Algorithm(alg).Available() {
		return "", fmt.Errorf("%w: %s", ErrNotFound, ref)
	}
	ents, err := os.ReadDir(filepath.Join(s.dir, imagesDir, alg))
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w: %s", ErrNotFound, ref)
	}
	if err != nil {
		return "", fmt.Errorf("image: listing: %w", err)
	}
	var found []digest.Digest
	for _, e := range ents {
		hex, ok := strings.CutSuffix(e.Name(), recordExt)
		if ok && strings.HasPrefix(hex, prefix) {
			found = append(found, digest.NewDigestFromEncoded(digest.Algorithm(alg), hex))
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("%w: %s", ErrNotFound, ref)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("%w: %s matches %d images", ErrAmbiguous, ref, len(found))
}

// RemoveResult says what Remove did.
type RemoveResult struct {
	// Untagged are the references removed.
	Untagged []string
	// Deleted is the ID of the image record removed, "" if the image still
	// has references.
	Deleted digest.Digest
}

// RemoveOptions are Remove's options.
type RemoveOptions struct {
	// InUse names, by image ID, the containers that use an image (their
	// rootfs is made of its layers). The record of an image in use is
	// never deleted.
	InUse map[digest.Digest][]string
	// Force removes the references of an image in use anyway: the image
	// stays, dangling, until its containers are gone and Prune runs.
	// Without Force, a Remove that would delete the record of an image in
	// use fails with ErrInUse and changes nothing.
	Force bool
}

// Remove removes an image from the store, as `berth rmi` does. Given a
// reference, it removes that reference, and the image record when no other
// reference names the image. Given an ID (or unique ID prefix), it removes
// every reference to the image and its record. An image in use keeps its
// record (see RemoveOptions). Layers stay until Prune. Errors wrap
// ErrNotFound, ErrAmbiguous or ErrInUse.
func (s *Store) Remove(ref string, opts RemoveOptions) (RemoveResult, error) {
	unlock, err := s.flock(refsLock, unix.LOCK_EX)
	if err != nil {
		return RemoveResult{}, err
	}
	defer unlock()
	idx, err := s.readIndex()
	if err != nil {
		return RemoveResult{}, err
	}
	id, key, err := s.resolve(idx, ref)
	if err != nil {
		return RemoveResult{}, err
	}
	var res RemoveResult
	if key != "" {
		delete(idx.Refs, key)
		res.Untagged = []string{key}
	} else {
		for k, e := range idx.Refs {
			if e.ID == id {
				delete(idx.Refs, k)
				res.Untagged = append(res.Untagged, k)
			}
		}
		slices.Sort(res.Untagged)
	}
	if id != "" && len(refsByID(idx)[id]) == 0 {
		if users := opts.InUse[id]; len(users) > 0 {
			if !opts.Force {
				return RemoveResult{}, fmt.Errorf("%w: image %s is used by container %s", ErrInUse, id, strings.Join(users, ", "))
			}
		} else {
			res.Deleted = id
		}
	}
	if len(res.Untagged) > 0 {
		if err := s.writeIndex(idx); err != nil {
			return RemoveResult{}, err
		}
	}
	if res.Deleted != "" {
		if err := os.Remove(s.recordPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return RemoveResult{}, fmt.Errorf("image: removing %s: %w", id, err)
		}
	}
	return res, nil
}

// PruneResult says what Prune removed.
type PruneResult struct {
	// Images are the IDs of the dangling image records removed.
	Images []digest.Digest
	// Layers are the diff_ids of the layers removed, and Bytes the sum of
	// their uncompressed sizes.
	Layers []digest.Digest
	Bytes  int64
	// Blobs are the digests of the stored blobs removed (manifests,
	// configs and compressed layers no remaining image names), and
	// BlobBytes their sizes' sum.
	Blobs     []digest.Digest
	BlobBytes int64
}

// Prune removes the images no reference names (dangling images) except
// those inUse lists (the images of existing containers, whatever their
// references), then the layers of the layer store no remaining image uses.
// It waits for running pulls to finish and holds new ones until it is done.
func (s *Store) Prune(ctx context.Context, inUse ...digest.Digest) (PruneResult, error) {
	unlockAll, err := s.flock(lockFile, unix.LOCK_EX)
	if err != nil {
		return PruneResult{}, err
	}
	defer unlockAll()
	var res PruneResult
	keep := map[digest.Digest]bool{}
	for _, id := range inUse {
		keep[id] = true
	}
	used := map[digest.Digest]bool{}  // layers
	blobs := map[digest.Digest]bool{} // manifests, configs and layer blobs
	err = func() error {
		unlock, err := s.flock(refsLock, unix.LOCK_EX)
		if err != nil {
			return err
		}
		defer unlock()
		imgs, err := s.List()
		if err != nil {
			return err
		}
		for _, img := range imgs {
			if len(img.References) > 0 || keep[img.ID] {
				blobs[img.ID], blobs[img.ManifestDigest] = true, true
				for _, l := range img.Layers {
					used[l.DiffID], blobs[l.Digest] = true, true
				}
				continue
			}
			if err := os.Remove(s.recordPath(img.ID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("image: removing %s: %w", img.ID, err)
			}
			res.Images = append(res.Images, img.ID)
		}
		idx, err := s.readIndex()
		if err != nil {
			return err
		}
		for _, e := range idx.Refs {
			blobs[e.Manifest] = true // the manifest a reference was pulled by (an older one)
			if e.Index != "" {
				for _, d := range s.index(e.Index).Blobs { // the index, and what is stored of its platforms
					blobs[d] = true
				}
			}
		}
		return nil
	}()
	if err != nil {
		return res, err
	}
	res.Blobs, res.BlobBytes, err = s.removeBlobs(blobs)
	if err != nil {
		return res, err
	}
	all, err := s.layers.List()
	if err != nil {
		return res, err
	}
	for _, l := range all {
		if used[l.DiffID] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if err := s.layers.Remove(l.DiffID); err != nil && !errors.Is(err, layers.ErrNotFound) {
			return res, err
		}
		res.Layers = append(res.Layers, l.DiffID)
		res.Bytes += l.Size
	}
	return res, nil
}

// storedLayers returns the image's layers from the layer store, base
// first; none for an image that has none (`FROM scratch` with metadata
// only, as docker build makes it).
func (s *Store) storedLayers(img Image) ([]layers.Layer, error) {
	out := make([]layers.Layer, len(img.Layers))
	for i, l := range img.Layers {
		sl, err := s.layers.Get(l.DiffID)
		if errors.Is(err, layers.ErrNotFound) {
			return nil, fmt.Errorf("%w: layer %d (%s) of image %s", ErrLayerMissing, i, l.DiffID, img.ID)
		}
		if err != nil {
			return nil, err
		}
		out[i] = sl
	}
	return out, nil
}

// Rootfs assembles the image's root filesystem at target (an existing
// directory): an overlayfs mount of its layers with upper and work as the
// container's writable layer and overlayfs's work directory (one
// filesystem, both empty directories) when overlayfs works over the layer
// store, else a copy of the layers onto target (see Flatten; upper and
// work are then unused). mounted says which: the caller unmounts target
// (unix.Unmount) when it is true. Errors wrap ErrLayerMissing or the layer
// store's errors (layers.ErrIDMapUnsupported when opts.UserNS cannot be
// honoured).
func (s *Store) Rootfs(ctx context.Context, img Image, upper, work, target string, opts RootfsOptions) (mounted bool, err error) {
	unlock, err := s.flock(lockFile, unix.LOCK_SH)
	if err != nil {
		return false, err
	}
	defer unlock()
	ls, err := s.storedLayers(img)
	if err != nil {
		return false, err
	}
	if s.layers.OverlaySupported() == nil {
		mo := layers.MountOptions{Volatile: opts.Once, UserNS: opts.UserNS}
		if err := s.layers.MountWith(ctx, ls, upper, work, target, mo); err != nil {
			return false, err
		}
		return true, nil
	}
	return false, s.layers.Flatten(ctx, ls, target)
}

// RootfsOptions are Rootfs's options.
type RootfsOptions struct {
	// Once marks a rootfs used for one run and then deleted
	// (layers.Store.MountVolatile).
	Once bool
	// UserNS, when not nil, is a user namespace with the mappings of the
	// container's: the layers are mounted idmapped through it
	// (layers.MountOptions.UserNS), so that the container sees the image's
	// owners. The flat-copy fallback ignores it.
	UserNS *os.File
}

// Flatten copies the image's layers onto target, a plain directory (created
// if missing) with the image's files and nothing linked to the store: a
// rootfs any runtime can use, as `berth bundle` writes. Errors wrap
// ErrLayerMissing or the layer store's errors.
func (s *Store) Flatten(ctx context.Context, img Image, target string) error {
	unlock, err := s.flock(lockFile, unix.LOCK_SH)
	if err != nil {
		return err
	}
	defer unlock()
	ls, err := s.storedLayers(img)
	if err != nil {
		return err
	}
	return s.layers.Flatten(ctx, ls, target)
}

// recordPath is the record file of id; id is valid.
func (s *Store) recordPath(id digest.Digest) string {
	return filepath.Join(s.dir, imagesDir, id.Algorithm().String(), id.Encoded()+recordExt)
}

// readRecord reads and checks the record of id; the error wraps
// ErrNotFound when there is none.
func (s *Store) readRecord(id digest.Digest) (Image, error) {
	if err := id.Validate(); err != nil {
		return Image{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	b, err := os.ReadFile(s.recordPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		return Image{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return Image{}, fmt.Errorf("image: reading %s: %w", id, err)
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		return Image{}, fmt.Errorf("%w: %s: %v", ErrCorrupt, s.recordPath(id), err)
	}
	if rec.ID != id || id.Algorithm().FromBytes(rec.Config) != id {
		return Image{}, fmt.Errorf("%w: %s: the config does not match the image ID", ErrCorrupt, s.recordPath(id))
	}
	img := Image{
		ID:                id,
		ManifestDigest:    rec.ManifestDigest,
		ManifestMediaType: rec.ManifestMediaType,
		RawConfig:         rec.Config,
		Layers:            rec.Layers,
		Size:              rec.Size,
		Pulled:            rec.Pulled,
	}
	if err := json.Unmarshal(rec.Config, &img.Config); err != nil {
		return Image{}, fmt.Errorf("%w: %s: config: %v", ErrCorrupt, s.recordPath(id), err)
	}
	if rec.Platform != "" {
		if p, err := pull.ParsePlatform(rec.Platform); err == nil {
			img.Platform = p
		}
	}
	return img, nil
}

// writeRecord writes img's record; the caller holds refs.lock.
func (s *Store) writeRecord(img Image) error {
	rec := record{
		ID:                img.ID,
		ManifestDigest:    img.ManifestDigest,
		ManifestMediaType: img.ManifestMediaType,
		Platform:          img.Platform.String(),
		Config:            img.RawConfig,
		Layers:            img.Layers,
		Size:              img.Size,
		Pulled:            img.Pulled.UTC(),
	}
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	p := s.recordPath(img.ID)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("image: writing %s: %w", img.ID, err)
	}
	return writeFileAtomic(p, b)
}

// readIndex reads refs.json; a missing file is an empty index.
func (s *Store) readIndex() (*refIndex, error) {
	idx := &refIndex{Refs: map[string]refEntry{}}
	b, err := os.ReadFile(filepath.Join(s.dir, refsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return idx, nil
	}
	if err != nil {
		return nil, fmt.Errorf("image: reading the reference index: %w", err)
	}
	if err := json.Unmarshal(b, idx); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, filepath.Join(s.dir, refsFile), err)
	}
	if idx.Refs == nil {
		idx.Refs = map[string]refEntry{}
	}
	return idx, nil
}

// writeIndex replaces refs.json; the caller holds refs.lock.
func (s *Store) writeIndex(idx *refIndex) error {
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(s.dir, refsFile), b)
}

// refsByID groups the index's references by image ID, sorted.
func refsByID(idx *refIndex) map[digest.Digest][]string {
	out := map[digest.Digest][]string{}
	for ref, e := range idx.Refs {
		out[e.ID] = append(out[e.ID], ref)
	}
	for _, refs := range out {
		slices.Sort(refs)
	}
	return out
}

// flock takes a lock on the state directory's file name (LOCK_SH or
// LOCK_EX), waiting for it, and returns its release.
func (s *Store) flock(name string, how int) (func(), error) {
	p := filepath.Join(s.dir, name)
	fd, err := unix.Open(p, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	for {
		err = unix.Flock(fd, how)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "flock", Path: p, Err: err}
	}
	return func() { unix.Close(fd) }, nil
}

// writeFileAtomic writes b to path through a synced temporary file in the
// same directory and a rename.
func writeFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, tmpPattern)
	if err != nil {
		return fmt.Errorf("image: writing %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename, a no-op
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("image: writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("image: writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("image: writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("image: writing %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

package archive

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/runner/image"
	"github.com/berth-registry/berth/runner/layers"
	"github.com/berth-registry/berth/runner/pull"
)

// savedImage is one image of a Save with the tags it is saved under.
type savedImage struct {
	img image.Image
	// index is the multi-platform index the tags name, when the store
	// holds the whole of it: index.json names it rather than img's
	// manifest. img is zero when the index has no image for this host.
	index image.Index
	tags  []pull.Reference
}

// blobRef is a blob to write and its size.
type blobRef struct {
	digest digest.Digest
	size   int64
}

// Save writes the images names name (references or IDs, as image.Store
// Get takes them) to w as one tar that is both an OCI image layout and a
// docker-archive (doc.go). A reference saves the image under that tag; an
// ID saves it untagged. The blobs are streamed from the store, checked
// against their digests on the way. Every blob is looked for before
// anything is written: an image pulled by a berth that kept no blobs fails
// with image.ErrBlobMissing and w untouched. Other errors are the store's.
func Save(ctx context.Context, s *image.Store, w io.Writer, names []string) error {
	if len(names) == 0 {
		return errors.New("archive: no image to save")
	}
	release, err := s.Hold()
	if err != nil {
		return err
	}
	defer release()
	var imgs []*savedImage
	for _, name := range names {
		var index image.Index
		if ix, ok, err := s.Index(name); err != nil {
			return err
		} else if ok && ix.Complete {
			index = ix
		}
		img, err := s.Get(name)
		if err != nil && (index.Digest == "" || !errors.Is(err, image.ErrNotFound)) {
			return err
		}
		var si *savedImage
		for _, x := range imgs {
			if x.img.ID == img.ID && x.index.Digest == index.Digest {
				si = x
			}
		}
		if si == nil {
			si = &savedImage{img: img, index: index}
			imgs = append(imgs, si)
		}
		r, err := pull.ParseReference(name, s.DefaultRegistry)
		if err == nil && r.Digest == "" && (index.Digest != "" || slices.Contains(img.References, r.String())) &&
			!slices.ContainsFunc(si.tags, func(t pull.Reference) bool { return t.String() == r.String() }) {
			si.tags = append(si.tags, r)
		}
	}

	var blobs []blobRef
	seen := map[digest.Digest]int64{}
	need := func(img image.Image, d digest.Digest) error {
		if _, ok := seen[d]; ok {
			return nil
		}
		f, size, err := s.OpenBlob(d)
		if err != nil {
			return fmt.Errorf("image %s: %w (pull it again: it was pulled by a berth that kept only its unpacked layers)", image.ShortID(img.ID), err)
		}
		f.Close()
		seen[d] = size
		blobs = append(blobs, blobRef{d, size})
		return nil
	}
	for _, si := range imgs {
		for _, d := range si.index.Blobs {
			if err := need(si.img, d); err != nil {
				return err
			}
		}
		if si.img.ID == "" {
			continue
		}
		if err := need(si.img, si.img.ManifestDigest); err != nil {
			return err
		}
		if err := need(si.img, si.img.ID); err != nil {
			return err
		}
		for _, l := range si.img.Layers {
			if err := need(si.img, l.Digest); err != nil {
				return err
			}
		}
	}

	tw := tar.NewWriter(w)
	epoch := time.Unix(0, 0)
	dirs := []string{"blobs/"}
	for _, b := range blobs {
		if d := "blobs/" + b.digest.Algorithm().String() + "/"; !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	for _, d := range dirs {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: epoch}); err != nil {
			return err
		}
	}
	for _, b := range blobs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := writeBlob(s, tw, b, epoch); err != nil {
			return err
		}
	}
	files := metadata(imgs, seen)
	for _, name := range []string{indexFile, manifestFile, ociLayoutFile, repositoriesFile} {
		body, ok := files[name]
		if !ok {
			continue
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body)), ModTime: epoch}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(body); err != nil {
			return err
		}
	}
	return tw.Close()
}

// blobPath is where a blob is in the archive.
func blobPath(d digest.Digest) string {
	return path.Join("blobs", d.Algorithm().String(), d.Encoded())
}

// writeBlob streams one stored blob into the tar.
func writeBlob(s *image.Store, tw *tar.Writer, b blobRef, mtime time.Time) error {
	f, _, err := s.OpenBlob(b.digest)
	if err != nil {
		return err
	}
	defer f.Close()
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: blobPath(b.digest), Mode: 0o644, Size: b.size, ModTime: mtime}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if _, err := io.Copy(tw, layers.VerifyReader(f, b.digest, b.size)); err != nil {
		return fmt.Errorf("archive: blob %s of the store: %w", b.digest, err)
	}
	return nil
}

// metadata returns the contents of index.json, manifest.json, oci-layout
// and, when an image is tagged, repositories (doc.go); sizes are the blobs'
// sizes.
func metadata(imgs []*savedImage, sizes map[digest.Digest]int64) map[string][]byte {
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{}}
	items := []dockerItem{}
	repos := map[string]map[string]string{}
	for _, si := range imgs {
		img := si.img
		desc := ocispec.Descriptor{
			MediaType: img.ManifestMediaType,
			Digest:    img.ManifestDigest,
			Size:      sizes[img.ManifestDigest],
			Platform:  &ocispec.Platform{OS: img.Platform.OS, Architecture: img.Platform.Architecture, Variant: img.Platform.Variant},
		}
		if ix := si.index; ix.Digest != "" {
			desc = ocispec.Descriptor{MediaType: ix.MediaType, Digest: ix.Digest, Size: ix.Size}
		}
		item := dockerItem{Config: blobPath(img.ID)}
		for _, l := range img.Layers {
			item.Layers = append(item.Layers, blobPath(l.Digest))
		}
		if len(si.tags) == 0 {
			idx.Manifests = append(idx.Manifests, desc)
		}
		for _, t := range si.tags {
			d := desc
			d.Annotations = map[string]string{annotationImageName: t.String(), ocispec.AnnotationRefName: t.Tag}
			idx.Manifests = append(idx.Manifests, d)
			if img.ID == "" {
				continue // an index with no image for this host: nothing for docker-archive
			}
			item.RepoTags = append(item.RepoTags, t.String())
			if repos[t.Name()] == nil {
				repos[t.Name()] = map[string]string{}
			}
			if n := len(img.Layers); n > 0 {
				repos[t.Name()][t.Tag] = img.Layers[n-1].Digest.Encoded()
			}
		}
		if img.ID != "" {
			items = append(items, item)
		}
	}
	files := map[string][]byte{ociLayoutFile: []byte(`{"imageLayoutVersion":"` + ocispec.ImageLayoutVersion + `"}`)}
	files[indexFile], _ = json.Marshal(idx)
	files[manifestFile], _ = json.Marshal(items)
	if len(repos) > 0 {
		files[repositoriesFile], _ = json.Marshal(repos)
	}
	return files
}

package view

import (
	"slices"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/runner/image"
	"github.com/berth-registry/berth/runner/pull"
)

// Image is the document `berth image inspect` prints for an image, in the
// shape of docker's image inspect (with the containerd image store, which
// adds Descriptor).
type Image struct {
	// Id is the image ID, the digest of its config.
	Id string
	// RepoTags are the image's tagged references (host/name:tag).
	RepoTags []string
	// RepoDigests are host/name@digest for each repository the image has
	// a reference in, with the digest of the manifest that reference was
	// pulled or tagged by.
	RepoDigests   []string
	Parent        string
	Comment       string
	Created       string
	DockerVersion string
	Author        string
	Config        *Config
	Architecture  string
	Variant       string `json:",omitempty"`
	Os            string
	OsVersion     string `json:",omitempty"`
	// Size is the sum of the layers' uncompressed sizes.
	Size     int64
	RootFS   RootFS
	Metadata ImageMetadata
	// Descriptor is the image manifest's (absent when its blob is not
	// stored: an image pulled by an older berth).
	Descriptor *Descriptor `json:",omitempty"`
}

// RootFS is the image's layers, by diff_id.
type RootFS struct {
	Type   string
	Layers []string `json:",omitempty"`
}

// ImageMetadata is what docker keeps about an image beyond its config.
type ImageMetadata struct {
	// LastTagTime is when the image was last pulled, tagged or recorded.
	LastTagTime time.Time
}

// Descriptor is an OCI content descriptor.
type Descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

// NewImage returns the inspect document of img. manifests gives the
// manifest digest of each reference (image.Store.ReferenceManifests);
// manifestSize is the size of img's manifest blob, or -1 when it is not
// stored.
func NewImage(img image.Image, manifests map[string]digest.Digest, manifestSize int64) (Image, error) {
	raw, err := decodeImageConfig(img.RawConfig)
	if err != nil {
		return Image{}, err
	}
	cfg := raw.Config
	doc := Image{
		Id:            img.ID.String(),
		RepoTags:      []string{},
		RepoDigests:   []string{},
		Comment:       raw.Comment,
		DockerVersion: raw.DockerVersion,
		Author:        raw.Author,
		Config:        &cfg,
		Architecture:  img.Config.Architecture,
		Variant:       img.Config.Variant,
		Os:            img.Config.OS,
		OsVersion:     img.Config.OSVersion,
		Size:          img.Size,
		RootFS:        RootFS{Type: img.Config.RootFS.Type},
		Metadata:      ImageMetadata{LastTagTime: img.Pulled},
	}
	if img.Config.Created != nil {
		doc.Created = img.Config.Created.Format(time.RFC3339Nano)
	}
	for _, d := range img.Config.RootFS.DiffIDs {
		doc.RootFS.Layers = append(doc.RootFS.Layers, d.String())
	}
	for _, ref := range img.References {
		r, err := pull.ParseReference(ref, "")
		if err != nil {
			continue // not written by berth: nothing to show
		}
		if r.Tag != "" {
			doc.RepoTags = append(doc.RepoTags, r.Name()+":"+r.Tag)
		}
		d := r.Digest
		if d == "" {
			d = manifests[ref]
		}
		if d != "" {
			doc.RepoDigests = append(doc.RepoDigests, r.Name()+"@"+d.String())
		}
	}
	slices.Sort(doc.RepoTags)
	doc.RepoTags = slices.Compact(doc.RepoTags)
	slices.Sort(doc.RepoDigests)
	doc.RepoDigests = slices.Compact(doc.RepoDigests)
	if manifestSize >= 0 && img.ManifestDigest != "" {
		doc.Descriptor = &Descriptor{MediaType: img.ManifestMediaType, Digest: img.ManifestDigest.String(), Size: manifestSize}
	}
	return doc, nil
}

package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/manifest"
)

// ManifestFacts are what a listing shows of a manifest: they never change
// for a digest, except Referrers, which follow the referrers pushed and
// deleted.
type ManifestFacts struct {
	MediaType    string `json:"mediaType"`
	ArtifactType string `json:"artifactType,omitempty"`
	// Platforms are the platforms of an index's children, or the one of
	// an image's config, as os/arch[/variant].
	Platforms []string `json:"platforms,omitempty"`
	// Created is the config's created time (of an index: its newest
	// child's); zero when none says.
	Created time.Time `json:"created,omitzero"`
	// Blobs are the sizes of every blob the manifest needs, itself, its
	// config and layers and, for an index, its children's (a child that is
	// not stored counts as the size the index gives it).
	Blobs map[digest.Digest]int64 `json:"blobs"`
	// Referrers are the manifests whose subject this one is, with their
	// artifact types.
	Referrers map[digest.Digest]string `json:"referrers,omitempty"`
}

// Bytes is the total size of f's blobs.
func (f ManifestFacts) Bytes() (n int64) {
	for _, size := range f.Blobs {
		n += size
	}
	return n
}

// maxConfigSize bounds the image config read for a manifest's facts.
const maxConfigSize = 4 << 20

// maxFactsDepth bounds the nesting of indexes followed for facts.
const maxFactsDepth = 2

// ManifestFacts reads the facts of manifest d of repo, its referrers
// included. A manifest that is not in repo is ErrManifestUnknown.
func (s *Store) ManifestFacts(ctx context.Context, repo string, d digest.Digest) (ManifestFacts, error) {
	m, err := s.GetManifest(ctx, repo, d)
	if err != nil {
		return ManifestFacts{}, err
	}
	parsed, err := manifest.Parse("", m.Body)
	if err != nil {
		return ManifestFacts{}, fmt.Errorf("manifest %s in %s: %w", d, repo, err)
	}
	f, err := s.factsOf(ctx, repo, d, parsed, len(m.Body), 0)
	if err != nil {
		return ManifestFacts{}, err
	}
	if f.Referrers, err = s.referrerTypes(ctx, repo, d); err != nil {
		return ManifestFacts{}, err
	}
	return f, nil
}

// factsOf returns the facts of manifest d (parsed as m, size bytes long)
// of repo, without its referrers.
func (s *Store) factsOf(ctx context.Context, repo string, d digest.Digest, m *manifest.Manifest, size, depth int) (ManifestFacts, error) {
	f := ManifestFacts{MediaType: m.MediaType, ArtifactType: m.ArtifactType, Blobs: map[digest.Digest]int64{d: int64(size)}}
	if m.IsIndex() {
		for _, c := range m.Manifests {
			if p := manifest.PlatformString(c.Platform); p != "" && !slices.Contains(f.Platforms, p) {
				f.Platforms = append(f.Platforms, p)
			}
			f.Blobs[c.Digest] = c.Size
			if depth >= maxFactsDepth {
				continue
			}
			child, err := s.GetManifest(ctx, repo, c.Digest)
			if errors.Is(err, ErrManifestUnknown) {
				continue // a sparse index: the child is not here
			}
			if err != nil {
				return ManifestFacts{}, err
			}
			parsed, err := manifest.Parse("", child.Body)
			if err != nil {
				continue // stored before the checks of today: count it as the index says
			}
			cf, err := s.factsOf(ctx, repo, c.Digest, parsed, len(child.Body), depth+1)
			if err != nil {
				return ManifestFacts{}, err
			}
			for b, n := range cf.Blobs {
				f.Blobs[b] = n
			}
			if cf.Created.After(f.Created) {
				f.Created = cf.Created
			}
		}
		return f, nil
	}
	if m.Config != nil {
		f.Blobs[m.Config.Digest] = m.Config.Size
	}
	for _, l := range m.Layers {
		f.Blobs[l.Digest] = l.Size
	}
	cfg, err := s.ImageConfig(ctx, repo, m)
	if err != nil {
		return ManifestFacts{}, err
	}
	if cfg != nil {
		if cfg.Created != nil {
			f.Created = cfg.Created.UTC()
		}
		if p := manifest.PlatformString(&cfg.Platform); p != "" {
			f.Platforms = []string{p}
		}
	}
	return f, nil
}

// referrerTypes returns the referrers of d in repo with their artifact
// types (nil when there are none).
func (s *Store) referrerTypes(ctx context.Context, repo string, d digest.Digest) (map[digest.Digest]string, error) {
	descs, err := s.Referrers(ctx, repo, d, "")
	if err != nil || len(descs) == 0 {
		return nil, err
	}
	out := make(map[digest.Digest]string, len(descs))
	for _, desc := range descs {
		out[desc.Digest] = desc.ArtifactType
	}
	return out, nil
}

// ImageConfig reads the image config of image manifest m of repo: nil
// when m has none that is an image config (an artifact's), when it is not
// stored, is larger than 4 MiB or is not JSON.
func (s *Store) ImageConfig(ctx context.Context, repo string, m *manifest.Manifest) (*v1.Image, error) {
	c := m.Config
	if c == nil || (c.MediaType != v1.MediaTypeImageConfig && c.MediaType != manifest.MediaTypeDockerConfig) ||
		c.Size > maxConfigSize {
		return nil, nil
	}
	r, _, err := s.OpenBlob(ctx, repo, c.Digest, 0)
	if err != nil {
		if errors.Is(err, ErrBlobUnknown) {
			return nil, nil
		}
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, maxConfigSize))
	if err != nil {
		return nil, err
	}
	var img v1.Image
	if err := json.Unmarshal(b, &img); err != nil {
		return nil, nil // not an image config after all: nothing to show
	}
	return &img, nil
}

package registrycache

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/runner/build"
	"github.com/berth-registry/berth/runner/image"
	"github.com/berth-registry/berth/runner/layers"
	"github.com/berth-registry/berth/runner/pull"
	"github.com/berth-registry/berth/runner/push"
)

// Media types of a cache manifest (see the package doc).
const (
	ArtifactType    = "application/vnd.berth.build.cache.v1"
	ConfigMediaType = "application/vnd.berth.build.cache.config.v1+json"
)

// maxConfigSize bounds the config blob read back.
const maxConfigSize = 16 << 20

// ErrInvalid: a cache manifest or its config is not what Export writes
// (the message names the field).
var ErrInvalid = errors.New("registrycache: invalid cache")

// Config is a cache manifest's config blob.
type Config struct {
	Layers []ConfigLayer `json:"layers"`
	Steps  []Step        `json:"steps"`
}

// ConfigLayer is what the config says of a manifest layer.
type ConfigLayer struct {
	DiffID digest.Digest `json:"diffID"`
}

// Step is a cached step: its key, the index of its layer, when the layer
// was made and the step's history line.
type Step struct {
	Key     string    `json:"key"`
	Layer   int       `json:"layer"`
	Created time.Time `json:"created"`
	Step    string    `json:"step,omitempty"`
}

// Encode returns the cache manifest of recs and its config, both encoded.
func Encode(recs []build.CacheRecord) (manifestJSON, configJSON []byte, err error) {
	var cfg Config
	var descs []ocispec.Descriptor
	index := map[digest.Digest]int{}
	for _, r := range recs {
		i, ok := index[r.Layer.Digest]
		if !ok {
			i = len(descs)
			index[r.Layer.Digest] = i
			descs = append(descs, ocispec.Descriptor{MediaType: r.Layer.MediaType, Digest: r.Layer.Digest, Size: r.Layer.Size})
			cfg.Layers = append(cfg.Layers, ConfigLayer{DiffID: r.Layer.DiffID})
		}
		cfg.Steps = append(cfg.Steps, Step{Key: r.Key, Layer: i, Created: r.Created.UTC(), Step: r.Step})
	}
	if cfg.Layers == nil {
		cfg.Layers, cfg.Steps, descs = []ConfigLayer{}, []Step{}, []ocispec.Descriptor{}
	}
	if configJSON, err = json.Marshal(cfg); err != nil {
		return nil, nil, err
	}
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: ArtifactType,
		Config:       ocispec.Descriptor{MediaType: ConfigMediaType, Digest: digest.FromBytes(configJSON), Size: int64(len(configJSON))},
		Layers:       descs,
	}
	if manifestJSON, err = json.Marshal(m); err != nil {
		return nil, nil, err
	}
	return manifestJSON, configJSON, nil
}

// Export returns a build.CacheTarget that pushes the build's steps to
// ref as one cache manifest, with the blobs stored in the image store.
func Export(client *pull.Client, ref string, mode build.CacheMode, opts push.Options) build.CacheTarget {
	return build.CacheTarget{Mode: mode, Export: func(ctx context.Context, images *image.Store, recs []build.CacheRecord) error {
		mj, cj, err := Encode(recs)
		if err != nil {
			return err
		}
		if _, err := images.PutBlobBytes(cj, ""); err != nil {
			return err
		}
		md, err := images.PutBlobBytes(mj, "")
		if err != nil {
			return err
		}
		_, err = push.PushManifest(ctx, images, client, ref, md, ocispec.MediaTypeImageManifest, opts)
		return err
	}}
}

// Source is a cache manifest in a registry as a build.CacheSource: the
// manifest and config are fetched at the first lookup, a layer when a
// lookup finds its step.
type Source struct {
	client *pull.Client
	ref    pull.Reference

	once   sync.Once
	err    error
	layers []ocispec.Descriptor
	cfg    Config
	steps  map[string]Step
}

// NewSource returns the cache manifest ref names (completed with
// defaultRegistry as pull.ParseReference completes it) as a cache source.
func NewSource(client *pull.Client, ref, defaultRegistry string) (*Source, error) {
	r, err := pull.ParseReference(ref, defaultRegistry)
	if err != nil {
		return nil, err
	}
	return &Source{client: client, ref: r}, nil
}

// Lookup implements build.CacheSource. A cache that is missing from the
// registry finds nothing; one that cannot be read or is invalid fails
// every lookup with the same error (a build warns and goes on).
func (s *Source) Lookup(ctx context.Context, images *image.Store, key string) (build.CacheRecord, bool, error) {
	s.once.Do(func() { s.err = s.load(ctx) })
	if errors.Is(s.err, pull.ErrNotFound) {
		return build.CacheRecord{}, false, nil
	}
	if s.err != nil {
		return build.CacheRecord{}, false, s.err
	}
	st, ok := s.steps[key]
	if !ok {
		return build.CacheRecord{}, false, nil
	}
	desc, diffID := s.layers[st.Layer], s.cfg.Layers[st.Layer].DiffID
	rec := build.CacheRecord{Key: key, Created: st.Created, Step: st.Step,
		Layer: image.Layer{DiffID: diffID, Digest: desc.Digest, MediaType: desc.MediaType, Size: desc.Size}}
	if _, err := images.LayerStore().Get(diffID); err == nil && images.HasBlob(desc.Digest) {
		return rec, true, nil
	}
	rc, err := s.client.OpenBlob(ctx, s.ref, desc)
	if err != nil {
		return build.CacheRecord{}, false, fmt.Errorf("%s: layer %s: %w", s.ref, desc.Digest, err)
	}
	defer rc.Close()
	if _, err := images.StoreLayerBlob(ctx, desc, diffID, rc); err != nil {
		return build.CacheRecord{}, false, fmt.Errorf("%s: layer %s: %w", s.ref, desc.Digest, err)
	}
	return rec, true, nil
}

// load fetches the manifest and config and checks them whole.
func (s *Source) load(ctx context.Context) error {
	m, err := s.client.FetchManifest(ctx, s.ref, nil)
	if err != nil {
		return fmt.Errorf("cache %s: %w", s.ref, err)
	}
	p := m.Parsed
	if p.IsIndex() || p.Config == nil || p.Config.MediaType != ConfigMediaType {
		return fmt.Errorf("%w: %s is not a berth build cache (want a manifest whose config is %s)", ErrInvalid, s.ref, ConfigMediaType)
	}
	if p.Config.Size > maxConfigSize {
		return fmt.Errorf("%w: %s: config of %d bytes", ErrInvalid, s.ref, p.Config.Size)
	}
	rc, err := s.client.OpenBlob(ctx, s.ref, *p.Config)
	if err != nil {
		return fmt.Errorf("cache %s: config: %w", s.ref, err)
	}
	defer rc.Close()
	raw, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("cache %s: config: %w", s.ref, err)
	}
	cfg, err := Decode(raw, p.Layers)
	if err != nil {
		return fmt.Errorf("%s: %w", s.ref, err)
	}
	s.cfg, s.layers = cfg, p.Layers
	s.steps = map[string]Step{}
	for _, st := range cfg.Steps {
		s.steps[st.Key] = st
	}
	return nil
}

// Decode decodes and checks a cache config for a manifest of layers:
// one config layer per manifest layer with a valid diff_id, layers of a
// type the layer store unpacks, steps with 64-hex keys naming a layer.
func Decode(raw []byte, ls []ocispec.Descriptor) (Config, error) {
	var cfg Config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return Config{}, fmt.Errorf("%w: config: %v", ErrInvalid, err)
	}
	if len(cfg.Layers) != len(ls) {
		return Config{}, fmt.Errorf("%w: config lists %d layers, the manifest %d", ErrInvalid, len(cfg.Layers), len(ls))
	}
	for i, l := range cfg.Layers {
		if err := l.DiffID.Validate(); err != nil {
			return Config{}, fmt.Errorf("%w: layers[%d].diffID: %v", ErrInvalid, i, err)
		}
		if err := layers.CheckMediaType(ls[i].MediaType); err != nil {
			return Config{}, fmt.Errorf("%w: layer %d (%s): %v", ErrInvalid, i, ls[i].Digest, err)
		}
	}
	for i, st := range cfg.Steps {
		if b, err := hex.DecodeString(st.Key); err != nil || len(b) != 32 {
			return Config{}, fmt.Errorf("%w: steps[%d].key %q: want 64 hex digits", ErrInvalid, i, st.Key)
		}
		if st.Layer < 0 || st.Layer >= len(ls) {
			return Config{}, fmt.Errorf("%w: steps[%d].layer %d: the manifest has %d layers", ErrInvalid, i, st.Layer, len(ls))
		}
	}
	return cfg, nil
}

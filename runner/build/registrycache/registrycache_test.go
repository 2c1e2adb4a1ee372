package registrycache_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/manifest"
	"github.com/berth-registry/berth/runner/build"
	"github.com/berth-registry/berth/runner/build/registrycache"
	"github.com/berth-registry/berth/runner/image"
)

func layer(s string) image.Layer {
	return image.Layer{DiffID: digest.FromString("tar " + s), Digest: digest.FromString("gz " + s),
		MediaType: ocispec.MediaTypeImageLayerGzip, Size: int64(len(s))}
}

func key(s string) string { return digest.FromString(s).Encoded() }

// TestEncodeDecode: one manifest, each layer once, steps naming them;
// decoded back as written; a registry's parser takes the manifest.
func TestEncodeDecode(t *testing.T) {
	when := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	recs := []build.CacheRecord{
		{Key: key("a"), Layer: layer("a"), Created: when, Step: "RUN a"},
		{Key: key("b"), Layer: layer("b"), Created: when, Step: "COPY b"},
		{Key: key("c"), Layer: layer("a"), Created: when, Step: "RUN a again"},
	}
	mj, cj, err := registrycache.Encode(recs)
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Parse(ocispec.MediaTypeImageManifest, mj)
	if err != nil {
		t.Fatal(err)
	}
	if m.ArtifactType != registrycache.ArtifactType || m.Config.Digest != digest.FromBytes(cj) || len(m.Layers) != 2 {
		t.Fatalf("manifest: %s", mj)
	}
	cfg, err := registrycache.Decode(cj, m.Layers)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Steps) != 3 || cfg.Steps[2].Layer != 0 || cfg.Steps[1].Layer != 1 || cfg.Layers[1].DiffID != layer("b").DiffID ||
		!cfg.Steps[0].Created.Equal(when) || cfg.Steps[0].Key != key("a") {
		t.Errorf("decoded %+v", cfg)
	}
}

// TestDecodeRejects: a config that does not match its manifest, or names
// what does not exist, is refused with ErrInvalid naming the field.
func TestDecodeRejects(t *testing.T) {
	mj, cj, err := registrycache.Encode([]build.CacheRecord{{Key: key("a"), Layer: layer("a")}})
	if err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(mj, &m); err != nil {
		t.Fatal(err)
	}
	good := string(cj)
	for name, c := range map[string]struct {
		cfg    string
		layers []ocispec.Descriptor
		want   string
	}{
		"bad json":      {"{", m.Layers, "config"},
		"layer count":   {good, nil, "layers"},
		"bad diffid":    {strings.Replace(good, string(layer("a").DiffID), "sha256:xyz", 1), m.Layers, "layers[0].diffID"},
		"bad key":       {strings.Replace(good, key("a"), "../../x", 1), m.Layers, "steps[0].key"},
		"layer index":   {strings.Replace(good, `"layer":0`, `"layer":5`, 1), m.Layers, "steps[0].layer"},
		"foreign layer": {good, []ocispec.Descriptor{{MediaType: "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"}}, "layer 0"},
	} {
		_, err := registrycache.Decode([]byte(c.cfg), c.layers)
		if !errors.Is(err, registrycache.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrInvalid naming %q", name, err, c.want)
		}
	}
}

func TestParseSpec(t *testing.T) {
	for in, want := range map[string]struct {
		ref  string
		mode build.CacheMode
	}{
		"host:5000/cache:1":                                  {"host:5000/cache:1", build.CacheMin},
		"type=registry,ref=h/c:t":                            {"h/c:t", build.CacheMin},
		"type=registry,ref=h/c:t,mode=max":                   {"h/c:t", build.CacheMax},
		"type=registry,mode=min,ref=h/c:t,ignore-error=true": {"h/c:t", build.CacheMin},
	} {
		ref, mode, err := registrycache.ParseSpec(in)
		if err != nil || ref != want.ref || mode != want.mode {
			t.Errorf("ParseSpec(%q) = %q, %v, %v", in, ref, mode, err)
		}
	}
	for _, in := range []string{"", "type=local,src=x", "type=registry", "type=registry,ref=x,mode=all", "type=registry,ref=x,foo=1"} {
		if _, _, err := registrycache.ParseSpec(in); !errors.Is(err, registrycache.ErrInvalid) {
			t.Errorf("ParseSpec(%q): %v, want ErrInvalid", in, err)
		}
	}
}

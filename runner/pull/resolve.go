package pull

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/manifest"
)

const (
	// manifestAccept is the Accept header of manifest requests: the OCI and Docker schema 2
	// manifests and indexes, nothing else (Docker schema 1 is not pulled).
	manifestAccept = manifest.MediaTypeOCIManifest + ", " + manifest.MediaTypeOCIIndex + ", " +
		manifest.MediaTypeDockerManifest + ", " + manifest.MediaTypeDockerManifestList
	// maxIndexDepth is how many indexes may lead to the image manifest (an index of
	// indexes is 2).
	maxIndexDepth = 3
	// maxConfigSize bounds the image config read into memory.
	maxConfigSize = 32 << 20

	// mediaTypeDockerConfig is the config media type of Docker schema 2 images.
	mediaTypeDockerConfig = "application/vnd.docker.container.image.v1+json"
)

// fetchedManifest is a manifest as served, verified, and parsed.
type fetchedManifest struct {
	body   []byte
	digest digest.Digest
	parsed *manifest.Manifest
}

// fetchManifest GETs the manifest mref (a tag or digest) of ref's repository. When want
// is not nil the body must match its digest and size; when mref is a digest the body
// must match it; when mref is a tag and the registry sent Docker-Content-Digest, the body
// must match that. Mismatches wrap ErrDigestMismatch.
func (c *Client) fetchManifest(ctx context.Context, ref Reference, mref string, want *ocispec.Descriptor) (*fetchedManifest, error) {
	resp, err := c.registryGet(ctx, ref.Registry, ref.Repository+"/manifests/"+mref, repositoryScope(ref.Repository),
		http.Header{"Accept": {manifestAccept}})
	if err != nil {
		return nil, errContext(ctx, fmt.Errorf("manifest %s of %s: %w", mref, ref.Name(), err))
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("manifest %s of %s: %w", mref, ref.Name(), ErrorFromResponse(resp))
	}
	defer resp.Body.Close()
	body, err := manifest.Read(resp.Body)
	if err != nil {
		if errors.Is(err, manifest.ErrTooLarge) {
			return nil, fmt.Errorf("%w: manifest %s of %s: %w", ErrInvalidImage, mref, ref.Name(), err)
		}
		return nil, errContext(ctx, fmt.Errorf("manifest %s of %s: %w", mref, ref.Name(), err))
	}

	var expected digest.Digest
	switch {
	case want != nil:
		expected = want.Digest
		if int64(len(body)) != want.Size {
			return nil, fmt.Errorf("%w: manifest %s of %s is %d bytes, the index says %d",
				ErrDigestMismatch, mref, ref.Name(), len(body), want.Size)
		}
	case isDigest(mref):
		expected = digest.Digest(mref)
	default:
		if h := resp.Header.Get("Docker-Content-Digest"); h != "" {
			d, err := digest.Parse(h)
			if err != nil {
				return nil, fmt.Errorf("%w: manifest %s of %s: Docker-Content-Digest %q: %v", ErrBadResponse, mref, ref.Name(), clip(h, 100), err)
			}
			expected = d
		}
	}
	got := digest.Canonical.FromBytes(body)
	if expected != "" {
		if got = expected.Algorithm().FromBytes(body); got != expected {
			return nil, fmt.Errorf("%w: manifest %s of %s has digest %s, want %s", ErrDigestMismatch, mref, ref.Name(), got, expected)
		}
	}

	m, err := manifest.Parse(resp.Header.Get("Content-Type"), body)
	if err != nil {
		kind := ErrInvalidImage
		if errors.Is(err, manifest.ErrUnsupported) {
			kind = ErrUnsupported
		}
		return nil, fmt.Errorf("%w: manifest %s of %s: %w", kind, mref, ref.Name(), err)
	}
	if want != nil && want.MediaType != "" && want.MediaType != m.MediaType {
		return nil, fmt.Errorf("%w: manifest %s of %s is a %s, the index says %s", ErrInvalidImage, mref, ref.Name(), m.MediaType, want.MediaType)
	}
	return &fetchedManifest{body: body, digest: got, parsed: m}, nil
}

// isDigest reports whether a manifest reference is a digest rather than a tag (tags
// cannot contain ':').
func isDigest(mref string) bool { return strings.Contains(mref, ":") }

// Resolve fetches and verifies what a pull of ref needs before the layers: the manifest
// (through any index, choosing the entry for the platform) and the image config.
//
// platform nil means HostPlatform(). An index entry is chosen by its platform: same OS
// and architecture, and the requested variant or, for arm, arm64 and amd64, the newest
// older variant that still runs (arm/v6 for arm/v7); an index nested in an index is
// followed, up to maxIndexDepth levels. When nothing matches, the error wraps
// ErrNoMatchingPlatform and lists the platforms the index offers. When ref names a
// single manifest, its config's platform must match platform only if one was given.
//
// The config must be an image config whose rootfs lists one diff_id per layer, and every
// layer must be of a media type Pull knows (OCI or Docker, uncompressed, gzip or zstd).
func (c *Client) Resolve(ctx context.Context, ref Reference, platform *Platform) (*Image, error) {
	want, strict := HostPlatform(), false
	if platform != nil {
		want, strict = platform.Normalize(), true
	}
	m, err := c.fetchManifest(ctx, ref, ref.manifestRef(), nil)
	if err != nil {
		return nil, err
	}
	img := &Image{Reference: ref}
	checkConfig := strict
	for depth := 0; m.parsed.IsIndex(); depth++ {
		if depth == maxIndexDepth {
			return nil, fmt.Errorf("%w: %s: indexes nested more than %d deep", ErrInvalidImage, ref, maxIndexDepth)
		}
		if img.Index == "" {
			img.Index, img.IndexManifest, img.IndexMediaType = m.digest, m.body, m.parsed.MediaType
		}
		d, withPlatform, err := selectManifest(m.parsed.Manifests, want)
		if err != nil {
			return nil, fmt.Errorf("%s (index %s): %w", ref, m.digest, err)
		}
		checkConfig = !withPlatform
		if m, err = c.fetchManifest(ctx, ref, d.Digest.String(), &d); err != nil {
			return nil, err
		}
	}
	img.Digest, img.MediaType, img.Manifest = m.digest, m.parsed.MediaType, m.body

	if m.parsed.Config == nil {
		return nil, fmt.Errorf("%w: %s: manifest %s has no config", ErrInvalidImage, ref, m.digest)
	}
	cfg := *m.parsed.Config
	switch cfg.MediaType {
	case ocispec.MediaTypeImageConfig, mediaTypeDockerConfig:
	default:
		return nil, fmt.Errorf("%w: %s is not a container image: its config is a %q", ErrUnsupported, ref, cfg.MediaType)
	}
	if cfg.Size > maxConfigSize {
		return nil, fmt.Errorf("%w: %s: the config is %d bytes, at most %d are accepted", ErrInvalidImage, ref, cfg.Size, maxConfigSize)
	}
	raw, err := c.readBlob(ctx, ref, cfg)
	if err != nil {
		return nil, fmt.Errorf("config of %s: %w", ref, err)
	}
	img.ConfigDescriptor, img.RawConfig = cfg, raw
	if err := json.Unmarshal(raw, &img.Config); err != nil {
		return nil, fmt.Errorf("%w: config %s of %s: %v", ErrInvalidImage, cfg.Digest, ref, err)
	}
	img.Platform = Platform{OS: img.Config.OS, Architecture: img.Config.Architecture, Variant: img.Config.Variant}.Normalize()
	if checkConfig {
		if _, ok := matchRank(want, img.Platform); !ok {
			return nil, fmt.Errorf("%w: %s is an image for %s, not %s", ErrNoMatchingPlatform, ref, img.Platform, want)
		}
	}

	rootfs := img.Config.RootFS
	if rootfs.Type != "layers" {
		return nil, fmt.Errorf("%w: config %s of %s: rootfs.type is %q, want \"layers\"", ErrInvalidImage, cfg.Digest, ref, rootfs.Type)
	}
	if len(rootfs.DiffIDs) != len(m.parsed.Layers) {
		return nil, fmt.Errorf("%w: %s: the config lists %d diff_ids for the manifest's %d layers",
			ErrInvalidImage, ref, len(rootfs.DiffIDs), len(m.parsed.Layers))
	}
	var chain digest.Digest
	for i, d := range m.parsed.Layers {
		comp, err := layerCompression(d.MediaType)
		if err != nil {
			return nil, fmt.Errorf("%s: layer %d (%s): %w", ref, i, d.Digest, err)
		}
		diffID := rootfs.DiffIDs[i]
		if err := diffID.Validate(); err != nil {
			return nil, fmt.Errorf("%w: config %s of %s: diff_ids[%d] %q: %v", ErrInvalidImage, cfg.Digest, ref, i, diffID, err)
		}
		if chain == "" {
			chain = diffID
		} else {
			chain = digest.Canonical.FromString(chain.String() + " " + diffID.String())
		}
		img.Layers = append(img.Layers, Layer{Index: i, Descriptor: d, DiffID: diffID, ChainID: chain, Compression: comp})
	}
	return img, nil
}

// readBlob reads a small blob (the config) whole, verified, with the same retries as
// layers.
func (c *Client) readBlob(ctx context.Context, ref Reference, d ocispec.Descriptor) ([]byte, error) {
	r, err := c.newBlobReader(ctx, d, c.registrySource(ref, d.Digest))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// selectManifest chooses the entry of an index for want: the image manifest whose
// platform matches best (see matchRank), else an index entry to descend into (one with
// a matching platform or with none), else, as a last resort, the only image manifest
// without a platform, whose config must then be checked (withPlatform false).
func selectManifest(entries []ocispec.Descriptor, want Platform) (d ocispec.Descriptor, withPlatform bool, err error) {
	const (
		rankIndexNoPlatform = 1 << 20
		rankNoPlatform      = 1 << 21
	)
	best, bestRank := -1, 0
	noPlatform := 0
	for i, e := range entries {
		isIndex := e.MediaType == manifest.MediaTypeOCIIndex || e.MediaType == manifest.MediaTypeDockerManifestList
		isImage := e.MediaType == manifest.MediaTypeOCIManifest || e.MediaType == manifest.MediaTypeDockerManifest
		if !isIndex && !isImage {
			continue
		}
		rank := 0
		if p, ok := descriptorPlatform(e); ok {
			r, match := matchRank(want, p)
			if !match {
				continue
			}
			rank = r
		} else if isIndex {
			rank = rankIndexNoPlatform
		} else {
			noPlatform++
			rank = rankNoPlatform
		}
		if best < 0 || rank < bestRank {
			best, bestRank = i, rank
		}
	}
	if best < 0 || (bestRank == rankNoPlatform && noPlatform > 1) {
		return ocispec.Descriptor{}, false, fmt.Errorf("%w: no manifest for %s; the index offers %s",
			ErrNoMatchingPlatform, want, availablePlatforms(entries))
	}
	return entries[best], bestRank < rankIndexNoPlatform, nil
}

// availablePlatforms lists the platforms of an index's entries for an error message.
func availablePlatforms(entries []ocispec.Descriptor) string {
	seen := map[string]bool{}
	var list []string
	for _, e := range entries {
		p, ok := descriptorPlatform(e)
		if !ok || p.OS == "unknown" { // attestations and other non-images
			continue
		}
		if s := p.String(); !seen[s] {
			seen[s] = true
			list = append(list, s)
		}
	}
	if len(list) == 0 {
		return "no platforms"
	}
	sort.Strings(list)
	return strings.Join(list, ", ")
}

// Compression is how a layer's tar stream is compressed.
type Compression int

// The layer compressions Pull accepts.
const (
	Uncompressed Compression = iota
	Gzip
	Zstd
)

// String returns "none", "gzip" or "zstd".
func (c Compression) String() string {
	switch c {
	case Uncompressed:
		return "none"
	case Gzip:
		return "gzip"
	case Zstd:
		return "zstd"
	}
	return fmt.Sprintf("Compression(%d)", int(c))
}

// layerCompression returns the compression of a layer media type, or an error wrapping
// ErrUnsupported for media types that are not tar layers.
func layerCompression(mediaType string) (Compression, error) {
	switch mediaType {
	case ocispec.MediaTypeImageLayer,
		"application/vnd.oci.image.layer.nondistributable.v1.tar",
		"application/vnd.docker.image.rootfs.diff.tar":
		return Uncompressed, nil
	case ocispec.MediaTypeImageLayerGzip,
		"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
		"application/vnd.docker.image.rootfs.diff.tar.gzip",
		"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip":
		return Gzip, nil
	case ocispec.MediaTypeImageLayerZstd,
		"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd":
		return Zstd, nil
	}
	return 0, fmt.Errorf("%w: layer media type %q", ErrUnsupported, mediaType)
}

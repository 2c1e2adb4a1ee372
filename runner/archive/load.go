package archive

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/manifest"
	"github.com/berth-registry/berth/runner/image"
	"github.com/berth-registry/berth/runner/layers"
	"github.com/berth-registry/berth/runner/pull"
)

// Names in an archive (doc.go).
const (
	ociLayoutFile    = "oci-layout"
	indexFile        = "index.json"
	manifestFile     = "manifest.json"
	repositoriesFile = "repositories"
	// annotationImageName is the containerd annotation docker writes with
	// the full reference of a saved image.
	annotationImageName = "io.containerd.image.name"
	// maxJSON bounds the JSON files and configs read into memory.
	maxJSON = 32 << 20
	// maxIndexDepth is how many indexes may lead to an image manifest.
	maxIndexDepth = 3
)

// LoadOptions are Load's options.
type LoadOptions struct {
	// Platform chooses the image of a multi-platform index; nil means the
	// host's (pull.HostPlatform). When it is given, an image whose config
	// is for another platform is refused too.
	Platform *pull.Platform
	// Limits bound each layer's unpacked size; zero fields take the layer
	// store's defaults.
	Limits layers.Limits
}

// Loaded is one image Load added to the store.
type Loaded struct {
	// Image is the image as recorded (its References include the names
	// below, and any it had before).
	Image image.Image
	// Names are the references the archive gave it, as stored
	// (host/name:tag); none for an image loaded by ID.
	Names []string
	// Unnamed are names the archive gave it that could not become
	// references (a name without a registry host when the store has no
	// DefaultRegistry, or a malformed one): the image is loaded without
	// them.
	Unnamed []string
	// Index is the multi-platform index the names name, when the archive
	// held the whole of it (every platform's blobs): push and save give it
	// out whole. Image is zero when the index has no image for the
	// platform.
	Index digest.Digest
}

// dockerItem is an item of manifest.json.
type dockerItem struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// pending is an image whose blobs and layers are stored, to be recorded.
type pending struct {
	manifest digest.Digest
	config   digest.Digest
	// index is the multi-platform index the image was loaded through when
	// every blob of it was stored (the index is kept whole); manifest and
	// config are "" when it has no image for the platform.
	index digest.Digest
	names []string
}

// loader is one Load.
type loader struct {
	ctx  context.Context
	s    *image.Store
	c    *contents
	opts LoadOptions
	want pull.Platform
	imgs []*pending
}

// Load reads an image archive (see doc.go for the formats) from r into the
// store s, and returns the images it added, in the archive's order. Every
// blob is checked against its digest and every layer against its diff_id
// before any image is recorded: on error nothing is recorded or tagged
// (blobs and layers stored meanwhile are left for Prune). Errors wrap
// ErrInvalid, ErrUnsafeEntry, ErrDigestMismatch, ErrUnsupported, or the
// image and layer stores' errors, with the entry named.
func Load(ctx context.Context, s *image.Store, r io.Reader, opts LoadOptions) ([]Loaded, error) {
	release, err := s.Hold()
	if err != nil {
		return nil, err
	}
	defer release()
	spool, err := os.MkdirTemp(s.Dir(), ".load-*")
	if err != nil {
		return nil, fmt.Errorf("archive: creating the spool directory: %w", err)
	}
	defer os.RemoveAll(spool)
	c, err := readArchive(ctx, s, r, spool)
	if err != nil {
		return nil, err
	}
	l := &loader{ctx: ctx, s: s, c: c, opts: opts, want: pull.HostPlatform()}
	if opts.Platform != nil {
		l.want = opts.Platform.Normalize()
	}
	_, errIndex := c.lookup(indexFile, indexFile)
	_, errManifest := c.lookup(manifestFile, manifestFile)
	if errIndex != nil && errManifest != nil {
		return nil, fmt.Errorf("%w: neither %s (docker-archive) nor %s (OCI image layout) is in the archive", ErrInvalid, manifestFile, indexFile)
	}
	if errIndex == nil {
		if err := l.loadIndex(); err != nil {
			return nil, err
		}
	}
	if errManifest == nil {
		if err := l.loadDockerManifest(); err != nil {
			return nil, err
		}
	}
	if len(l.imgs) == 0 {
		return nil, fmt.Errorf("%w: the archive holds no image", ErrInvalid)
	}
	return l.record()
}

// record names and records the pending images.
func (l *loader) record() ([]Loaded, error) {
	var out []Loaded
	for _, p := range l.imgs {
		var ld Loaded
		for _, n := range p.names {
			r, err := pull.ParseReference(n, l.s.DefaultRegistry)
			// A bare word ("latest", an OCI ref.name) is a tag of no
			// repository, not an image name.
			if err != nil || r.Digest != "" || !strings.ContainsAny(n, "/:") {
				ld.Unnamed = append(ld.Unnamed, n)
				continue
			}
			if !slices.Contains(ld.Names, r.String()) {
				ld.Names = append(ld.Names, r.String())
			}
		}
		img := image.Image{ManifestDigest: p.manifest, ID: p.config}
		var err error
		if p.index != "" {
			img, err = l.s.RecordIndex(p.index, img, ld.Names...)
		} else {
			img, err = l.s.Record(img, ld.Names...)
		}
		if err != nil {
			return out, fmt.Errorf("archive: recording image %s: %w", p.manifest, err)
		}
		ld.Image, ld.Index = img, p.index
		out = append(out, ld)
	}
	return out, nil
}

// add queues an image, merging names into one already queued.
func (l *loader) add(p *pending) {
	for _, q := range l.imgs {
		if q.manifest == p.manifest && q.index == p.index {
			for _, n := range p.names {
				if !slices.Contains(q.names, n) {
					q.names = append(q.names, n)
				}
			}
			return
		}
	}
	l.imgs = append(l.imgs, p)
}

// readJSON decodes the small JSON file name of the archive into v.
func (l *loader) readJSON(name string, v any) error {
	e, err := l.c.lookup(name, name)
	if err != nil {
		return err
	}
	b, err := l.c.readSmall(e, maxJSON)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: entry %q: %v", ErrInvalid, name, err)
	}
	return nil
}

// loadIndex loads the images index.json names.
func (l *loader) loadIndex() error {
	var idx ocispec.Index
	if err := l.readJSON(indexFile, &idx); err != nil {
		return err
	}
	if idx.SchemaVersion != 2 {
		return fmt.Errorf("%w: %s: schemaVersion %d, want 2", ErrInvalid, indexFile, idx.SchemaVersion)
	}
	for i, d := range idx.Manifests {
		var names []string
		if n := d.Annotations[annotationImageName]; n != "" {
			names = append(names, n)
		} else if n := d.Annotations[ocispec.AnnotationRefName]; n != "" {
			// skopeo's oci-archive:FILE:NAME; a bare tag ("latest") names
			// no repository and is dropped when it does not parse.
			names = append(names, n)
		}
		p, err := l.loadDescriptor(d, fmt.Sprintf("%s manifests[%d]", indexFile, i), names, 0)
		if err != nil {
			return err
		}
		l.add(p)
	}
	return nil
}

// loadDescriptor loads the image manifest d describes or, for an index,
// the image in it for the platform; an index the archive
// holds whole is kept whole (pending.index), even when it has no image for
// the host's platform (but not for a platform LoadOptions names). It
// returns the image to queue.
func (l *loader) loadDescriptor(d ocispec.Descriptor, what string, names []string, depth int) (*pending, error) {
	m, err := l.manifest(d, what)
	if err != nil {
		return nil, err
	}
	if m.IsIndex() {
		if depth >= maxIndexDepth {
			return nil, fmt.Errorf("%w: %s: indexes nested more than %d deep", ErrInvalid, what, maxIndexDepth)
		}
		whole := false
		if depth == 0 {
			if whole, err = l.wholeIndex(m, what, depth); err != nil {
				return nil, err
			}
		}
		child, err := l.selectManifest(m.Manifests, what)
		if err != nil && whole && l.opts.Platform == nil {
			return &pending{index: d.Digest, names: names}, nil // no image for this platform
		}
		if err != nil {
			return nil, err
		}
		p, err := l.loadDescriptor(child, fmt.Sprintf("%s (index %s)", what, d.Digest), names, depth+1)
		if err == nil && whole {
			p.index = d.Digest
		}
		return p, err
	}
	if m.Config == nil {
		return nil, fmt.Errorf("%w: %s: manifest %s has no config", ErrInvalid, what, d.Digest)
	}
	cfgBytes, err := l.blob(*m.Config, what+" config", maxJSON)
	if err != nil {
		return nil, err
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(cfgBytes, &cfg); err != nil {
		return nil, fmt.Errorf("%w: %s: config %s: %v", ErrInvalid, what, m.Config.Digest, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("%w: %s: config %s lists %d diff_ids for the manifest's %d layers",
			ErrInvalid, what, m.Config.Digest, len(cfg.RootFS.DiffIDs), len(m.Layers))
	}
	if l.opts.Platform != nil {
		p := pull.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}.Normalize()
		if _, ok := pull.MatchPlatform(l.want, p); !ok {
			return nil, fmt.Errorf("%w: %s: the image is for %s, not %s", ErrInvalid, what, p, l.want)
		}
	}
	for i, ld := range m.Layers {
		lw := fmt.Sprintf("%s layer %d (%s)", what, i, ld.Digest)
		if err := layers.CheckMediaType(ld.MediaType); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrUnsupported, lw, err)
		}
		if _, err := l.blob(ld, lw, -1); err != nil {
			return nil, err
		}
		if err := l.unpack(ld.Digest, ld.MediaType, cfg.RootFS.DiffIDs[i], lw); err != nil {
			return nil, err
		}
	}
	return &pending{manifest: d.Digest, config: m.Config.Digest, names: names}, nil
}

// manifest stores and parses the manifest or index d describes.
func (l *loader) manifest(d ocispec.Descriptor, what string) (*manifest.Manifest, error) {
	switch d.MediaType {
	case manifest.MediaTypeOCIManifest, manifest.MediaTypeDockerManifest, manifest.MediaTypeOCIIndex, manifest.MediaTypeDockerManifestList:
	default:
		return nil, fmt.Errorf("%w: %s: media type %q (want an OCI or Docker schema 2 manifest or index)", ErrUnsupported, what, d.MediaType)
	}
	body, err := l.blob(d, what, manifest.MaxSize)
	if err != nil {
		return nil, err
	}
	m, err := manifest.Parse(d.MediaType, body)
	if err != nil {
		return nil, fmt.Errorf("%w: %s (%s): %v", ErrInvalid, what, d.Digest, err)
	}
	return m, nil
}

// wholeIndex reports whether the archive (or the store) holds every blob
// index m reaches, every platform's manifest, config and layers, and
// stores them, verified; the other platforms' layers are not unpacked. An
// archive that holds some platforms only (as docker saves an image it
// pulled for one) is not whole: only the image for the platform is then
// loaded.
func (l *loader) wholeIndex(m *manifest.Manifest, what string, depth int) (bool, error) {
	for i, c := range m.Manifests {
		cw := fmt.Sprintf("%s (entry %d, %s)", what, i, c.Digest)
		if ok, err := l.has(c, cw); !ok || err != nil {
			return false, err
		}
		cm, err := l.manifest(c, cw)
		if err != nil {
			return false, err
		}
		if cm.IsIndex() {
			if depth+1 >= maxIndexDepth {
				return false, fmt.Errorf("%w: %s: indexes nested more than %d deep", ErrInvalid, cw, maxIndexDepth)
			}
			if ok, err := l.wholeIndex(cm, cw, depth+1); !ok || err != nil {
				return false, err
			}
			continue
		}
		for _, b := range cm.BlobReferences() {
			bw := fmt.Sprintf("%s blob %s", cw, b.Digest)
			if ok, err := l.has(b, bw); !ok || err != nil {
				return false, err
			}
			if _, err := l.blob(b, bw, -1); err != nil {
				return false, err
			}
		}
	}
	return true, nil
}

// has reports whether the archive or the store holds the blob d
// describes; a path of the archive that is unsafe to follow is an error.
func (l *loader) has(d ocispec.Descriptor, what string) (bool, error) {
	if err := d.Digest.Validate(); err != nil {
		return false, fmt.Errorf("%w: %s: digest %q: %v", ErrInvalid, what, d.Digest, err)
	}
	_, err := l.c.lookup(blobPath(d.Digest), what)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrUnsafeEntry):
		return false, err
	}
	return l.s.HasBlob(d.Digest), nil
}

// selectManifest chooses the entry of an index for the platform: the best
// match (pull.MatchPlatform) among the image manifests and indexes with a
// platform, else the only entry without one.
func (l *loader) selectManifest(entries []ocispec.Descriptor, what string) (ocispec.Descriptor, error) {
	best, bestRank := -1, 0
	var noPlatform []int
	var offered []string
	for i, e := range entries {
		if e.Platform == nil {
			noPlatform = append(noPlatform, i)
			continue
		}
		p := pull.Platform{OS: e.Platform.OS, Architecture: e.Platform.Architecture, Variant: e.Platform.Variant}
		offered = append(offered, p.Normalize().String())
		if rank, ok := pull.MatchPlatform(l.want, p); ok && (best < 0 || rank < bestRank) {
			best, bestRank = i, rank
		}
	}
	if best >= 0 {
		return entries[best], nil
	}
	if len(noPlatform) == 1 {
		return entries[noPlatform[0]], nil
	}
	return ocispec.Descriptor{}, fmt.Errorf("%w: %s: no image for %s; the index offers %v", ErrInvalid, what, l.want, offered)
}

// blob makes sure the store holds the blob d describes, taking it from the
// archive's blobs/<alg>/<hex> (a file or a symlink to one) when it is not
// there yet, and checks it against d's digest and size. With max >= 0 it
// returns the blob's bytes (at most max).
func (l *loader) blob(d ocispec.Descriptor, what string, max int64) ([]byte, error) {
	if err := d.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %s: digest %q: %v", ErrInvalid, what, d.Digest, err)
	}
	name := "blobs/" + d.Digest.Algorithm().String() + "/" + d.Digest.Encoded()
	e, err := l.c.lookup(name, what)
	switch {
	case err == nil && e.blob == d.Digest:
		// Stored as it streamed, verified against its name.
	case err == nil:
		rc, err := l.c.open(e)
		if err != nil {
			return nil, err
		}
		_, _, err = l.s.PutBlob(rc, d.Digest, d.Size)
		rc.Close()
		if err != nil {
			return nil, blobError(name, err)
		}
	case errors.Is(err, ErrUnsafeEntry) || !l.s.HasBlob(d.Digest):
		return nil, err
	}
	f, size, err := l.s.OpenBlob(d.Digest)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if size != d.Size {
		return nil, fmt.Errorf("%w: %s: entry %q has %d bytes, the descriptor says %d", ErrDigestMismatch, what, name, size, d.Size)
	}
	if max < 0 {
		return nil, nil
	}
	if size > max {
		return nil, fmt.Errorf("%w: %s: blob %s is %d bytes, at most %d are read", ErrInvalid, what, d.Digest, size, max)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("archive: reading blob %s: %w", d.Digest, err)
	}
	return b, nil
}

// unpack unpacks the stored layer blob into the layer store, unless a
// layer with that diff_id is there; the layer store checks the diff_id.
func (l *loader) unpack(blob digest.Digest, mediaType string, diffID digest.Digest, what string) error {
	ls := l.s.LayerStore()
	if _, err := ls.Get(diffID); err == nil {
		return nil
	}
	f, _, err := l.s.OpenBlob(blob)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := ls.Unpack(l.ctx, f, mediaType, diffID, l.opts.Limits); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// loadDockerManifest loads the items of manifest.json: those whose config
// an image of index.json has only name it; the others are loaded with a
// manifest written here (doc.go).
func (l *loader) loadDockerManifest() error {
	var items []dockerItem
	if err := l.readJSON(manifestFile, &items); err != nil {
		return err
	}
	for i, it := range items {
		what := fmt.Sprintf("%s item %d", manifestFile, i)
		cfgEntry, err := l.c.lookup(it.Config, what+" Config")
		if err != nil {
			return err
		}
		cfgDigest, cfgSize, err := l.store(cfgEntry)
		if err != nil {
			return err
		}
		if p := l.byConfig(cfgDigest); p != nil {
			l.add(&pending{manifest: p.manifest, config: p.config, index: p.index, names: it.RepoTags})
			continue
		}
		p, err := l.loadDockerItem(it, what, cfgDigest, cfgSize)
		if err != nil {
			return err
		}
		l.add(p)
	}
	return nil
}

// byConfig returns the queued image with that config, nil if none.
func (l *loader) byConfig(cfg digest.Digest) *pending {
	for _, p := range l.imgs {
		if p.config == cfg {
			return p
		}
	}
	return nil
}

// loadDockerItem stores and unpacks the layers of a manifest.json item and
// writes its manifest.
func (l *loader) loadDockerItem(it dockerItem, what string, cfgDigest digest.Digest, cfgSize int64) (*pending, error) {
	raw, err := l.s.ReadBlob(cfgDigest)
	if err != nil {
		return nil, err
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("%w: %s: config %q: %v", ErrInvalid, what, it.Config, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(it.Layers) {
		return nil, fmt.Errorf("%w: %s: config %q lists %d diff_ids for the item's %d layers",
			ErrInvalid, what, it.Config, len(cfg.RootFS.DiffIDs), len(it.Layers))
	}
	m := ocispec.Manifest{
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cfgDigest, Size: cfgSize},
		Layers:    []ocispec.Descriptor{},
	}
	m.SchemaVersion = 2
	for i, name := range it.Layers {
		lw := fmt.Sprintf("%s layer %d (%q)", what, i, name)
		e, err := l.c.lookup(name, lw)
		if err != nil {
			return nil, err
		}
		d, size, err := l.store(e)
		if err != nil {
			return nil, err
		}
		mt, err := l.layerMediaType(d)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", lw, err)
		}
		if err := l.unpack(d, mt, cfg.RootFS.DiffIDs[i], lw); err != nil {
			return nil, err
		}
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: mt, Digest: d, Size: size})
	}
	body, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	md, err := l.s.PutBlobBytes(body, "")
	if err != nil {
		return nil, err
	}
	return &pending{manifest: md, config: cfgDigest, names: it.RepoTags}, nil
}

// store makes sure a file of the archive is a blob of the store and
// returns its digest (sha256 for a spooled file) and size.
func (l *loader) store(e *entry) (digest.Digest, int64, error) {
	if e.blob != "" {
		f, size, err := l.s.OpenBlob(e.blob)
		if err != nil {
			return "", 0, err
		}
		f.Close()
		return e.blob, size, nil
	}
	rc, err := l.c.open(e)
	if err != nil {
		return "", 0, err
	}
	defer rc.Close()
	d, size, err := l.s.PutBlob(rc, "", -1)
	if err != nil {
		return "", 0, fmt.Errorf("archive: storing entry %q: %w", e.name, err)
	}
	return d, size, nil
}

// layerMediaType tells an OCI layer media type from a stored layer blob's
// first bytes.
func (l *loader) layerMediaType(d digest.Digest) (string, error) {
	f, _, err := l.s.OpenBlob(d)
	if err != nil {
		return "", err
	}
	defer f.Close()
	comp, err := sniff(bufio.NewReader(f))
	switch {
	case err != nil:
		return "", fmt.Errorf("blob %s: %w", d, err)
	case comp == gzipped:
		return ocispec.MediaTypeImageLayerGzip, nil
	case comp == zstded:
		return ocispec.MediaTypeImageLayerZstd, nil
	}
	return ocispec.MediaTypeImageLayer, nil
}

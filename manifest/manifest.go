package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// MaxSize is the largest manifest body Berth accepts, in bytes.
const MaxSize = 4 << 20

// The manifest media types Berth stores. Anything else, including Docker schema 1 and the
// withdrawn OCI artifact manifest, is refused with ErrUnsupported.
const (
	// MediaTypeOCIManifest is the OCI image manifest, also used for artifacts.
	MediaTypeOCIManifest = v1.MediaTypeImageManifest
	// MediaTypeOCIIndex is the OCI image index.
	MediaTypeOCIIndex = v1.MediaTypeImageIndex
	// MediaTypeDockerManifest is the Docker image manifest, schema 2.
	MediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	// MediaTypeDockerManifestList is the Docker manifest list, schema 2.
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	// MediaTypeDockerConfig is the config of a Docker image manifest.
	MediaTypeDockerConfig = "application/vnd.docker.container.image.v1+json"
)

// Manifest media types Berth knows about but does not store. A Content-Type naming one of
// them still counts as "a manifest type" when it disagrees with the body's mediaType.
const (
	mediaTypeDockerSchema1       = "application/vnd.docker.distribution.manifest.v1+json"
	mediaTypeDockerSchema1Signed = "application/vnd.docker.distribution.manifest.v1+prettyjws"
	mediaTypeOCIArtifact         = "application/vnd.oci.artifact.manifest.v1+json"
)

// Sentinel errors. Every error this package returns wraps exactly one of them with %w and a
// message naming the field, the value and the reason; test with errors.Is.
var (
	// ErrInvalid: the manifest is malformed or inconsistent (MANIFEST_INVALID).
	ErrInvalid = errors.New("manifest invalid")
	// ErrUnsupported: the manifest is of a media type Berth does not store, such as Docker
	// schema 1 or an unknown type (MANIFEST_INVALID, but distinguishable from ErrInvalid).
	ErrUnsupported = errors.New("manifest media type unsupported")
	// ErrTooLarge: the manifest body is larger than MaxSize (413).
	ErrTooLarge = errors.New("manifest too large")
	// ErrNameInvalid: the repository name breaks the distribution-spec grammar (NAME_INVALID).
	ErrNameInvalid = errors.New("invalid repository name")
	// ErrTagInvalid: the tag breaks the distribution-spec grammar (MANIFEST_INVALID when the
	// tag is the reference of a manifest request).
	ErrTagInvalid = errors.New("invalid tag")
	// ErrDigestInvalid: the digest is malformed or uses an algorithm other than sha256 or
	// sha512 (DIGEST_INVALID).
	ErrDigestInvalid = errors.New("invalid digest")
)

// Manifest is what Berth needs to know about a manifest it stores. Parse fills it; it holds
// decoded copies, the stored bytes stay exactly as pushed.
type Manifest struct {
	// MediaType is the resolved media type, one of the four MediaType constants.
	MediaType string
	// ArtifactType is the manifest's artifactType or, for image manifests without one,
	// config.mediaType, as the referrers API reports it. Empty for indexes without one.
	ArtifactType string
	// Subject is the manifest this one refers to (OCI types only), nil if none.
	Subject *v1.Descriptor
	// Annotations are the manifest's annotations (OCI types only), nil if none.
	Annotations map[string]string
	// Config is the configuration descriptor of an image manifest; nil for indexes.
	Config *v1.Descriptor
	// Layers are the layer descriptors of an image manifest; may be empty (artifacts).
	Layers []v1.Descriptor
	// Manifests are the entries of an index or manifest list; nil for image manifests.
	Manifests []v1.Descriptor
}

// IsIndex reports whether m is an OCI index or a Docker manifest list, whose references
// are other manifests rather than blobs.
func (m *Manifest) IsIndex() bool {
	return m.MediaType == MediaTypeOCIIndex || m.MediaType == MediaTypeDockerManifestList
}

// BlobReferences returns the blobs that must exist in the repository before m is accepted:
// the config and the layers, except layers that carry urls (Docker foreign layers and OCI
// non-distributable layers), which clients fetch from elsewhere. It is empty for indexes,
// whose entries are manifests (see Manifests).
func (m *Manifest) BlobReferences() []v1.Descriptor {
	if m.Config == nil {
		return nil
	}
	refs := make([]v1.Descriptor, 0, 1+len(m.Layers))
	refs = append(refs, *m.Config)
	for _, l := range m.Layers {
		if len(l.URLs) == 0 {
			refs = append(refs, l)
		}
	}
	return refs
}

// wireManifest is the union of the image manifest, index, Docker manifest and manifest list
// as they travel. Descriptors stay raw so that each is decoded, and blamed, on its own path.
type wireManifest struct {
	SchemaVersion json.RawMessage   `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        json.RawMessage   `json:"config"`
	Layers        json.RawMessage   `json:"layers"`
	Manifests     json.RawMessage   `json:"manifests"`
	Subject       json.RawMessage   `json:"subject"`
	Annotations   map[string]string `json:"annotations"`
}

// present reports whether a field was in the body with a value other than null. Go clients
// marshal a nil slice as null, so null counts as absent.
func present(raw json.RawMessage) bool {
	return len(raw) > 0 && string(raw) != "null"
}

// Parse validates body as a manifest pushed with the given Content-Type header value, which
// may be empty or carry parameters ("; charset=utf-8").
//
// The media type comes from the body's mediaType field when there is one (and must then agree
// with a Content-Type that names a manifest type), else from the Content-Type when it is one
// of the four stored types, else, when the Content-Type is empty, application/json or
// application/octet-stream, from the body's structure (manifests: OCI index; config or
// layers: OCI image manifest).
//
// Within the specs' latitude Parse accepts what the common clients produce: unknown fields
// are ignored; a missing or null "layers" means no layers and a missing or null "manifests"
// means an empty index (Go clients marshal nil slices as null); an OCI image manifest whose
// config is the empty descriptor but that has no artifactType is accepted, with ArtifactType
// set to config.mediaType. Subject, annotations and artifactType are not part of the Docker
// schemas and are ignored in Docker manifests.
//
// Parse rejects duplicate object keys. In the manifest, its descriptors and their platforms,
// keys that differ only in case count as duplicates too, because encoding/json matches field
// names case-insensitively and the stored bytes must mean the same thing to every client.
// Non-UTF-8 bodies and trailing data after the JSON object are rejected.
//
// Errors wrap ErrTooLarge, ErrUnsupported or ErrInvalid.
func Parse(contentType string, body []byte) (*Manifest, error) {
	if len(body) > MaxSize {
		return nil, fmt.Errorf("%w: body is %d bytes, at most %d are accepted", ErrTooLarge, len(body), MaxSize)
	}
	w, err := decodeWire(body)
	if err != nil {
		return nil, err
	}
	switch sv := string(w.SchemaVersion); sv {
	case "2":
	case "1":
		return nil, fmt.Errorf("%w: schemaVersion 1 (Docker schema 1) manifests are not supported; push schema 2 or OCI", ErrUnsupported)
	case "":
		return nil, fmt.Errorf("%w: schemaVersion is missing, want 2", ErrInvalid)
	default:
		return nil, fmt.Errorf("%w: schemaVersion is %s, want the number 2", ErrInvalid, clip(sv))
	}

	mediaType, err := resolveMediaType(contentType, w)
	if err != nil {
		return nil, err
	}
	hasImageFields := present(w.Config) || present(w.Layers)
	if present(w.Manifests) && hasImageFields {
		return nil, fmt.Errorf("%w: body has both manifests and config/layers, so it is neither an image manifest nor an index", ErrInvalid)
	}

	m := &Manifest{MediaType: mediaType}
	oci := mediaType == MediaTypeOCIManifest || mediaType == MediaTypeOCIIndex
	if oci {
		if w.ArtifactType != "" {
			if p := mediaTypeProblem(w.ArtifactType); p != "" {
				return nil, fmt.Errorf("%w: artifactType: %s", ErrInvalid, p)
			}
		}
		if present(w.Subject) {
			d, err := decodeDescriptor("subject", w.Subject)
			if err != nil {
				return nil, err
			}
			m.Subject = &d
		}
		m.ArtifactType = w.ArtifactType
		m.Annotations = w.Annotations
	}

	if m.IsIndex() {
		if hasImageFields {
			return nil, fmt.Errorf("%w: %s must not have config or layers", ErrInvalid, mediaType)
		}
		m.Manifests, err = decodeDescriptors("manifests", w.Manifests)
		if err != nil {
			return nil, err
		}
		if m.Manifests == nil {
			m.Manifests = []v1.Descriptor{}
		}
		return m, nil
	}

	if present(w.Manifests) {
		return nil, fmt.Errorf("%w: %s must not have manifests", ErrInvalid, mediaType)
	}
	if !present(w.Config) {
		return nil, fmt.Errorf("%w: config is required in %s", ErrInvalid, mediaType)
	}
	config, err := decodeDescriptor("config", w.Config)
	if err != nil {
		return nil, err
	}
	m.Config = &config
	if m.Layers, err = decodeDescriptors("layers", w.Layers); err != nil {
		return nil, err
	}
	if m.ArtifactType == "" {
		m.ArtifactType = config.MediaType
	}
	return m, nil
}

// decodeWire checks that body is one well-formed JSON object without duplicate keys and
// decodes its top level.
func decodeWire(body []byte) (*wireManifest, error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("%w: body is empty", ErrInvalid)
	}
	if !utf8.Valid(body) {
		return nil, fmt.Errorf("%w: body is not valid UTF-8", ErrInvalid)
	}
	if trimmed[0] != '{' {
		return nil, fmt.Errorf("%w: body is not a JSON object", ErrInvalid)
	}
	var w wireManifest
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, jsonProblem("", err))
	}
	if err := checkDuplicateKeys(body); err != nil {
		return nil, err
	}
	return &w, nil
}

// resolveMediaType decides the media type of a pushed manifest; see Parse.
func resolveMediaType(contentType string, w *wireManifest) (string, error) {
	ct := baseMediaType(contentType)
	if w.MediaType != "" {
		if !isStoredType(w.MediaType) {
			return "", fmt.Errorf("%w: mediaType %s is not a manifest type Berth stores", ErrUnsupported, quoteShort(w.MediaType))
		}
		if isManifestType(ct) && ct != w.MediaType {
			return "", fmt.Errorf("%w: mediaType %q in the body disagrees with Content-Type %q", ErrInvalid, w.MediaType, ct)
		}
		return w.MediaType, nil
	}
	switch {
	case isStoredType(ct):
		return ct, nil
	case isGenericType(ct):
		switch {
		case present(w.Manifests):
			return MediaTypeOCIIndex, nil
		case present(w.Config) || present(w.Layers):
			return MediaTypeOCIManifest, nil
		}
		return "", fmt.Errorf("%w: body has no mediaType, no manifests and no config or layers, and Content-Type %q does not name a manifest type", ErrInvalid, ct)
	}
	return "", fmt.Errorf("%w: Content-Type %s is not a manifest type Berth stores and the body has no mediaType", ErrUnsupported, quoteShort(ct))
}

// baseMediaType returns a Content-Type value without parameters, trimmed and lowercased.
func baseMediaType(contentType string) string {
	base, _, _ := strings.Cut(contentType, ";")
	return strings.ToLower(strings.TrimSpace(base))
}

func isStoredType(mt string) bool {
	switch mt {
	case MediaTypeOCIManifest, MediaTypeOCIIndex, MediaTypeDockerManifest, MediaTypeDockerManifestList:
		return true
	}
	return false
}

func isManifestType(mt string) bool {
	switch mt {
	case mediaTypeDockerSchema1, mediaTypeDockerSchema1Signed, mediaTypeOCIArtifact:
		return true
	}
	return isStoredType(mt)
}

func isGenericType(mt string) bool {
	return mt == "" || mt == "application/json" || mt == "application/octet-stream"
}

// DetectMediaType tells the media type of stored manifest bytes, for GET responses: the
// body's mediaType field, else OCI index if it has manifests, else OCI image manifest if it
// has config or layers, else "". It does not validate. A Docker manifest pushed without a
// mediaType field is reported as OCI, so callers that kept the type Parse resolved should
// prefer that.
func DetectMediaType(body []byte) string {
	var w struct {
		MediaType string          `json:"mediaType"`
		Config    json.RawMessage `json:"config"`
		Layers    json.RawMessage `json:"layers"`
		Manifests json.RawMessage `json:"manifests"`
	}
	if err := json.Unmarshal(body, &w); err != nil {
		return ""
	}
	switch {
	case w.MediaType != "":
		return w.MediaType
	case present(w.Manifests) && (present(w.Config) || present(w.Layers)):
		return ""
	case present(w.Manifests):
		return MediaTypeOCIIndex
	case present(w.Config) || present(w.Layers):
		return MediaTypeOCIManifest
	}
	return ""
}

// Read reads a manifest body from r. It never reads more than MaxSize+1 bytes: when the body
// is larger than MaxSize it stops there and returns an error wrapping ErrTooLarge. Errors
// from r are returned as they are.
func Read(r io.Reader) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(body) > MaxSize {
		return nil, fmt.Errorf("%w: body is over %d bytes", ErrTooLarge, MaxSize)
	}
	return body, nil
}

// PlatformString is p as os/arch[/variant], "" when p is nil or names no
// OS or architecture.
func PlatformString(p *v1.Platform) string {
	if p == nil || p.OS == "" || p.Architecture == "" {
		return ""
	}
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

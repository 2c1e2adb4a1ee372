package manifest_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/manifest"
)

func digests(ds []v1.Descriptor) []digest.Digest {
	out := make([]digest.Digest, len(ds))
	for i, d := range ds {
		out[i] = d.Digest
	}
	return out
}

func equalDigests(got []v1.Descriptor, want ...string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if string(got[i].Digest) != want[i] {
			return false
		}
	}
	return true
}

func TestParseValid(t *testing.T) {
	for _, tc := range []struct {
		name         string
		contentType  string
		body         string
		mediaType    string
		artifactType string
		subject      string   // digest of the subject, "" for none
		blobs        []string // BlobReferences digests
		manifests    []string // Manifests digests
		annotations  int
	}{
		{
			name: "oci image", contentType: manifest.MediaTypeOCIManifest, body: ociImage,
			mediaType: manifest.MediaTypeOCIManifest, artifactType: v1.MediaTypeImageConfig,
			blobs: []string{dCfg, dLayer1, dLayer2}, annotations: 2,
		},
		{
			name: "oci image, Content-Type with parameters", contentType: "Application/VND.oci.image.manifest.v1+json ; charset=utf-8", body: ociImage,
			mediaType: manifest.MediaTypeOCIManifest, artifactType: v1.MediaTypeImageConfig,
			blobs: []string{dCfg, dLayer1, dLayer2}, annotations: 2,
		},
		{
			name: "oci image, no Content-Type", contentType: "", body: ociImage,
			mediaType: manifest.MediaTypeOCIManifest, artifactType: v1.MediaTypeImageConfig,
			blobs: []string{dCfg, dLayer1, dLayer2}, annotations: 2,
		},
		{
			name: "oci image, unrelated Content-Type, body mediaType wins", contentType: "text/plain", body: ociImage,
			mediaType: manifest.MediaTypeOCIManifest, artifactType: v1.MediaTypeImageConfig,
			blobs: []string{dCfg, dLayer1, dLayer2}, annotations: 2,
		},
		{
			name: "oci image without mediaType, from Content-Type", contentType: manifest.MediaTypeOCIManifest, body: ociImageNoMediaType,
			mediaType: manifest.MediaTypeOCIManifest, artifactType: v1.MediaTypeImageConfig, blobs: []string{dCfg},
		},
		{
			name: "oci image without mediaType, octet-stream, from structure", contentType: "application/octet-stream", body: ociImageNoMediaType,
			mediaType: manifest.MediaTypeOCIManifest, artifactType: v1.MediaTypeImageConfig, blobs: []string{dCfg},
		},
		{
			name: "layers null (Go client with a nil slice)", contentType: manifest.MediaTypeOCIManifest,
			body:      `{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"@cfg","size":3},"layers":null}`,
			mediaType: manifest.MediaTypeOCIManifest, artifactType: v1.MediaTypeImageConfig, blobs: []string{dCfg},
		},
		{
			name: "layers missing", contentType: "application/json",
			body:      `{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"@cfg","size":3}}`,
			mediaType: manifest.MediaTypeOCIManifest, artifactType: v1.MediaTypeImageConfig, blobs: []string{dCfg},
		},
		{
			name: "oci index", contentType: manifest.MediaTypeOCIIndex, body: ociIndex,
			mediaType: manifest.MediaTypeOCIIndex, manifests: []string{dAmd64, dArm64, dAtt},
		},
		{
			name: "oci index without mediaType, application/json, from structure", contentType: "application/json", body: ociIndexNoMediaType,
			mediaType: manifest.MediaTypeOCIIndex, manifests: []string{dAmd64},
		},
		{
			name: "oci index without mediaType, from Content-Type", contentType: manifest.MediaTypeOCIIndex, body: ociIndexNoMediaType,
			mediaType: manifest.MediaTypeOCIIndex, manifests: []string{dAmd64},
		},
		{
			name: "empty oci index", contentType: manifest.MediaTypeOCIIndex, body: `{"schemaVersion":2,"manifests":[]}`,
			mediaType: manifest.MediaTypeOCIIndex, manifests: []string{},
		},
		{
			name: "oci index artifact with subject and sha512 entry", contentType: manifest.MediaTypeOCIIndex, body: signatureIndex,
			mediaType: manifest.MediaTypeOCIIndex, artifactType: "application/vnd.food.stand", subject: dSubject,
			manifests: []string{dAmd64, dSHA512},
		},
		{
			name: "docker schema 2", contentType: manifest.MediaTypeDockerManifest, body: dockerManifest,
			mediaType: manifest.MediaTypeDockerManifest, artifactType: "application/vnd.docker.container.image.v1+json",
			blobs: []string{dCfg, dLayer1, dLayer2},
		},
		{
			name: "docker schema 2, no Content-Type", body: dockerManifest,
			mediaType: manifest.MediaTypeDockerManifest, artifactType: "application/vnd.docker.container.image.v1+json",
			blobs: []string{dCfg, dLayer1, dLayer2},
		},
		{
			name: "docker schema 2 without mediaType, from Content-Type", contentType: manifest.MediaTypeDockerManifest,
			body:      `{"schemaVersion":2,"config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":7023,"digest":"@cfg"},"layers":[]}`,
			mediaType: manifest.MediaTypeDockerManifest, artifactType: "application/vnd.docker.container.image.v1+json", blobs: []string{dCfg},
		},
		{
			name: "docker foreign layer is not a blob reference", contentType: manifest.MediaTypeDockerManifest, body: dockerForeign,
			mediaType: manifest.MediaTypeDockerManifest, artifactType: "application/vnd.docker.container.image.v1+json",
			blobs: []string{dCfg, dLayer1},
		},
		{
			name: "oci non-distributable layer with urls", contentType: manifest.MediaTypeOCIManifest,
			body: `{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"@cfg","size":3},
				"layers":[{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip","digest":"@foreign","size":10,"urls":["https://example.com/layer"]},
				{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"@l1","size":10}]}`,
			mediaType: manifest.MediaTypeOCIManifest, artifactType: v1.MediaTypeImageConfig, blobs: []string{dCfg, dLayer1},
		},
		{
			name: "docker manifest list", contentType: manifest.MediaTypeDockerManifestList, body: dockerList,
			mediaType: manifest.MediaTypeDockerManifestList, manifests: []string{dAmd64, dArm64},
		},
		{
			name: "docker manifest: subject, artifactType, annotations are not Docker fields", contentType: manifest.MediaTypeDockerManifest,
			body: `{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","artifactType":"x/y",
				"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"@subject","size":1},"annotations":{"a":"b"},
				"config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":7023,"digest":"@cfg"},"layers":[]}`,
			mediaType: manifest.MediaTypeDockerManifest, artifactType: "application/vnd.docker.container.image.v1+json", blobs: []string{dCfg},
		},
		{
			name: "artifact with artifactType, empty config, subject", contentType: manifest.MediaTypeOCIManifest, body: artifactWithType,
			mediaType: manifest.MediaTypeOCIManifest, artifactType: "application/spdx+json", subject: dSubject,
			blobs: []string{dEmpty, dSBOM}, annotations: 1,
		},
		{
			name: "artifact typed by config.mediaType (helm)", contentType: manifest.MediaTypeOCIManifest, body: artifactWithConfigType,
			mediaType: manifest.MediaTypeOCIManifest, artifactType: "application/vnd.cncf.helm.config.v1+json",
			blobs: []string{dHelmCfg, dChart}, annotations: 2,
		},
		{
			name: "artifact without layers", contentType: manifest.MediaTypeOCIManifest,
			body:      `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.example.thing.v1","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"@empty","size":2},"layers":[]}`,
			mediaType: manifest.MediaTypeOCIManifest, artifactType: "application/vnd.example.thing.v1", blobs: []string{dEmpty},
		},
		{
			name: "empty config without artifactType is accepted", contentType: manifest.MediaTypeOCIManifest,
			body:      `{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"@empty","size":2},"layers":[]}`,
			mediaType: manifest.MediaTypeOCIManifest, artifactType: v1.MediaTypeEmptyJSON, blobs: []string{dEmpty},
		},
		{
			name: "annotation keys differing in case are distinct", contentType: manifest.MediaTypeOCIManifest,
			body:      `{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"@empty","size":2},"annotations":{"a":"1","A":"2"}}`,
			mediaType: manifest.MediaTypeOCIManifest, artifactType: v1.MediaTypeEmptyJSON, blobs: []string{dEmpty}, annotations: 2,
		},
		{
			name: "escapes, nesting and scalars in unknown fields", contentType: manifest.MediaTypeOCIManifest,
			body: ` {"x":[[{"a":"\"}],{\\"},{"b":[1,-2.5e3,true,false,null,{},[]]}],"}{"],"schemaVersion":2, "config" : {"mediaType":"application/vnd.oci.empty.v1+json","digest":"@empty","size":2},
				"annotations":{"q\"uote":"\u00e9\n","":"empty key"}} ` + "\n",
			mediaType: manifest.MediaTypeOCIManifest, artifactType: v1.MediaTypeEmptyJSON, blobs: []string{dEmpty}, annotations: 2,
		},
		{
			name: "sha512 digests, artifactType on a descriptor, unknown fields", contentType: manifest.MediaTypeOCIManifest,
			body: `{"schemaVersion":2,"x-extension":{"size":1,"Size":[2]},"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"@sha512","size":3,"future":true},
				"layers":[{"mediaType":"application/octet-stream","digest":"@sha512","size":0,"artifactType":"application/vnd.example+type"}]}`,
			mediaType: manifest.MediaTypeOCIManifest, artifactType: v1.MediaTypeImageConfig, blobs: []string{dSHA512, dSHA512},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte(fill(tc.body))
			m, err := manifest.Parse(tc.contentType, body)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if m.MediaType != tc.mediaType {
				t.Errorf("MediaType = %q, want %q", m.MediaType, tc.mediaType)
			}
			if m.ArtifactType != tc.artifactType {
				t.Errorf("ArtifactType = %q, want %q", m.ArtifactType, tc.artifactType)
			}
			switch {
			case tc.subject == "" && m.Subject != nil:
				t.Errorf("Subject = %v, want none", m.Subject)
			case tc.subject != "" && (m.Subject == nil || string(m.Subject.Digest) != tc.subject):
				t.Errorf("Subject = %v, want digest %s", m.Subject, tc.subject)
			}
			if len(m.Annotations) != tc.annotations {
				t.Errorf("Annotations = %v, want %d entries", m.Annotations, tc.annotations)
			}
			if !equalDigests(m.BlobReferences(), tc.blobs...) {
				t.Errorf("BlobReferences = %v, want %v", digests(m.BlobReferences()), tc.blobs)
			}
			wantIndex := tc.manifests != nil
			if m.IsIndex() != wantIndex {
				t.Errorf("IsIndex = %v, want %v", m.IsIndex(), wantIndex)
			}
			if wantIndex {
				if !equalDigests(m.Manifests, tc.manifests...) || m.Manifests == nil {
					t.Errorf("Manifests = %v, want %v", digests(m.Manifests), tc.manifests)
				}
				if m.Config != nil || m.Layers != nil {
					t.Errorf("index has Config %v, Layers %v", m.Config, m.Layers)
				}
			} else if m.Config == nil || m.Manifests != nil {
				t.Errorf("image manifest has Config %v, Manifests %v", m.Config, m.Manifests)
			}
		})
	}
}

func TestParseDetails(t *testing.T) {
	m, err := manifest.Parse(manifest.MediaTypeOCIIndex, []byte(fill(ociIndex)))
	if err != nil {
		t.Fatal(err)
	}
	if p := m.Manifests[1].Platform; p == nil || p.Architecture != "arm64" || p.Variant != "v8" {
		t.Errorf("manifests[1].platform = %+v", p)
	}
	if got := m.Manifests[2].Annotations["vnd.docker.reference.type"]; got != "attestation-manifest" {
		t.Errorf("manifests[2] annotation = %q", got)
	}

	m, err = manifest.Parse(manifest.MediaTypeOCIManifest, []byte(fill(artifactWithType)))
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Config.Data) != "{}" || m.Config.Size != 2 {
		t.Errorf("config = %+v, want the empty descriptor with its data", m.Config)
	}
	if m.Subject.MediaType != manifest.MediaTypeOCIManifest || m.Subject.Size != 1052 {
		t.Errorf("subject = %+v", m.Subject)
	}
	if got := m.Layers[0].Annotations["org.opencontainers.image.title"]; got != "sbom.spdx.json" {
		t.Errorf("layer title = %q", got)
	}

	m, err = manifest.Parse(manifest.MediaTypeDockerManifest, []byte(fill(dockerForeign)))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Layers) != 2 || len(m.Layers[0].URLs) != 1 || m.Layers[0].Size != 1652262400 {
		t.Errorf("layers = %+v, want the foreign layer kept in Layers", m.Layers)
	}
}

func TestParseInvalid(t *testing.T) {
	const cfg = `"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"@cfg","size":3}`
	const layer = `{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"@l1","size":10}`
	const entry = `{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"@amd64","size":10}`
	// img builds an OCI image manifest body with extra top-level fields.
	img := func(extra string) string {
		if extra != "" {
			extra = "," + extra
		}
		return `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` + cfg + `,"layers":[` + layer + `]` + extra + `}`
	}
	// withLayer builds an OCI image manifest whose second layer is the given descriptor.
	withLayer := func(desc string) string {
		return `{"schemaVersion":2,` + cfg + `,"layers":[` + layer + `,` + desc + `]}`
	}
	// withEntry builds an OCI index whose second entry is the given descriptor.
	withEntry := func(desc string) string {
		return `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` + entry + `,` + desc + `]}`
	}
	oci, idx := manifest.MediaTypeOCIManifest, manifest.MediaTypeOCIIndex

	for _, tc := range []struct {
		name        string
		contentType string
		body        string
		want        error
		msg         string // must appear in the error message
	}{
		// Not a JSON object.
		{"empty body", oci, "", manifest.ErrInvalid, "empty"},
		{"whitespace body", oci, " \n", manifest.ErrInvalid, "empty"},
		{"not json", oci, "blablabla", manifest.ErrInvalid, "not a JSON object"},
		{"json array", oci, "[]", manifest.ErrInvalid, "not a JSON object"},
		{"json null", oci, "null", manifest.ErrInvalid, "not a JSON object"},
		{"truncated", oci, `{"schemaVersion":2,`, manifest.ErrInvalid, "not valid JSON"},
		{"trailing garbage", oci, img("") + "x", manifest.ErrInvalid, "not valid JSON"},
		{"second value", oci, img("") + "{}", manifest.ErrInvalid, "not valid JSON"},
		{"invalid utf-8", oci, img(`"annotations":{"a":"` + "\xff" + `"}`), manifest.ErrInvalid, "UTF-8"},
		{"byte order mark", oci, "\uFEFF" + img(""), manifest.ErrInvalid, "not a JSON object"},

		// Duplicate keys.
		{"duplicate top-level key", oci, img(`"mediaType":"application/vnd.oci.image.manifest.v1+json"`), manifest.ErrInvalid, `"mediaType" appears more than once`},
		{"duplicate key differing in case", oci, img(`"Layers":[]`), manifest.ErrInvalid, `"Layers" appears more than once`},
		{"duplicate key in a descriptor", oci, withLayer(`{"mediaType":"a/b","digest":"@l2","digest":"@l1","size":1}`), manifest.ErrInvalid, `"digest" appears more than once in layers[]`},
		{"duplicate key folded like encoding/json (long s)", oci, withLayer(`{"mediaType":"a/b","digest":"@l2","size":1,"ſize":2}`), manifest.ErrInvalid, "appears more than once in layers[]"},
		{"duplicate platform key differing in case", idx, withEntry(`{"mediaType":"a/b","digest":"@l2","size":1,"platform":{"os":"linux","OS":"windows","architecture":"amd64"}}`), manifest.ErrInvalid, `"OS" appears more than once in manifests[].platform`},
		{"duplicate key in an extension object", oci, img(`"x-ext":{"k":1,"k":2}`), manifest.ErrInvalid, `"k" appears more than once in x-ext`},
		{"duplicate key written with an escape", oci, img(`"con\u0066ig":{}`), manifest.ErrInvalid, `"config" appears more than once in the top-level object`},
		{"duplicate annotation", oci, img(`"annotations":{"a":"1","a":"2"}`), manifest.ErrInvalid, `"a" appears more than once in annotations`},

		// schemaVersion.
		{"schemaVersion missing", oci, `{"mediaType":"application/vnd.oci.image.manifest.v1+json",` + cfg + `}`, manifest.ErrInvalid, "schemaVersion is missing"},
		{"schemaVersion 3", oci, `{"schemaVersion":3,` + cfg + `}`, manifest.ErrInvalid, "schemaVersion is 3"},
		{"schemaVersion string", oci, `{"schemaVersion":"2",` + cfg + `}`, manifest.ErrInvalid, `schemaVersion is "2"`},
		{"schemaVersion 2.0", oci, `{"schemaVersion":2.0,` + cfg + `}`, manifest.ErrInvalid, "schemaVersion is 2.0"},
		{"schemaVersion null", oci, `{"schemaVersion":null,` + cfg + `}`, manifest.ErrInvalid, "schemaVersion is null"},
		{"docker schema 1 signed", "application/vnd.docker.distribution.manifest.v1+prettyjws", dockerSchema1, manifest.ErrUnsupported, "schema 1"},
		{"docker schema 1 as json", "application/json", dockerSchema1, manifest.ErrUnsupported, "schema 1"},

		// Media type resolution.
		{"oci artifact manifest (withdrawn)", "application/vnd.oci.artifact.manifest.v1+json",
			`{"schemaVersion":2,"mediaType":"application/vnd.oci.artifact.manifest.v1+json","artifactType":"a/b","blobs":[]}`, manifest.ErrUnsupported, "artifact.manifest"},
		{"unknown body mediaType", "", `{"schemaVersion":2,"mediaType":"application/vnd.example.manifest+json",` + cfg + `}`, manifest.ErrUnsupported, "vnd.example.manifest"},
		{"body mediaType in other case", "", `{"schemaVersion":2,"mediaType":"application/vnd.OCI.image.manifest.v1+json",` + cfg + `}`, manifest.ErrUnsupported, "not a manifest type"},
		{"schema 1 Content-Type, no body mediaType", "application/vnd.docker.distribution.manifest.v1+json", `{"schemaVersion":2,` + cfg + `}`, manifest.ErrUnsupported, "Content-Type"},
		{"unrelated Content-Type, no body mediaType", "text/plain", `{"schemaVersion":2,` + cfg + `}`, manifest.ErrUnsupported, `"text/plain"`},
		{"Content-Type index, body manifest", idx, img(""), manifest.ErrInvalid, "disagrees with Content-Type"},
		{"Content-Type docker, body oci", manifest.MediaTypeDockerManifest, img(""), manifest.ErrInvalid, "disagrees"},
		{"Content-Type docker list, body oci index", manifest.MediaTypeDockerManifestList, fill(ociIndex), manifest.ErrInvalid, "disagrees"},
		{"Content-Type schema 1, body oci", "application/vnd.docker.distribution.manifest.v1+prettyjws", img(""), manifest.ErrInvalid, "disagrees"},
		{"mediaType not a string", oci, `{"schemaVersion":2,"mediaType":7,` + cfg + `}`, manifest.ErrInvalid, "mediaType: JSON number where a string is expected"},
		{"nothing to detect from", "application/json", `{"schemaVersion":2}`, manifest.ErrInvalid, "no mediaType"},

		// Image or index, not both.
		{"manifests and config, no mediaType", "", `{"schemaVersion":2,` + cfg + `,"manifests":[]}`, manifest.ErrInvalid, "both manifests and config"},
		{"manifests and layers, index mediaType", idx, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[],"layers":[]}`, manifest.ErrInvalid, "both manifests and config"},
		{"manifests and config, image mediaType", oci, img(`"manifests":[` + entry + `]`), manifest.ErrInvalid, "both"},
		{"index with config only", idx, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",` + cfg + `}`, manifest.ErrInvalid, "must not have config or layers"},
		{"image with manifests only", oci, `{"schemaVersion":2,"manifests":[` + entry + `]}`, manifest.ErrInvalid, "must not have manifests"},
		{"docker list with layers", manifest.MediaTypeDockerManifestList, `{"schemaVersion":2,"layers":[]}`, manifest.ErrInvalid, "must not have config or layers"},

		// Image manifest structure.
		{"image without config", oci, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[` + layer + `]}`, manifest.ErrInvalid, "config is required"},
		{"image with null config", oci, `{"schemaVersion":2,"config":null,"layers":[]}`, manifest.ErrInvalid, "config is required"},
		{"docker without config", manifest.MediaTypeDockerManifest, `{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","layers":[]}`, manifest.ErrInvalid, "config is required"},
		{"docker config without mediaType", manifest.MediaTypeDockerManifest, `{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"size":7023,"digest":"@cfg"},"layers":[]}`, manifest.ErrInvalid, "config.mediaType: missing"},
		{"config not an object", oci, `{"schemaVersion":2,"config":"@cfg"}`, manifest.ErrInvalid, "config: JSON string where an object is expected"},
		{"config empty object", oci, `{"schemaVersion":2,"config":{}}`, manifest.ErrInvalid, "config.mediaType: missing"},
		{"layers not an array", oci, `{"schemaVersion":2,` + cfg + `,"layers":{}}`, manifest.ErrInvalid, "layers: JSON object where an array is expected"},
		{"layer null", oci, withLayer(`null`), manifest.ErrInvalid, "layers[1].mediaType: missing"},
		{"annotation value not a string", oci, img(`"annotations":{"a":1}`), manifest.ErrInvalid, "annotations: JSON number where a string is expected"},

		// Descriptors.
		{"layer digest missing", oci, withLayer(`{"mediaType":"a/b","size":1}`), manifest.ErrInvalid, "layers[1].digest: missing"},
		{"layer digest uppercase", oci, withLayer(`{"mediaType":"a/b","digest":"` + strings.ToUpper(dLayer2[:9]) + dLayer2[9:] + `","size":1}`), manifest.ErrInvalid, "layers[1].digest:"},
		{"layer digest hex uppercase", oci, withLayer(`{"mediaType":"a/b","digest":"sha256:` + strings.ToUpper(dLayer2[7:]) + `","size":1}`), manifest.ErrInvalid, "layers[1].digest: " + `"sha256:` + strings.ToUpper(dLayer2[7:]) + `": hex must be lowercase`},
		{"layer digest sha384", oci, withLayer(`{"mediaType":"a/b","digest":"sha384:` + strings.Repeat("ab", 48) + `","size":1}`), manifest.ErrInvalid, `algorithm "sha384" is not supported`},
		{"layer digest short", oci, withLayer(`{"mediaType":"a/b","digest":"sha256:abc","size":1}`), manifest.ErrInvalid, "needs 64 hex characters, found 3"},
		{"layer digest garbage", oci, withLayer(`{"mediaType":"a/b","digest":"not-a-digest","size":1}`), manifest.ErrInvalid, "no algorithm prefix"},
		{"layer digest not a string", oci, withLayer(`{"mediaType":"a/b","digest":5,"size":1}`), manifest.ErrInvalid, "layers[1].digest: JSON number where a string is expected"},
		{"layer size negative", oci, withLayer(`{"mediaType":"a/b","digest":"@l2","size":-1}`), manifest.ErrInvalid, "layers[1].size: -1 is negative"},
		{"layer size fractional", oci, withLayer(`{"mediaType":"a/b","digest":"@l2","size":1.5}`), manifest.ErrInvalid, "layers[1].size: JSON number 1.5 where an integer is expected"},
		{"layer size too big", oci, withLayer(`{"mediaType":"a/b","digest":"@l2","size":99999999999999999999}`), manifest.ErrInvalid, "layers[1].size"},
		{"layer size a string", oci, withLayer(`{"mediaType":"a/b","digest":"@l2","size":"10"}`), manifest.ErrInvalid, "layers[1].size: JSON string"},
		{"layer mediaType missing", oci, withLayer(`{"digest":"@l2","size":1}`), manifest.ErrInvalid, "layers[1].mediaType: missing"},
		{"layer mediaType without subtype", oci, withLayer(`{"mediaType":"tar","digest":"@l2","size":1}`), manifest.ErrInvalid, "layers[1].mediaType: \"tar\" is not a media type: no '/'"},
		{"layer mediaType with parameters", oci, withLayer(`{"mediaType":"application/json; charset=utf-8","digest":"@l2","size":1}`), manifest.ErrInvalid, "subtype contains ';'"},
		{"layer mediaType starting with a dot", oci, withLayer(`{"mediaType":".application/x","digest":"@l2","size":1}`), manifest.ErrInvalid, "type must start with a letter or digit"},
		{"layer mediaType empty subtype", oci, withLayer(`{"mediaType":"application/","digest":"@l2","size":1}`), manifest.ErrInvalid, "subtype is empty"},
		{"layer mediaType too long", oci, withLayer(`{"mediaType":"application/` + strings.Repeat("x", 128) + `","digest":"@l2","size":1}`), manifest.ErrInvalid, "at most 127"},
		{"layer empty url", oci, withLayer(`{"mediaType":"a/b","digest":"@l2","size":1,"urls":[""]}`), manifest.ErrInvalid, "layers[1].urls[0]: empty URL"},
		{"layer bad url", oci, withLayer(`{"mediaType":"a/b","digest":"@l2","size":1,"urls":["http://[::1"]}`), manifest.ErrInvalid, "layers[1].urls[0]"},
		{"layer bad artifactType", oci, withLayer(`{"mediaType":"a/b","digest":"@l2","size":1,"artifactType":"nope"}`), manifest.ErrInvalid, "layers[1].artifactType"},
		{"config data wrong size", oci, `{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"@empty","size":3,"data":"e30="}}`, manifest.ErrInvalid, "config.data: embedded content is 2 bytes but size is 3"},
		{"config data wrong digest", oci, `{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"@cfg","size":2,"data":"e30="}}`, manifest.ErrInvalid, "config.data: embedded content has digest " + dEmpty},
		{"config data not base64", oci, `{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"@empty","size":2,"data":"e30=!"}}`, manifest.ErrInvalid, "config.data: not valid base64"},
		{"index entry digest missing", idx, withEntry(`{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":10}`), manifest.ErrInvalid, "manifests[1].digest: missing"},
		{"index entry platform without os", idx, withEntry(`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"@arm64","size":10,"platform":{"architecture":"arm64"}}`), manifest.ErrInvalid, "manifests[1].platform.os: missing"},
		{"index entry platform without architecture", idx, withEntry(`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"@arm64","size":10,"platform":{"os":"linux"}}`), manifest.ErrInvalid, "manifests[1].platform.architecture: missing"},
		{"index entry platform not an object", idx, withEntry(`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"@arm64","size":10,"platform":"linux/arm64"}`), manifest.ErrInvalid, "manifests[1].platform: JSON string where an object is expected"},
		{"index manifests not an array", idx, `{"schemaVersion":2,"manifests":{}}`, manifest.ErrInvalid, "manifests: JSON object where an array is expected"},
		{"docker list entry bad digest", manifest.MediaTypeDockerManifestList, `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"sha256:","size":1}]}`, manifest.ErrInvalid, `manifests[0].digest: "sha256:" has an empty sha256 hex part`},

		// subject and artifactType.
		{"subject bad digest", oci, img(`"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:xyz","size":1}`), manifest.ErrInvalid, "subject.digest"},
		{"subject not an object", oci, img(`"subject":"@subject"`), manifest.ErrInvalid, "subject: JSON string where an object is expected"},
		{"subject on index bad size", idx, `{"schemaVersion":2,"manifests":[],"subject":{"mediaType":"a/b","digest":"@subject","size":-5}}`, manifest.ErrInvalid, "subject.size: -5 is negative"},
		{"artifactType not a media type", oci, img(`"artifactType":"sbom"`), manifest.ErrInvalid, `artifactType: "sbom" is not a media type`},
		{"artifactType with parameters", idx, `{"schemaVersion":2,"artifactType":"a/b;c=d","manifests":[]}`, manifest.ErrInvalid, "artifactType"},
		{"artifactType not a string", oci, img(`"artifactType":["a/b"]`), manifest.ErrInvalid, "artifactType: JSON array where a string is expected"},

		// Size.
		{"too large", oci, img(`"annotations":{"pad":"` + strings.Repeat("x", manifest.MaxSize) + `"}`), manifest.ErrTooLarge, "at most 4194304"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := manifest.Parse(tc.contentType, []byte(fill(tc.body)))
			if err == nil {
				t.Fatalf("Parse accepted it: %+v", m)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %q does not wrap %q", err, tc.want)
			}
			for _, other := range []error{manifest.ErrInvalid, manifest.ErrUnsupported, manifest.ErrTooLarge} {
				if other != tc.want && errors.Is(err, other) {
					t.Errorf("error %q also wraps %q", err, other)
				}
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not mention %q", err, tc.msg)
			}
		})
	}
}

func TestParseMaxSize(t *testing.T) {
	// A valid manifest padded with whitespace to exactly MaxSize bytes is accepted.
	body := []byte(fill(ociImage))
	body = append(body, bytes.Repeat([]byte(" "), manifest.MaxSize-len(body))...)
	if _, err := manifest.Parse("", body); err != nil {
		t.Errorf("Parse of exactly MaxSize bytes: %v", err)
	}
	if _, err := manifest.Parse("", append(body, ' ')); !errors.Is(err, manifest.ErrTooLarge) {
		t.Errorf("Parse of MaxSize+1 bytes: %v, want ErrTooLarge", err)
	}
}

func TestDetectMediaType(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
	}{
		{"oci image", ociImage, manifest.MediaTypeOCIManifest},
		{"oci image without mediaType", ociImageNoMediaType, manifest.MediaTypeOCIManifest},
		{"layers only", `{"layers":[]}`, manifest.MediaTypeOCIManifest},
		{"oci index", ociIndex, manifest.MediaTypeOCIIndex},
		{"oci index without mediaType", ociIndexNoMediaType, manifest.MediaTypeOCIIndex},
		{"docker manifest", dockerManifest, manifest.MediaTypeDockerManifest},
		{"docker list", dockerList, manifest.MediaTypeDockerManifestList},
		{"artifact", artifactWithType, manifest.MediaTypeOCIManifest},
		{"helm", artifactWithConfigType, manifest.MediaTypeOCIManifest},
		{"body mediaType as is", `{"mediaType":"application/vnd.example+json"}`, "application/vnd.example+json"},
		{"schema 1", dockerSchema1, ""},
		{"both", `{"manifests":[],"config":{}}`, ""},
		{"nothing", `{"schemaVersion":2}`, ""},
		{"not json", "blablabla", ""},
		{"empty", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := manifest.DetectMediaType([]byte(fill(tc.body))); got != tc.want {
				t.Errorf("DetectMediaType = %q, want %q", got, tc.want)
			}
		})
	}
}

// countingReader yields an endless stream of '{' bytes and counts what it hands out.
type countingReader struct{ n int64 }

func (r *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = '{'
	}
	r.n += int64(len(p))
	return len(p), nil
}

func TestRead(t *testing.T) {
	t.Run("exactly MaxSize", func(t *testing.T) {
		body, err := manifest.Read(io.LimitReader(&countingReader{}, manifest.MaxSize))
		if err != nil || len(body) != manifest.MaxSize {
			t.Errorf("Read = %d bytes, %v; want %d bytes", len(body), err, manifest.MaxSize)
		}
	})
	t.Run("MaxSize+1", func(t *testing.T) {
		_, err := manifest.Read(io.LimitReader(&countingReader{}, manifest.MaxSize+1))
		if !errors.Is(err, manifest.ErrTooLarge) {
			t.Errorf("Read: %v, want ErrTooLarge", err)
		}
	})
	t.Run("endless body stops after MaxSize+1 bytes", func(t *testing.T) {
		r := &countingReader{}
		_, err := manifest.Read(r)
		if !errors.Is(err, manifest.ErrTooLarge) {
			t.Errorf("Read: %v, want ErrTooLarge", err)
		}
		if r.n > manifest.MaxSize+1 {
			t.Errorf("Read consumed %d bytes, want at most %d", r.n, manifest.MaxSize+1)
		}
	})
	t.Run("small", func(t *testing.T) {
		body, err := manifest.Read(strings.NewReader(ociImage))
		if err != nil || string(body) != ociImage {
			t.Errorf("Read = %q, %v", body, err)
		}
	})
	t.Run("reader error", func(t *testing.T) {
		boom := errors.New("connection reset")
		_, err := manifest.Read(io.MultiReader(strings.NewReader("{"), iotestErrReader{boom}))
		if !errors.Is(err, boom) {
			t.Errorf("Read: %v, want %v", err, boom)
		}
	})
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

// BenchmarkParseWorstCase parses a MaxSize manifest made of hundreds of thousands of
// annotations, the costliest shape for the decoder and the duplicate-key walk.
func BenchmarkParseWorstCase(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"schemaVersion":2,"config":{"mediaType":"a/b","digest":"` + dCfg + `","size":1},"annotations":{`)
	for i := 0; sb.Len() < manifest.MaxSize-100; i++ {
		if i > 0 {
			sb.WriteString(",")
		}
		fmt.Fprintf(&sb, `"k%d":"v"`, i)
	}
	sb.WriteString("}}")
	body := []byte(sb.String())
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := manifest.Parse("", body); err != nil {
			b.Fatal(err)
		}
	}
}

package manifest_test

import "strings"

// Digests used by the fixtures, written out as pushed manifests carry them.
const (
	dCfg     = "sha256:b79606fb3afea5bd1609ed40b622142f1c98125abcfe89a76a661b0e8e343910"
	dLayer1  = "sha256:77ea7eee3d80b1a38f83906dd3048e2689457eb90e18a7d12f839c5ae37106a2"
	dLayer2  = "sha256:95cf1a2e1698fe3ca1fcc3f653119146b271d0b62e487ec264441e886a11bd06"
	dForeign = "sha256:656771905e1ef731f65cd0a0d9fb061238380a1a012e6abdf846ecc7d2ea36fd"
	dAmd64   = "sha256:5861314d7fccb39c2192173240eab44fa35ca66426201ca2acd0630a6258dd51"
	dArm64   = "sha256:f69162950f235e3cdbbad33f1f912d1a504be90d8a37d002c735d6f3e3882265"
	dAtt     = "sha256:f745a15153c4dacf0ea4bbf57265e73283941f8335939b33c693975315cf5916"
	dSubject = "sha256:a9491f4c1bf7b0cffbadcba2db8f028e4b3f2867cb59e1f3a0bc1968f3c51242"
	dHelmCfg = "sha256:3de95e00f259737fef4df81e9db3d8f02c04d37f6de0cad12b22fc624393e0ed"
	dChart   = "sha256:cc57fc1903e444cf6a726490b43b27ee9f87facc037f86872201847c565b45fb"
	dSBOM    = "sha256:98f3ae1ef67113d8140d4f6cb8d2830070e21ea48f091be519659846c771a374"
	dEmpty   = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a" // "{}"
	dSHA512  = "sha512:a4abd4448c49562d828115d13a1fccea927f52b4d5459297f8b43e42da89238bc13626e43dcb38ddb082488927ec904fb42057443983e88585179d50551afe62"
)

// fill replaces @name placeholders in a fixture with the digests above, so that variants in
// the tables stay short.
var fill = strings.NewReplacer(
	"@cfg", dCfg, "@l1", dLayer1, "@l2", dLayer2, "@foreign", dForeign, "@amd64", dAmd64,
	"@arm64", dArm64, "@att", dAtt, "@subject", dSubject, "@helmcfg", dHelmCfg,
	"@chart", dChart, "@sbom", dSBOM, "@empty", dEmpty, "@sha512", dSHA512,
).Replace

// ociImage is an OCI image manifest as buildkit pushes it.
const ociImage = `{
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.manifest.v1+json",
  "config": {
    "mediaType": "application/vnd.oci.image.config.v1+json",
    "digest": "@cfg",
    "size": 1472
  },
  "layers": [
    {
      "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
      "digest": "@l1",
      "size": 3623807
    },
    {
      "mediaType": "application/vnd.oci.image.layer.v1.tar+zstd",
      "digest": "@l2",
      "size": 93
    }
  ],
  "annotations": {
    "org.opencontainers.image.created": "2024-05-01T10:00:00Z",
    "org.opencontainers.image.source": "https://github.com/example/app"
  }
}`

// ociImageNoMediaType is an OCI image manifest without the (optional) mediaType field, as
// the distribution-spec conformance suite pushes one.
const ociImageNoMediaType = `{
	"schemaVersion": 2,
	"config": {
		"mediaType": "application/vnd.oci.image.config.v1+json",
		"digest": "@cfg",
		"size": 1472,
		"newUnspecifiedField": "aGVsbG8gd29ybGQ="
	},
	"layers": []
}`

// ociIndex is a multi-platform OCI index with a buildkit attestation entry.
const ociIndex = `{
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.index.v1+json",
  "manifests": [
    {
      "mediaType": "application/vnd.oci.image.manifest.v1+json",
      "digest": "@amd64",
      "size": 1052,
      "platform": {"architecture": "amd64", "os": "linux"}
    },
    {
      "mediaType": "application/vnd.oci.image.manifest.v1+json",
      "digest": "@arm64",
      "size": 1052,
      "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}
    },
    {
      "mediaType": "application/vnd.oci.image.manifest.v1+json",
      "digest": "@att",
      "size": 566,
      "annotations": {
        "vnd.docker.reference.digest": "@amd64",
        "vnd.docker.reference.type": "attestation-manifest"
      },
      "platform": {"architecture": "unknown", "os": "unknown"}
    }
  ]
}`

// ociIndexNoMediaType is an index without mediaType, recognisable by its manifests.
const ociIndexNoMediaType = `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"@amd64","size":1052}]}`

// dockerManifest is a Docker image manifest, schema 2, as docker push sends it.
const dockerManifest = `{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
   "config": {
      "mediaType": "application/vnd.docker.container.image.v1+json",
      "size": 7023,
      "digest": "@cfg"
   },
   "layers": [
      {
         "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
         "size": 32654,
         "digest": "@l1"
      },
      {
         "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
         "size": 16724,
         "digest": "@l2"
      }
   ]
}`

// dockerForeign is a Windows image whose base layer is a foreign layer fetched from urls.
const dockerForeign = `{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
   "config": {
      "mediaType": "application/vnd.docker.container.image.v1+json",
      "size": 1871,
      "digest": "@cfg"
   },
   "layers": [
      {
         "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
         "size": 1652262400,
         "digest": "@foreign",
         "urls": ["https://mcr.microsoft.com/v2/windows/servercore/blobs/@foreign"]
      },
      {
         "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
         "size": 1202,
         "digest": "@l1"
      }
   ]
}`

// dockerList is a Docker manifest list.
const dockerList = `{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
   "manifests": [
      {
         "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
         "size": 7143,
         "digest": "@amd64",
         "platform": {"architecture": "amd64", "os": "linux"}
      },
      {
         "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
         "size": 7682,
         "digest": "@arm64",
         "platform": {"architecture": "ppc64le", "os": "linux", "features": ["sse4"]}
      }
   ]
}`

// artifactWithType is an OCI 1.1 artifact (an SBOM) with artifactType, the empty config and
// a subject, as oras attach pushes it.
const artifactWithType = `{
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.manifest.v1+json",
  "artifactType": "application/spdx+json",
  "config": {
    "mediaType": "application/vnd.oci.empty.v1+json",
    "digest": "@empty",
    "size": 2,
    "data": "e30="
  },
  "layers": [
    {
      "mediaType": "application/spdx+json",
      "digest": "@sbom",
      "size": 48211,
      "annotations": {"org.opencontainers.image.title": "sbom.spdx.json"}
    }
  ],
  "subject": {
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "digest": "@subject",
    "size": 1052
  },
  "annotations": {"org.opencontainers.image.created": "2024-05-01T10:00:00Z"}
}`

// artifactWithConfigType is a Helm chart: the artifact type is in config.mediaType.
const artifactWithConfigType = `{
  "schemaVersion": 2,
  "config": {
    "mediaType": "application/vnd.cncf.helm.config.v1+json",
    "digest": "@helmcfg",
    "size": 117
  },
  "layers": [
    {
      "mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
      "digest": "@chart",
      "size": 3842
    }
  ],
  "annotations": {"org.opencontainers.image.title": "mychart", "org.opencontainers.image.version": "0.1.0"}
}`

// signatureIndex is an OCI index used as an artifact with a subject (distribution-spec
// conformance "refsIndexArtifact").
const signatureIndex = `{
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.index.v1+json",
  "artifactType": "application/vnd.food.stand",
  "manifests": [
    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "@amd64", "size": 600},
    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "@sha512", "size": 610}
  ],
  "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "@subject", "size": 1052}
}`

// dockerSchema1 is a signed Docker schema 1 manifest (abridged), which Berth refuses.
const dockerSchema1 = `{
   "schemaVersion": 1,
   "name": "library/hello-world",
   "tag": "latest",
   "architecture": "amd64",
   "fsLayers": [{"blobSum": "@l1"}],
   "history": [{"v1Compatibility": "{\"id\":\"e45a5af57b00862e5ef5782a9925979a02ba2b12dff832fd0991335f4a11e5c5\"}"}],
   "signatures": [{"header": {"alg": "ES256"}, "signature": "XREm0L8WNn27Ga_iE_vRnTxVMhhYY0Zst_FfkKopg6gWSoTOZTuW4rK0fg_IqnKkEKlbD83tD46LKEGi5aIVFg", "protected": "eyJmb3JtYXRMZW5ndGgiOjY2Mjh9"}]
}`

// Package archive writes images of the local image store to a tar and reads
// them back: `berth save` and `berth load`.
//
// It may import the standard library, go-digest, image-spec,
// klauspost/compress, the manifest parser and runner/image, runner/layers
// and runner/pull; never the registry server, storage, auth or the
// container runtime (depcheck_test.go).
//
// # What Save writes
//
// One uncompressed tar that is at once an OCI image layout and a
// docker-archive, as `docker save` writes it since Docker 25, so that
// `docker load`, `podman load` and skopeo (docker-archive: and
// oci-archive:) all read it:
//
//	blobs/sha256/<hex>   every manifest, config and layer blob of the saved
//	                     images, once each, exactly as stored (as pulled:
//	                     layers stay compressed, the manifest keeps its digest)
//	index.json           OCI index: one entry per saved tag, naming the image
//	                     manifest (or the multi-platform index, when the tag
//	                     names one whose every platform is stored: then every
//	                     platform's blobs are in blobs/ too), with annotations
//	                       io.containerd.image.name   = host/name:tag
//	                       org.opencontainers.image.ref.name = tag
//	                     and the platform; an image saved by ID gets one entry
//	                     without annotations
//	manifest.json        docker-archive: [{"Config": "blobs/sha256/<config>",
//	                     "RepoTags": ["host/name:tag", ...], "Layers":
//	                     ["blobs/sha256/<layer blob>", ...]}], one item per image
//	                     (RepoTags null for an image saved by ID); for an
//	                     index, the image of it for this host, if any
//	oci-layout           {"imageLayoutVersion": "1.0.0"}
//	repositories         {"host/name": {"tag": "<hex of the top layer blob>"}},
//	                     for docker's loader of old archives
//
// The docker-archive part points at the compressed layer blobs rather than
// at uncompressed copies: docker load and containers/image (podman,
// skopeo) decompress a layer they find compressed (gzip or zstd) and check
// it against the config's diff_ids, so nothing is stored twice and the
// layout part keeps the pulled digests. RepoTags keep the full reference
// (registry host included), so that loading the archive names the images
// as they were named here.
//
// # What Load reads
//
// A docker-archive (manifest.json; Docker 25+'s blobs/ form and older
// ones with <id>/layer.tar and <id>.json, including the relative symlinks
// such as <id>/layer.tar -> ../<hex>/layer.tar or ../../blobs/sha256/<hex>
// that docker and skopeo write), an OCI image layout (index.json; image
// manifests, and indexes, of which the image for the host's platform, or
// Options.Platform, is loaded; an index whose every platform's blobs are
// in the archive is kept whole, for push and save, its other platforms'
// blobs stored but not unpacked), or both in one tar; uncompressed, gzip or
// zstd (told by the first bytes). When both are there, the images of
// index.json are loaded as they are (their manifests keep their digests)
// and named by their io.containerd.image.name annotations and by the
// RepoTags of manifest.json items with the same config; items of
// manifest.json no index entry covers are loaded from manifest.json.
//
// A docker-archive item has no manifest: Load writes an OCI image manifest
// for it (config application/vnd.oci.image.config.v1+json, layers
// application/vnd.oci.image.layer.v1.tar, +gzip or +zstd as their first
// bytes say), the media types Docker 25 writes for a saved image and the
// only ones that can describe a zstd layer. Its bytes depend only on the
// config and the layers, so loading the same archive twice gives the same
// manifest digest.
//
// The tar is read once, as a stream. A regular file at
// blobs/<alg>/<hex> goes straight into the blob store, hashed on the way:
// one that does not hash to its name fails the load at once. Any other
// file is spooled to a numbered file of a temporary directory under the
// state directory (never memory), since manifest.json usually comes last;
// the directory goes when Load returns. Then every blob the images need is
// checked against its descriptor (digest and size), every layer is
// unpacked into the layer store, which checks it against its diff_id and
// applies the layer store's path rules to its entries, and only when every
// image is complete are they recorded (image.Store Record) with their
// names. A failure records nothing: blobs and layers stored meanwhile stay
// unnamed until `berth image prune`.
//
// # Path safety
//
// Nothing is extracted by path: an entry is kept under its name in a map,
// and names are resolved in that map, following the archive's own
// symlinks. A path is judged by where it lands, not by whether it has
// "..": an entry, a symlink target or a hardlink target that lands outside
// the archive (a ".." climbing above its root, an absolute path) is
// refused, and so is an entry under a name an earlier entry made a
// symlink, a hardlink or a file (a write through a link), an entry that
// appears twice, a hardlink to anything but an earlier file, device nodes,
// fifos and any other entry type; a truncated tar, and a blob that lies
// about its digest, too. Every refusal names the entry (ErrUnsafeEntry,
// ErrInvalid, ErrDigestMismatch).
package archive

// Package build runs `berth build`: it converts a Dockerfile into a plan
// (runner/build/dockerfile, a pure conversion) and executes the plan's
// steps stage by stage. Every filesystem step (RUN, COPY, ADD, WORKDIR)
// runs in a fresh overlay mount of its parent's layers (layers.Store.Mount)
// with an upper directory of its own, which becomes the step's layer
// (written by layers.WriteUpper as berth commit writes one; the directory
// itself moves into the layer store, image.Store.StoreUpper, instead of
// being extracted again from that stream). RUN runs in Berth's own containers
// (runner/container, with runner/spec's namespaces, capabilities, device
// rules and cgroup), as root unless USER says otherwise, on the host's
// network unless --network none. COPY and ADD read the build context (or
// a stage's or image's layers) through openat2 RESOLVE_IN_ROOT: a "..",
// an absolute path or a symlink pointing anywhere resolves inside the
// context, never outside it; .dockerignore excludes paths from it.
//
// It may import the standard library (net/http fetches ADD's URLs),
// golang.org/x/sys/unix, go-digest, image-spec, runtime-spec (the mounts
// of RUN --mount), Docker's config types, moby/patternmatcher, and
// runner/build/dockerfile, runner/image, runner/layers, runner/container,
// runner/spec and runner/pull; never the registry server or the storage
// drivers (depcheck_test.go).
//
// # Layout
//
//	<state>/build/                    0700
//	  cache/<kk>/<key>.json           one cached step: {"layer": {diffID, digest, mediaType,
//	                                  size}, "step": its history entry}; <key> is the hex
//	                                  sha256 of the parent's key and the step (below), <kk>
//	                                  its first two digits
//	  hashes.json                     the sha256 of build-context files, by absolute path, with
//	                                  the dev, inode, size, mtime and ctime they had: used only
//	                                  while all five still match (the cache key stays the
//	                                  content's hash; a file changed within 100 ms of its hash
//	                                  is not remembered)
//	  tmp/<id>/                       a step in progress: upper/ work/ (the step's layer and
//	                                  overlayfs's work dir), rootfs/ (the overlay mount),
//	                                  src/ (a COPY --from source mount), base/ (the parent's
//	                                  layers, read-only, to leave what did not change out of
//	                                  the layer), add-*/ (an ADD archive being unpacked)
//	  tmp/<id>.lock                   flocked by the build using tmp/<id>; a build removes the
//	                                  slots nobody holds (a crashed build's) when it starts,
//	                                  unmounting what is still mounted below them first
//	  tmp/<id>/mount-<n>[-src]/       a RUN --mount=type=bind source (bound read-only, or a copy
//	                                  for rw), a heredoc script; secrets/ a tmpfs with the step's
//	                                  secrets (never on disk)
//	  mounts/<sha256 of id>/<n>/      a RUN --mount=type=cache cache: instance 0, and 1, 2, ...
//	  mounts/<sha256 of id>/<n>.lock  for sharing=private steps finding it in use; flocked
//	                                  shared (sharing=shared) or exclusive (locked, private)
//	                                  for the step
//	  http/<sha256 of url>/           ADD's download of a URL: data, and meta.json (its digest,
//	                                  ETag and Last-Modified, for revalidation)
//
// # Cache
//
// A step's key hashes its parent's key (a stage starts from "scratch",
// "image <config digest>" or its base stage's last key) and the step with
// its arguments expanded: a RUN's command, environment (build args in
// scope included), user, working directory, network and mounts (a bind's
// source hashed as a COPY's is; never a secret's value nor a cache's
// content); a WORKDIR's path and user; a COPY's or ADD's history line,
// destination, --chown, --chmod and its sources: for a URL, the
// --checksum, else the content's digest; for the build context, a hash
// of every path, type,
// mode, owner, size, content, link target and hardlink group (never
// times); for a stage, that stage's last key; for an image, its ID. A
// hit reuses the layer and prints CACHED; --no-cache runs every step.
//
// Options.CacheFrom are looked in when the local cache misses a step (a
// hit is recorded locally); Options.CacheTo receive the steps once the
// image is recorded (runner/build/registrycache keeps them in a registry
// as one manifest). With Options.SourceDateEpoch the stages' root keys
// carry the epoch, since their layers differ from those of a build
// without it.
//
// # Reproducible builds
//
// With Options.SourceDateEpoch (SOURCE_DATE_EPOCH), the config's created
// time and the new history entries' take its value (the base image's
// entries keep theirs), the layers are written with file times newer
// than it clamped to it (layers.WriteOptions.Clamp), in layers' sorted
// walk with empty owner names, and compressed by image.Store.StoreLayer's
// deterministic gzip: the same context on two state directories gives
// the same manifest digest.
//
// The cache keeps no layers alive by itself: `berth image prune` removes
// the layers and blobs no image names, cache hits included. An entry
// whose layer or blob is gone is a miss, and is removed when looked up.
// A build holds image.Store.Hold from its first step to its record, so a
// prune cannot remove a layer between the hit and the image naming it.
package build

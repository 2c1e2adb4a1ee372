package store

import (
	"github.com/opencontainers/go-digest"
)

// The on-storage layout, the one CNCF Distribution v2 uses (so either can serve
// what the other wrote), plus Berth's referrers index, which Distribution
// ignores because its name starts with "_":
//
//	/docker/registry/v2/
//	├── blobs/<alg>/<hex[0:2]>/<hex>/data          blob and manifest bytes, content-addressed,
//	│                                               shared by all repositories; written only by
//	│                                               moving a verified upload (or manifest) into place
//	└── repositories/<name>/                        <name> may hold slashes: library/debian
//	    ├── _layers/<alg>/<hex>/link                "<alg>:<hex>": the blob is part of this repository
//	    ├── _manifests/
//	    │   ├── revisions/<alg>/<hex>/link          the manifest is part of this repository
//	    │   └── tags/<tag>/
//	    │       ├── current/link                    digest the tag points at now
//	    │       └── index/<alg>/<hex>/link          every digest the tag has pointed at
//	    ├── _uploads/<id>/
//	    │   ├── data                                bytes received so far (private until verified)
//	    │   ├── startedat                           RFC 3339 time the upload began
//	    │   └── hashstates/<alg>/<offset>           hash state after <offset> bytes, so a resumed
//	    │                                           upload never re-reads what it hashed
//	    ├── _referrers/<alg>/<hex>/<alg>/<hex>/descriptor
//	    │                                           (Berth only) subject digest -> referrer digest:
//	    │                                           the referrer's OCI descriptor as JSON
//	    ├── _pulls/<alg>/<hex>                      (Berth only, cached repositories) written when
//	    │                                           the manifest was last pulled, for cache retention
//	    └── _berth/summary                          (Berth only) the tags and what they point at, as
//	                                                JSON, kept at write time for listings (summary.go)
//
// and, beside them, Berth's own state under /docker/registry/v2/_berth/:
// gc/ (garbage collection's interlock, gc.go) and proxy/claims/<alg>/<hex>
// (which process downloads a blob from an upstream, mirror.go).
//
// A repository exists while it has a _manifests directory (Distribution's
// catalog rule). Link files hold the digest string and nothing else.
//
// Paths are built by concatenation, not path.Join: every input (repository
// name, tag, digest, upload id) is validated before it reaches the store,
// and these functions run on every request.
const rootPath = "/docker/registry/v2"

func blobsPath() string        { return rootPath + "/blobs" }
func repositoriesPath() string { return rootPath + "/repositories" }

// blobDataPath is where the bytes of d live.
func blobDataPath(d digest.Digest) string {
	hex := d.Encoded()
	return blobsPath() + "/" + string(d.Algorithm()) + "/" + hex[:2] + "/" + hex + "/data"
}

func repoPath(repo string) string { return repositoriesPath() + "/" + repo }

func layerLinkPath(repo string, d digest.Digest) string {
	return rootPath + "/repositories/" + repo + "/_layers/" + string(d.Algorithm()) + "/" + d.Encoded() + "/link"
}

func manifestsPath(repo string) string { return repoPath(repo) + "/_manifests" }

func revisionDirPath(repo string, d digest.Digest) string {
	return manifestsPath(repo) + "/revisions/" + string(d.Algorithm()) + "/" + d.Encoded()
}

// revisionLinkPath, tagCurrentLinkPath and layerLinkPath, looked up on
// every manifest or blob GET, are built in one concatenation (one
// allocation) rather than from the paths above them.
func revisionLinkPath(repo string, d digest.Digest) string {
	return rootPath + "/repositories/" + repo + "/_manifests/revisions/" + string(d.Algorithm()) + "/" + d.Encoded() + "/link"
}

func tagsPath(repo string) string { return manifestsPath(repo) + "/tags" }

func tagPath(repo, tag string) string { return tagsPath(repo) + "/" + tag }

func tagCurrentLinkPath(repo, tag string) string {
	return rootPath + "/repositories/" + repo + "/_manifests/tags/" + tag + "/current/link"
}

func tagIndexLinkPath(repo, tag string, d digest.Digest) string {
	return tagPath(repo, tag) + "/index/" + string(d.Algorithm()) + "/" + d.Encoded() + "/link"
}

func uploadsPath(repo string) string { return repoPath(repo) + "/_uploads" }

func uploadPath(repo, id string) string { return uploadsPath(repo) + "/" + id }

func uploadDataPath(repo, id string) string { return uploadPath(repo, id) + "/data" }

func uploadStartedAtPath(repo, id string) string {
	return uploadPath(repo, id) + "/startedat"
}

func uploadHashStatePath(repo, id string, alg digest.Algorithm, offset int64) string {
	return uploadPath(repo, id) + "/hashstates/" + string(alg) + "/" + itoa(offset)
}

func summaryPath(repo string) string { return repoPath(repo) + "/_berth/summary" }

func pullsPath(repo string) string { return repoPath(repo) + "/_pulls" }

func pullPath(repo string, d digest.Digest) string {
	return pullsPath(repo) + "/" + string(d.Algorithm()) + "/" + d.Encoded()
}

func claimPath(d digest.Digest) string {
	return rootPath + "/_berth/proxy/claims/" + string(d.Algorithm()) + "/" + d.Encoded()
}

func referrersPath(repo string, subject digest.Digest) string {
	return repoPath(repo) + "/_referrers/" + string(subject.Algorithm()) + "/" + subject.Encoded()
}

func referrerPath(repo string, subject, referrer digest.Digest) string {
	return referrersPath(repo, subject) + "/" + string(referrer.Algorithm()) + "/" + referrer.Encoded() + "/descriptor"
}

// Package proxy is Berth's pull-through cache: repositories served under an
// upstream registry's prefix (docker.io/library/nginx), or named by a
// containerd mirror request's ?ns= parameter, are filled from that upstream
// on demand and kept in the same store as local repositories.
//
// What it promises:
//   - the bytes stored and served are the upstream's, verified against their
//     digest before anyone can pull them from the cache (a manifest keeps its
//     digest and media type);
//   - a blob is downloaded from the upstream once, however many clients ask
//     at once: in one process the first request downloads and streams while
//     the others wait, and across processes over one storage a claim object
//     makes one of them the downloader (a claimant that dies is taken over);
//   - a cached tag is checked with a HEAD once it is older than its
//     upstream's freshness period, a digest never is; when the upstream is
//     unreachable or throttles, what is cached is served (stale tags
//     included) and only what was never cached fails, with 502 or 503.
//
// The registry package calls Resolve for every request that names a
// repository, and Manifest, Blob, StatBlob when a cached repository lacks
// what is asked. Upstream requests go through runner/pull's Client (the token
// flow, redirects to object storage without credentials).
//
// It may import the store, storage, manifest, runner/pull, gc (repository
// globs), go-digest, image-spec, the Prometheus client and golang.org/x/sync;
// never the registry package.
package proxy

// Package registry serves the OCI distribution-spec v1.1 HTTP API (push, pull,
// tags, catalog, referrers) over a storage/store.Store, plus health, readiness
// and Prometheus endpoints and the storage-usage report (/v2/_berth/usage).
//
// Repositories under an upstream's prefix are served by the pull-through
// cache (registry/proxy), which serve resolves for every request naming a
// repository.
//
// It may import the store, manifest, storage, auth, gc and registry/proxy packages,
// gorilla/mux, the Prometheus client and golang.org/x/sys/unix (to poll the
// listen queue); nothing it imports may import it.
package registry

// Package registry serves the OCI distribution-spec v1.1 HTTP API (push, pull,
// tags, catalog, referrers) over a storage/store.Store, plus health, readiness
// and Prometheus endpoints.
//
// It may import the store, manifest and storage packages, gorilla/mux and the
// Prometheus client; nothing below it (store, manifest, storage) may import it.
package registry

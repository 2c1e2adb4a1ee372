// Package pull fetches images from OCI distribution registries for `berth pull` and
// `berth run`: reference parsing, the Docker token flow with credentials from a docker
// config.json (and Login/Logout to maintain it), platform selection from indexes, and
// parallel, verified, resumable layer downloads handed to a caller's consumer.
//
// It may import the standard library, manifest, distribution/reference, go-digest,
// image-spec, golang.org/x/term and golang.org/x/sync; never the registry server, storage or runner/layers
// (the consumer of the layer streams is a callback, see PullOptions.Layer).
package pull

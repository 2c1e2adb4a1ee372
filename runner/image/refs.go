package image

import "github.com/opencontainers/go-digest"

// ReferenceManifests returns, for each reference in the store (the full
// host/name:tag[@digest] form of Image.References), the digest of the
// manifest it was pulled or tagged by: the index of a multi-platform image
// pulled by a reference that named one, else the image manifest. It is what `berth images --digests` and the
// RepoDigests of `berth image inspect` show: the digest the reference can
// be pulled by.
func (s *Store) ReferenceManifests() (map[string]digest.Digest, error) {
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	out := make(map[string]digest.Digest, len(idx.Refs))
	for ref, e := range idx.Refs {
		out[ref] = e.Manifest
		if e.Index != "" {
			out[ref] = e.Index
		}
	}
	return out, nil
}

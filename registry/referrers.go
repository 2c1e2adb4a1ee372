package registry

import (
	"net/http"

	"github.com/gorilla/mux"
	"github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/manifest"
)

// referrers answers GET /v2/<name>/referrers/<digest>[?artifactType=<type>]
// with an OCI image index of the manifests whose subject is digest.
func (reg *Registry) referrers(w http.ResponseWriter, r *http.Request) error {
	vars := mux.Vars(r)
	d, err := manifest.ParseDigest(vars["digest"])
	if err != nil {
		return err
	}
	artifactType := r.URL.Query().Get("artifactType")
	descs, err := reg.store.Referrers(r.Context(), vars["name"], d, artifactType)
	if err != nil {
		return err
	}
	if descs == nil {
		descs = []v1.Descriptor{}
	}
	if artifactType != "" {
		w.Header().Set("Oci-Filters-Applied", "artifactType")
	}
	return writeJSON(w, manifest.MediaTypeOCIIndex, v1.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: manifest.MediaTypeOCIIndex,
		Manifests: descs,
	})
}

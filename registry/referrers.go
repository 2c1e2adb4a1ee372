package registry

import (
	"net/http"

	"github.com/gorilla/mux"
	"github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/manifest"
	"github.com/berth-registry/berth/registry/proxy"
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
	var descs []v1.Descriptor
	if t := target(r); t != nil {
		var res proxy.Result
		descs, res, err = reg.cache.Referrers(r.Context(), t, d, artifactType)
		noteCache(w, res, err)
	} else {
		descs, err = reg.store.Referrers(r.Context(), vars["name"], d, artifactType)
	}
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

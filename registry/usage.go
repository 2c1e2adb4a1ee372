package registry

import (
	"fmt"
	"net/http"

	"github.com/berth-registry/berth/gc"
	"github.com/berth-registry/berth/manifest"
)

// usageHandler returns the handler of GET /v2/_berth/usage[?repositories=GLOB],
// which answers the gc.UsageReport of the repositories matching GLOB (all
// without it) as JSON, from the registry's gc.UsageReporter.
//
// It needs what the catalog needs (registry:catalog:* with tokens, see
// auth.Required): the report names every repository. Reclaimable bytes are
// counted as a collection with Options.GC would count them.
func (reg *Registry) usageHandler() handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		glob := r.URL.Query().Get("repositories")
		if glob != "" {
			if err := gc.ValidateGlob(glob); err != nil {
				return fmt.Errorf("%w: repositories=%q is not a repository glob", manifest.ErrNameInvalid, shorten(glob))
			}
		}
		rep, err := reg.usage.Report(r.Context(), glob)
		if err != nil {
			return fmt.Errorf("computing storage usage: %w", err)
		}
		return writeJSON(w, "application/json", rep)
	}
}

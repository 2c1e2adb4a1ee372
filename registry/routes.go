package registry

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// namePattern matches a repository name, slashes included, permissively: the
// handler adapter validates it with manifest.ValidateName before any handler
// runs, so that a bad name is a 400 NAME_INVALID and not a 404.
const namePattern = "{name:.+}"

// routes builds the router. Every route of the registry is in this function:
//
//	GET                     /v2/                                  base
//	GET, HEAD, DELETE       /v2/<name>/blobs/<digest>             getBlob, deleteBlob
//	POST                    /v2/<name>/blobs/uploads/             startUpload
//	GET, PATCH, PUT, DELETE /v2/<name>/blobs/uploads/<id>         getUpload, patchUpload, finishUpload, cancelUpload
//	GET, HEAD, PUT, DELETE  /v2/<name>/manifests/<reference>      getManifest, putManifest, deleteManifest
//	GET                     /v2/<name>/tags/list                  listTags
//	GET                     /v2/_catalog                          catalog
//	GET                     /v2/_berth/usage                      usageHandler (storage usage, usage.go)
//	GET                     /v2/<name>/referrers/<digest>         referrers
//	GET                     /healthz, /readyz                     healthz, readyz
//	GET                     /metrics                              Prometheus (when Options.Metrics is set)
//
// With an Options.Authorizer, every route but /healthz, /readyz and /metrics
// is authorized (see auth.Required) before its handler runs.
//
// The router matches the path as it was sent (UseEncodedPath) and never
// cleans or redirects it (SkipClean), so "..", "%2e%2e", "%2f" and "//" reach
// the name validation as they are and are refused there; nothing is decoded
// into a name that would pass.
//
// GET and HEAD of a manifest, the hottest requests, are matched without the
// router's regular expressions (fastRouter), exactly as the router matches
// them.
func (reg *Registry) routes(promReg *prometheus.Registry) http.Handler {
	r := mux.NewRouter().UseEncodedPath().SkipClean(true)
	fast := &fastRouter{router: r}

	handle := func(template, path string, hasName bool, methods map[string]handlerFunc) {
		rt := &route{template: template, hasName: hasName, metrics: reg.metrics.forRoute(template),
			open: template == "/healthz" || template == "/readyz" || template == "/metrics"}
		for method, h := range methods {
			handler := reg.serve(rt, h)
			r.Handle(path, handler).Methods(method)
			if template == manifestTemplate && method == http.MethodGet {
				fast.manifestGet = handler
			} else if template == manifestTemplate && method == http.MethodHead {
				fast.manifestHead = handler
			}
		}
	}

	// The manifest route comes first: GET by tag is the hottest request.
	handle(manifestTemplate, "/v2/"+namePattern+"/manifests/{reference}", true, map[string]handlerFunc{
		http.MethodGet:    reg.getManifest,
		http.MethodHead:   reg.getManifest,
		http.MethodPut:    reg.putManifest,
		http.MethodDelete: reg.deleteManifest,
	})
	handle("/v2/{name}/blobs/{digest}", "/v2/"+namePattern+"/blobs/{digest}", true, map[string]handlerFunc{
		http.MethodGet:    reg.getBlob,
		http.MethodHead:   reg.getBlob,
		http.MethodDelete: reg.deleteBlob,
	})
	handle("/v2/{name}/blobs/uploads/", "/v2/"+namePattern+"/blobs/uploads/", true, map[string]handlerFunc{
		http.MethodPost: reg.startUpload,
	})
	handle("/v2/{name}/blobs/uploads/{id}", "/v2/"+namePattern+"/blobs/uploads/{id}", true, map[string]handlerFunc{
		http.MethodGet:    reg.getUpload,
		http.MethodPatch:  reg.patchUpload,
		http.MethodPut:    reg.finishUpload,
		http.MethodDelete: reg.cancelUpload,
	})
	handle("/v2/{name}/tags/list", "/v2/"+namePattern+"/tags/list", true, map[string]handlerFunc{
		http.MethodGet: reg.listTags,
	})
	handle("/v2/{name}/referrers/{digest}", "/v2/"+namePattern+"/referrers/{digest}", true, map[string]handlerFunc{
		http.MethodGet: reg.referrers,
	})
	handle("/v2/_catalog", "/v2/_catalog", false, map[string]handlerFunc{
		http.MethodGet: reg.catalog,
	})
	handle("/v2/_berth/usage", "/v2/_berth/usage", false, map[string]handlerFunc{
		http.MethodGet: reg.usageHandler(),
	})
	handle("/v2/", "/v2/", false, map[string]handlerFunc{
		http.MethodGet:  reg.base,
		http.MethodHead: reg.base,
	})
	handle("/healthz", "/healthz", false, map[string]handlerFunc{
		http.MethodGet:  reg.healthz,
		http.MethodHead: reg.healthz,
	})
	handle("/readyz", "/readyz", false, map[string]handlerFunc{
		http.MethodGet:  reg.readyz,
		http.MethodHead: reg.readyz,
	})
	if promReg != nil {
		metricsHandler := promhttp.HandlerFor(promReg, promhttp.HandlerOpts{})
		handle("/metrics", "/metrics", false, map[string]handlerFunc{
			http.MethodGet: func(w http.ResponseWriter, r *http.Request) error {
				metricsHandler.ServeHTTP(w, r)
				return nil
			},
		})
	}

	notFound := &route{template: "unmatched", metrics: reg.metrics.forRoute("unmatched")}
	r.NotFoundHandler = reg.serve(notFound, func(http.ResponseWriter, *http.Request) error { return errRouteUnknown })
	wrongMethod := &route{template: "method-not-allowed", metrics: reg.metrics.forRoute("method-not-allowed")}
	r.MethodNotAllowedHandler = reg.serve(wrongMethod, func(_ http.ResponseWriter, r *http.Request) error {
		return fmt.Errorf("%w: method %s is not served on this path", errUnsupported, shorten(r.Method))
	})
	return fast
}

// manifestTemplate is the manifest route, the first the router tries.
const manifestTemplate = "/v2/{name}/manifests/{reference}"

// fastRouter serves GET and HEAD of /v2/<name>/manifests/<reference>
// without the router's regular expressions, which took a tenth of the CPU
// time of a manifest GET by tag, and hands every other request to the
// router. Since the manifest route is the router's first, a request that
// matches its template goes to it either way; fastRouter matches as the
// router does and sets the same route variables (mux.SetURLVars is what the
// router itself calls).
type fastRouter struct {
	router                    *mux.Router
	manifestGet, manifestHead http.Handler
}

func (f *fastRouter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := f.manifestGet
	if r.Method == http.MethodHead {
		h = f.manifestHead
	} else if r.Method != http.MethodGet {
		h = nil
	}
	if h != nil {
		if name, ref, ok := matchManifestPath(r.URL.EscapedPath()); ok {
			h.ServeHTTP(w, mux.SetURLVars(r, map[string]string{"name": name, "reference": ref}))
			return
		}
	}
	f.router.ServeHTTP(w, r)
}

// matchManifestPath matches an escaped path against the manifest route,
// "^/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)$" in the router: the
// name is at least one character and, ".+" being greedy, ends at the last
// "/manifests/"; the reference is one or more characters other than '/'.
// Neither holds a newline, which '.' does not match (an escaped path has
// none anyway).
func matchManifestPath(path string) (name, ref string, ok bool) {
	const sep = "/manifests/"
	rest, found := strings.CutPrefix(path, "/v2/")
	if !found {
		return "", "", false
	}
	i := strings.LastIndex(rest, sep)
	if i < 1 {
		return "", "", false
	}
	name, ref = rest[:i], rest[i+len(sep):]
	if ref == "" || strings.ContainsAny(ref, "/\n") || strings.ContainsRune(name, '\n') {
		return "", "", false
	}
	return name, ref, true
}

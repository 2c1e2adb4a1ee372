package registry

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gorilla/mux"
)

// TestManifestFastPathMatchesRouter: matchManifestPath matches exactly the
// paths the router's manifest route matches, with the same variables.
func TestManifestFastPathMatchesRouter(t *testing.T) {
	r := mux.NewRouter().UseEncodedPath().SkipClean(true)
	var got map[string]string
	r.HandleFunc("/v2/"+namePattern+"/manifests/{reference}", func(_ http.ResponseWriter, req *http.Request) {
		got = mux.Vars(req)
	}).Methods(http.MethodGet)
	for _, target := range []string{
		"/v2/a/manifests/b",
		"/v2/a/b/c/manifests/latest",
		"/v2/a/manifests/b/manifests/c",
		"/v2/a/manifests/manifests/manifests/c",
		"/v2/manifests/manifests/x",
		"/v2//manifests/x",
		"/v2///manifests/x",
		"/v2/a/manifests/",
		"/v2/a/manifests/b/",
		"/v2/manifests/x",
		"/v2/a%2Fb/manifests/c",
		"/v2/a/manifests/b%2Fc",
		"/v2/a/manifests/sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"/v2/a/manifests/b/c",
		"/v2/./manifests/x",
		"/v2/../manifests/x",
		"/v2/a/manifests//b",
		"/v2/a/manifests/%0A",
		"/v2/a%0A/manifests/b",
		"/v3/a/manifests/b",
		"/v2/a/_manifests/b",
		"/v2/a/blobs/uploads/manifests/x",
		"/v2/a/manifests/b?x=/manifests/c",
		"/v2/a%20b/manifests/c",
		"/v2/",
		"/x/v2/a/manifests/b",
	} {
		req := httptest.NewRequest(http.MethodGet, "http://h"+target, nil)
		got = nil
		r.ServeHTTP(httptest.NewRecorder(), req)
		name, ref, ok := matchManifestPath(req.URL.EscapedPath())
		switch {
		case ok != (got != nil):
			t.Errorf("%s: fast path matched %v, router %v", target, ok, got != nil)
		case ok && (name != got["name"] || ref != got["reference"]):
			t.Errorf("%s: fast path name %q reference %q, router %q %q", target, name, ref, got["name"], got["reference"])
		}
	}
}

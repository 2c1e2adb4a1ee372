package pull_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types of Docker schema 2 images, for building test content.
const (
	dockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	dockerConfig       = "application/vnd.docker.container.image.v1+json"
	dockerLayerGzip    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	dockerForeignLayer = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	testService        = "test-registry"
)

// testRegistry is just enough of the distribution API for pulls: GET /v2/, manifests by
// tag or digest, blobs with Range support, and optionally Docker token auth with its
// token endpoint at /token. Hooks make it misbehave; logs record what was asked.
type testRegistry struct {
	t   *testing.T
	srv *httptest.Server

	mu        sync.Mutex
	manifests map[string]servedManifest // "repo@tag-or-digest"
	blobs     map[digest.Digest][]byte

	// Token auth: when user is set, /v2/ needs a bearer token from /token, which checks
	// Basic credentials (or the refresh token) and grants the scopes asked for.
	user, password string
	issueRefresh   string            // a refresh token issued with offline_token=true
	tokens         map[string]string // token -> space-separated granted scopes
	// basic switches auth to plain HTTP Basic with user and password.
	basic bool

	// Hooks.
	dropAfter   map[digest.Digest][]int64    // per blob GET, in order: bytes to send before dropping the connection (-1: none)
	ignoreRange bool                         // answer Range requests with the whole blob
	stall       bool                         // at a dropAfter point, stop sending but keep the connection open
	redirect    func(d digest.Digest) string // when set, blob GETs are answered 307 to this URL
	override    map[digest.Digest][]byte     // serve these bytes for a blob instead
	header      map[string]map[string]string // extra response headers by manifest key

	// Logs.
	tokenRequests []tokenRequest
	blobRequests  []servedRequest
	manifestReqs  []servedRequest
}

type servedManifest struct {
	mediaType string
	body      []byte
}

type tokenRequest struct {
	method, user, scope, service, grantType, refreshToken, account string
}

type servedRequest struct {
	path, rangeHeader, authorization string
	served                           int64
}

func newTestRegistry(t *testing.T) *testRegistry {
	r := &testRegistry{
		t:         t,
		manifests: map[string]servedManifest{},
		blobs:     map[digest.Digest][]byte{},
		tokens:    map[string]string{},
		dropAfter: map[digest.Digest][]int64{},
		override:  map[digest.Digest][]byte{},
		header:    map[string]map[string]string{},
	}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

// host is the registry's host:port, a loopback address.
func (r *testRegistry) host() string { return strings.TrimPrefix(r.srv.URL, "http://") }

func (r *testRegistry) requireToken(user, password string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.user, r.password = user, password
}

func (r *testRegistry) challenge(w http.ResponseWriter, scope string) {
	if r.basic {
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
	} else {
		v := fmt.Sprintf(`Bearer realm="%s/token",service="%s"`, r.srv.URL, testService)
		if scope != "" {
			v += fmt.Sprintf(`,scope="%s"`, scope)
		}
		w.Header().Set("WWW-Authenticate", v)
	}
	w.WriteHeader(http.StatusUnauthorized)
	fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
}

// allowed reports whether req may perform scope ("" for GET /v2/). The caller holds r.mu.
func (r *testRegistry) allowed(req *http.Request, scope string) bool {
	if r.user == "" {
		return true
	}
	if r.basic {
		u, p, ok := req.BasicAuth()
		return ok && u == r.user && p == r.password
	}
	tok, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	granted, ok := r.tokens[tok]
	if !ok {
		return false
	}
	if scope == "" {
		return true
	}
	for _, s := range strings.Fields(granted) {
		if s == scope {
			return true
		}
	}
	return false
}

func (r *testRegistry) serve(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path == "/token" {
		r.serveToken(w, req)
		return
	}
	rest, ok := strings.CutPrefix(req.URL.Path, "/v2/")
	if !ok || req.Method != http.MethodGet {
		http.NotFound(w, req)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if rest == "" {
		if !r.allowed(req, "") {
			r.challenge(w, "")
			return
		}
		fmt.Fprint(w, "{}")
		return
	}
	if i := strings.LastIndex(rest, "/manifests/"); i > 0 {
		repo, ref := rest[:i], rest[i+len("/manifests/"):]
		scope := "repository:" + repo + ":pull"
		if !r.allowed(req, scope) {
			r.challenge(w, scope)
			return
		}
		key := repo + "@" + ref
		m, ok := r.manifests[key]
		r.manifestReqs = append(r.manifestReqs, servedRequest{path: req.URL.Path, authorization: req.Header.Get("Authorization")})
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}`)
			return
		}
		w.Header().Set("Content-Type", m.mediaType)
		w.Header().Set("Docker-Content-Digest", digest.FromBytes(m.body).String())
		for k, v := range r.header[key] {
			w.Header().Set(k, v)
		}
		w.Write(m.body)
		return
	}
	if i := strings.LastIndex(rest, "/blobs/"); i > 0 {
		repo, ref := rest[:i], rest[i+len("/blobs/"):]
		scope := "repository:" + repo + ":pull"
		if !r.allowed(req, scope) {
			r.challenge(w, scope)
			return
		}
		d := digest.Digest(ref)
		if r.redirect != nil {
			r.blobRequests = append(r.blobRequests, servedRequest{path: req.URL.Path, rangeHeader: req.Header.Get("Range"), authorization: req.Header.Get("Authorization")})
			http.Redirect(w, req, r.redirect(d), http.StatusTemporaryRedirect)
			return
		}
		r.serveBlob(w, req, d)
		return
	}
	http.NotFound(w, req)
}

// serveBlob serves blob d with Range support and the drop hooks. The caller holds r.mu.
func (r *testRegistry) serveBlob(w http.ResponseWriter, req *http.Request, d digest.Digest) {
	log := servedRequest{path: req.URL.Path, rangeHeader: req.Header.Get("Range"), authorization: req.Header.Get("Authorization")}
	content, ok := r.blobs[d]
	if o, has := r.override[d]; has {
		content, ok = o, true
	}
	if !ok {
		r.blobRequests = append(r.blobRequests, log)
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}`)
		return
	}
	start := int64(0)
	status := http.StatusOK
	if rg := req.Header.Get("Range"); rg != "" && !r.ignoreRange {
		s, ok := strings.CutPrefix(rg, "bytes=")
		s, _ = strings.CutSuffix(s, "-")
		n, err := strconv.ParseInt(s, 10, 64)
		if !ok || err != nil || n >= int64(len(content)) {
			r.blobRequests = append(r.blobRequests, log)
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return
		}
		start, status = n, http.StatusPartialContent
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", n, len(content)-1, len(content)))
	}
	body := content[start:]
	w.Header().Set("Accept-Ranges", "bytes")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("Docker-Content-Digest", d.String())
	drop := int64(-1)
	if q := r.dropAfter[d]; len(q) > 0 {
		drop, r.dropAfter[d] = q[0], q[1:]
	}
	w.WriteHeader(status)
	if drop >= 0 && drop < int64(len(body)) {
		w.Write(body[:drop])
		log.served = drop
		r.blobRequests = append(r.blobRequests, log)
		w.(http.Flusher).Flush()
		if r.stall {
			r.mu.Unlock()
			<-req.Context().Done() // until the client gives up on the connection
			r.mu.Lock()            // for serve's deferred Unlock
			return
		}
		panic(http.ErrAbortHandler) // closes the connection mid-body; serve's deferred Unlock still runs
	}
	n, _ := w.Write(body)
	log.served = int64(n)
	r.blobRequests = append(r.blobRequests, log)
}

func (r *testRegistry) serveToken(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	tr := tokenRequest{method: req.Method}
	var scopes []string
	authenticated := false
	switch req.Method {
	case http.MethodGet:
		q := req.URL.Query()
		tr.service, tr.account = q.Get("service"), q.Get("account")
		scopes = q["scope"]
		if u, p, ok := req.BasicAuth(); ok {
			tr.user = u
			if u != r.user || p != r.password {
				r.tokenRequests = append(r.tokenRequests, tr)
				w.WriteHeader(http.StatusUnauthorized)
				fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}`)
				return
			}
			authenticated = true
		}
	case http.MethodPost:
		req.ParseForm()
		tr.service, tr.grantType, tr.refreshToken = req.PostForm.Get("service"), req.PostForm.Get("grant_type"), req.PostForm.Get("refresh_token")
		scopes = strings.Fields(req.PostForm.Get("scope"))
		if tr.grantType != "refresh_token" || r.issueRefresh == "" || tr.refreshToken != r.issueRefresh {
			r.tokenRequests = append(r.tokenRequests, tr)
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"invalid_grant"}`)
			return
		}
		authenticated = true
	}
	tr.scope = strings.Join(scopes, " ")
	r.tokenRequests = append(r.tokenRequests, tr)
	if tr.service != testService {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	tok := fmt.Sprintf("token-%d", len(r.tokens)+1)
	granted := ""
	if authenticated {
		granted = tr.scope // anonymous requests get a token without access
	}
	r.tokens[tok] = granted
	resp := map[string]any{"token": tok, "expires_in": 300}
	if authenticated && req.URL.Query().Get("offline_token") == "true" && r.issueRefresh != "" {
		resp["refresh_token"] = r.issueRefresh
	}
	json.NewEncoder(w).Encode(resp)
}

// blobLog returns the requests for blob d served so far.
func (r *testRegistry) blobLog(d digest.Digest) []servedRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []servedRequest
	for _, b := range r.blobRequests {
		if strings.HasSuffix(b.path, "/"+d.String()) {
			out = append(out, b)
		}
	}
	return out
}

// testLayer is a layer as the test builds it.
type testLayer struct {
	blob   []byte // what the registry serves
	tar    []byte // uncompressed
	desc   ocispec.Descriptor
	diffID digest.Digest
}

// makeLayer builds a tar with one file of size pseudo-random bytes from seed, compressed
// with gzip or not, described with mediaType.
func makeLayer(t *testing.T, seed int64, size int, gz bool, mediaType string) testLayer {
	t.Helper()
	content := make([]byte, size)
	rand.New(rand.NewSource(seed)).Read(content)
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("file-%d", seed), Mode: 0o644, Size: int64(size), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write(content)
	tw.Close()
	l := testLayer{tar: tb.Bytes(), diffID: digest.FromBytes(tb.Bytes())}
	l.blob = l.tar
	if gz {
		var gb bytes.Buffer
		zw := gzip.NewWriter(&gb)
		zw.Write(l.tar)
		zw.Close()
		l.blob = gb.Bytes()
	}
	if mediaType == "" {
		mediaType = ocispec.MediaTypeImageLayer
		if gz {
			mediaType = ocispec.MediaTypeImageLayerGzip
		}
	}
	l.desc = ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(l.blob), Size: int64(len(l.blob))}
	return l
}

// testImage is an image manifest as the test builds it.
type testImage struct {
	desc     ocispec.Descriptor // of the manifest
	manifest []byte
	config   []byte
	cfgDesc  ocispec.Descriptor
	layers   []testLayer
}

// imageSpec says how to build a test image.
type imageSpec struct {
	platform string // "linux/arm64/v8"
	layers   []testLayer
	docker   bool            // Docker schema 2 media types
	diffIDs  []digest.Digest // nil: those of the layers
}

// addImage builds an image, stores its blobs and manifest (by digest) in repo and returns it.
func (r *testRegistry) addImage(repo string, s imageSpec) testImage {
	r.t.Helper()
	parts := strings.Split(s.platform, "/")
	cfg := ocispec.Image{Platform: ocispec.Platform{OS: parts[0], Architecture: parts[1]}}
	if len(parts) == 3 {
		cfg.Variant = parts[2]
	}
	cfg.RootFS.Type = "layers"
	cfg.RootFS.DiffIDs = s.diffIDs
	if s.diffIDs == nil {
		cfg.RootFS.DiffIDs = []digest.Digest{}
		for _, l := range s.layers {
			cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.diffID)
		}
	}
	config, _ := json.Marshal(cfg)
	img := testImage{config: config, layers: s.layers}
	img.cfgDesc = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(config), Size: int64(len(config))}
	mt := ocispec.MediaTypeImageManifest
	if s.docker {
		img.cfgDesc.MediaType, mt = dockerConfig, dockerManifest
	}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: mt, Config: img.cfgDesc, Layers: []ocispec.Descriptor{}}
	for _, l := range s.layers {
		m.Layers = append(m.Layers, l.desc)
	}
	img.manifest, _ = json.Marshal(m)
	img.desc = ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(img.manifest), Size: int64(len(img.manifest))}
	if len(parts) >= 2 {
		img.desc.Platform = &ocispec.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.blobs[img.cfgDesc.Digest] = config
	for _, l := range s.layers {
		if len(l.desc.URLs) == 0 {
			r.blobs[l.desc.Digest] = l.blob
		}
	}
	r.manifests[repo+"@"+img.desc.Digest.String()] = servedManifest{mediaType: mt, body: img.manifest}
	return img
}

// addIndex stores an index of entries in repo under its digest and returns its descriptor.
func (r *testRegistry) addIndex(repo string, docker bool, entries ...ocispec.Descriptor) ocispec.Descriptor {
	mt := ocispec.MediaTypeImageIndex
	if docker {
		mt = dockerManifestList
	}
	body, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: mt, Manifests: entries})
	d := ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(body), Size: int64(len(body))}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.manifests[repo+"@"+d.Digest.String()] = servedManifest{mediaType: mt, body: body}
	return d
}

// tag points tag of repo at the manifest stored under d.
func (r *testRegistry) tag(repo, tag string, d digest.Digest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.manifests[repo+"@"+tag] = r.manifests[repo+"@"+d.String()]
}

// setManifest stores body under repo@ref as is (for corrupt content).
func (r *testRegistry) setManifest(repo, ref, mediaType string, body []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.manifests[repo+"@"+ref] = servedManifest{mediaType: mediaType, body: body}
}

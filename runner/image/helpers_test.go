package image_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	specsv "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/registry"
	"github.com/berth-registry/berth/runner/image"
	"github.com/berth-registry/berth/storage/inmemory"
	"github.com/berth-registry/berth/storage/store"
)

// needRoot skips t unless it runs as root: the layer store chowns, makes
// whiteout devices and sets trusted xattrs.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the layer store chowns, makes whiteout devices and sets trusted xattrs")
	}
}

// testRegistry is Berth's own registry over in-memory storage, on a
// loopback httptest server, counting blob GETs by digest and optionally
// corrupting blobs.
type testRegistry struct {
	t    *testing.T
	srv  *httptest.Server
	Host string

	mu       sync.Mutex
	blobGets map[digest.Digest]int
	corrupt  map[digest.Digest]bool // serve these blobs with their first byte flipped
}

func newTestRegistry(t *testing.T) *testRegistry {
	t.Helper()
	reg, err := registry.New(registry.Options{Store: store.New(inmemory.New(), store.Options{})})
	if err != nil {
		t.Fatal(err)
	}
	r := &testRegistry{t: t, blobGets: map[digest.Digest]int{}, corrupt: map[digest.Digest]bool{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if i := strings.Index(req.URL.Path, "/blobs/sha256:"); i >= 0 && req.Method == http.MethodGet {
			d := digest.Digest(req.URL.Path[i+len("/blobs/"):])
			r.mu.Lock()
			r.blobGets[d]++
			bad := r.corrupt[d]
			r.mu.Unlock()
			if bad {
				rec := httptest.NewRecorder()
				reg.ServeHTTP(rec, req)
				body := rec.Body.Bytes()
				if len(body) > 0 {
					body[0] ^= 0xff
				}
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				w.WriteHeader(rec.Code)
				w.Write(body)
				return
			}
		}
		reg.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	r.Host = strings.TrimPrefix(r.srv.URL, "http://")
	return r
}

func (r *testRegistry) gets(d digest.Digest) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.blobGets[d]
}

func (r *testRegistry) pushBlob(repo string, b []byte) ocispec.Descriptor {
	r.t.Helper()
	d := digest.FromBytes(b)
	resp, err := http.Post(fmt.Sprintf("%s/v2/%s/blobs/uploads/?digest=%s", r.srv.URL, repo, d), "application/octet-stream", bytes.NewReader(b))
	if err != nil {
		r.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		r.t.Fatalf("push blob %s: %s", d, resp.Status)
	}
	return ocispec.Descriptor{Digest: d, Size: int64(len(b))}
}

func (r *testRegistry) putManifest(repo, ref, mediaType string, b []byte) {
	r.t.Helper()
	req, err := http.NewRequest(http.MethodPut, fmt.Sprintf("%s/v2/%s/manifests/%s", r.srv.URL, repo, ref), bytes.NewReader(b))
	if err != nil {
		r.t.Fatal(err)
	}
	req.Header.Set("Content-Type", mediaType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		r.t.Fatalf("put manifest %s:%s: %s", repo, ref, resp.Status)
	}
}

// testLayer is a layer to push: its blob and diff_id.
type testLayer struct {
	blob   []byte
	diffID digest.Digest
}

// entry is one tar entry of a test layer.
type entry struct {
	name, body, link string
	dir              bool
	mode             int64
}

func makeLayer(t *testing.T, entries ...entry) testLayer {
	t.Helper()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, ModTime: time.Unix(1700000000, 0), Typeflag: tar.TypeReg, Size: int64(len(e.body))}
		switch {
		case e.dir:
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		case e.link != "":
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, e.link, 0
		}
		if e.mode != 0 {
			h.Mode = e.mode
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw.Bytes())
	zw.Close()
	return testLayer{blob: gz.Bytes(), diffID: digest.FromBytes(raw.Bytes())}
}

// push pushes an image of layers with cfg (its rootfs filled in) to
// repo:tag and returns the config digest (the image ID).
func (r *testRegistry) push(repo, tag string, cfg ocispec.Image, ls ...testLayer) digest.Digest {
	r.t.Helper()
	d, _ := r.pushImage(repo, tag, cfg, ls...)
	return d
}

// pushImage is push, returning the manifest's descriptor too; tag ""
// pushes the manifest by digest.
func (r *testRegistry) pushImage(repo, tag string, cfg ocispec.Image, ls ...testLayer) (digest.Digest, ocispec.Descriptor) {
	r.t.Helper()
	cfg.RootFS = ocispec.RootFS{Type: "layers"}
	if cfg.OS == "" {
		cfg.Platform = ocispec.Platform{OS: "linux", Architecture: "amd64"}
	}
	m := ocispec.Manifest{Versioned: specsv.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest}
	for _, l := range ls {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.diffID)
		d := r.pushBlob(repo, l.blob)
		d.MediaType = ocispec.MediaTypeImageLayerGzip
		m.Layers = append(m.Layers, d)
	}
	cb, err := json.Marshal(cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	m.Config = r.pushBlob(repo, cb)
	m.Config.MediaType = ocispec.MediaTypeImageConfig
	mb, err := json.Marshal(m)
	if err != nil {
		r.t.Fatal(err)
	}
	if tag == "" {
		tag = digest.FromBytes(mb).String()
	}
	r.putManifest(repo, tag, ocispec.MediaTypeImageManifest, mb)
	return m.Config.Digest, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(mb), Size: int64(len(mb))}
}

// Layers shared by the tests.
func baseLayer(t *testing.T) testLayer {
	return makeLayer(t,
		entry{name: "etc/", dir: true},
		entry{name: "etc/passwd", body: "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"},
		entry{name: "etc/group", body: "root:x:0:\nusers:x:100:app\n"},
		entry{name: "app/", dir: true},
		entry{name: "app/a.txt", body: "v1\n"},
		entry{name: "app/gone.txt", body: "deleted above\n"},
		entry{name: "bin/", dir: true},
		entry{name: "bin/sh", body: "#!fake\n", mode: 0o755},
	)
}

func topLayer(t *testing.T, content string) testLayer {
	return makeLayer(t,
		entry{name: "app/", dir: true},
		entry{name: "app/a.txt", body: content},
		entry{name: "app/.wh.gone.txt"},
		entry{name: "app/link", link: "a.txt"},
	)
}

func testConfig() ocispec.Image {
	return ocispec.Image{Config: ocispec.ImageConfig{
		Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"cat a.txt"}, WorkingDir: "/app", User: "app",
	}}
}

func openStore(t *testing.T) *image.Store {
	t.Helper()
	s, err := image.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// noCreds points the pull at an empty docker config.
func noCreds(t *testing.T) string {
	t.Helper()
	p := t.TempDir() + "/config.json"
	if err := os.WriteFile(p, []byte(`{"auths":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

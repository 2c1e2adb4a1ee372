package registry_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// apiCase is one request against the seeded registry. Every case in the
// table must leave storage untouched: the driver is walked before and after.
type apiCase struct {
	name   string
	req    req
	status int
	code   string                     // OCI error code, for error answers with a body
	check  func(t *testing.T, r resp) // more checks on a response
}

const repo = "library/alpine"

// seeded is what TestAPI seeds the registry with.
type seeded struct {
	img      image
	referrer blob   // a manifest whose subject is img.manifest
	upload   string // an upload in progress in repo, holding 10 bytes
}

func seed(t *testing.T, e *env) seeded {
	var s seeded
	s.img = e.pushImage(repo, "latest", 1)
	subject := s.img.manifest.desc(v1.MediaTypeImageManifest)
	s.referrer = imageManifest(t, s.img.config, &subject, "application/vnd.example.sbom", s.img.layer)
	if r := e.pushManifest(repo, s.referrer.digest.String(), v1.MediaTypeImageManifest, s.referrer.data); r.status != http.StatusCreated {
		t.Fatalf("pushing referrer: %d %s", r.status, r.body)
	}
	r := e.do(req{method: "POST", path: "/v2/" + repo + "/blobs/uploads/"})
	wantStatus(t, r, http.StatusAccepted)
	s.upload = r.header.Get("Docker-Upload-UUID")
	r = e.do(req{method: "PATCH", path: r.header.Get("Location"), body: strings.NewReader("0123456789")})
	wantStatus(t, r, http.StatusAccepted)
	return s
}

func TestAPI(t *testing.T) {
	e := newEnv(t)
	s := seed(t, e)
	layer, cfg, man := s.img.layer, s.img.config, s.img.manifest
	missing := digest.FromString("missing")
	missing512 := digest.SHA512.FromString("missing")
	uploadPath := "/v2/" + repo + "/blobs/uploads/" + s.upload
	unknownUpload := "/v2/" + repo + "/blobs/uploads/6f1ee1d6-0c5b-4c0a-9d55-3a8a0b0c1e2f"
	ociManifest := map[string]string{"Content-Type": v1.MediaTypeImageManifest}

	cases := []apiCase{
		// Base, probes, routing.
		{name: "base", req: req{method: "GET", path: "/v2/"}, status: 200, check: bodyIs("{}")},
		{name: "base HEAD", req: req{method: "HEAD", path: "/v2/"}, status: 200},
		{name: "base POST", req: req{method: "POST", path: "/v2/"}, status: 405, code: "UNSUPPORTED"},
		{name: "healthz", req: req{method: "GET", path: "/healthz"}, status: 200},
		{name: "readyz", req: req{method: "GET", path: "/readyz"}, status: 200},
		{name: "metrics off", req: req{method: "GET", path: "/metrics"}, status: 404, code: "NOT_FOUND"},
		{name: "unknown path", req: req{method: "GET", path: "/nope"}, status: 404, code: "NOT_FOUND"},
		{name: "repository alone", req: req{method: "GET", path: "/v2/" + repo}, status: 404, code: "NOT_FOUND"},
		{name: "encoded traversal matches no route", req: req{method: "GET", path: "/v2/..%2f..%2fetc%2fpasswd"}, status: 404, code: "NOT_FOUND"},
		{name: "blobs without digest", req: req{method: "GET", path: "/v2/" + repo + "/blobs/"}, status: 404, code: "NOT_FOUND"},
		{name: "PATCH manifest", req: req{method: "PATCH", path: "/v2/" + repo + "/manifests/latest"}, status: 405, code: "UNSUPPORTED"},
		{name: "POST blob", req: req{method: "POST", path: "/v2/" + repo + "/blobs/" + layer.digest.String()}, status: 405, code: "UNSUPPORTED"},
		{name: "PUT tags", req: req{method: "PUT", path: "/v2/" + repo + "/tags/list"}, status: 405, code: "UNSUPPORTED"},
		{name: "DELETE catalog", req: req{method: "DELETE", path: "/v2/_catalog"}, status: 405, code: "UNSUPPORTED"},
		{name: "POST referrers", req: req{method: "POST", path: "/v2/" + repo + "/referrers/" + man.digest.String()}, status: 405, code: "UNSUPPORTED"},
		{name: "PUT uploads collection", req: req{method: "PUT", path: "/v2/" + repo + "/blobs/uploads/"}, status: 405, code: "UNSUPPORTED"},

		// Blobs.
		{name: "blob GET", req: req{method: "GET", path: "/v2/" + repo + "/blobs/" + layer.digest.String()}, status: 200,
			check: all(bodyIs(string(layer.data)), blobHeaders(layer, len(layer.data)))},
		{name: "blob HEAD", req: req{method: "HEAD", path: "/v2/" + repo + "/blobs/" + layer.digest.String()}, status: 200,
			check: all(bodyIs(""), blobHeaders(layer, len(layer.data)))},
		{name: "blob unknown", req: req{method: "GET", path: "/v2/" + repo + "/blobs/" + missing.String()}, status: 404, code: "BLOB_UNKNOWN",
			check: headerIs("Cache-Control", "")},
		{name: "blob unknown sha512", req: req{method: "GET", path: "/v2/" + repo + "/blobs/" + missing512.String()}, status: 404, code: "BLOB_UNKNOWN"},
		{name: "blob unknown HEAD", req: req{method: "HEAD", path: "/v2/" + repo + "/blobs/" + missing.String()}, status: 404, check: bodyIs("")},
		{name: "blob of another repository", req: req{method: "GET", path: "/v2/library/other/blobs/" + layer.digest.String()}, status: 404, code: "BLOB_UNKNOWN"},
		{name: "blob DELETE disabled", req: req{method: "DELETE", path: "/v2/" + repo + "/blobs/" + layer.digest.String()}, status: 405, code: "UNSUPPORTED"},
		{name: "blob range", req: blobRange(layer, "bytes=10-19"), status: 206,
			check: all(bodyIs(string(layer.data[10:20])), headerIs("Content-Range", "bytes 10-19/1000"), headerIs("Content-Length", "10"))},
		{name: "blob range open", req: blobRange(layer, "bytes=990-"), status: 206,
			check: all(bodyIs(string(layer.data[990:])), headerIs("Content-Range", "bytes 990-999/1000"))},
		{name: "blob range suffix", req: blobRange(layer, "bytes=-5"), status: 206,
			check: all(bodyIs(string(layer.data[995:])), headerIs("Content-Range", "bytes 995-999/1000"))},
		{name: "blob range suffix longer than blob", req: blobRange(layer, "bytes=-5000"), status: 206,
			check: all(bodyIs(string(layer.data)), headerIs("Content-Range", "bytes 0-999/1000"))},
		{name: "blob range end clipped", req: blobRange(layer, "bytes=995-5000"), status: 206,
			check: all(bodyIs(string(layer.data[995:])), headerIs("Content-Range", "bytes 995-999/1000"))},
		{name: "blob range past end", req: blobRange(layer, "bytes=1000-"), status: 416, code: "RANGE_INVALID",
			check: headerIs("Content-Range", "bytes */1000")},
		{name: "blob range empty suffix", req: blobRange(layer, "bytes=-0"), status: 416, code: "RANGE_INVALID",
			check: headerIs("Content-Range", "bytes */1000")},
		{name: "blob multi-range served whole", req: blobRange(layer, "bytes=0-1,5-6"), status: 200, check: bodyIs(string(layer.data))},
		{name: "blob malformed range served whole", req: blobRange(layer, "bytes=abc"), status: 200, check: bodyIs(string(layer.data))},
		{name: "blob inverted range refused", req: blobRange(layer, "bytes=9-2"), status: 416, code: "RANGE_INVALID",
			check: headerIs("Content-Range", "bytes */1000")},
		{name: "blob signed range served whole", req: blobRange(layer, "bytes=+1-2"), status: 200, check: bodyIs(string(layer.data))},
		{name: "blob other unit served whole", req: blobRange(layer, "items=0-1"), status: 200, check: bodyIs(string(layer.data))},
		{name: "blob If-Range mismatch served whole", req: req{method: "GET", path: "/v2/" + repo + "/blobs/" + layer.digest.String(),
			header: map[string]string{"Range": "bytes=0-1", "If-Range": `"sha256:other"`}}, status: 200, check: bodyIs(string(layer.data))},
		{name: "blob If-Range match", req: req{method: "GET", path: "/v2/" + repo + "/blobs/" + layer.digest.String(),
			header: map[string]string{"Range": "bytes=0-1", "If-Range": `"` + layer.digest.String() + `"`}}, status: 206, check: bodyIs(string(layer.data[:2]))},

		// Digests.
		{name: "blob digest not hex", req: req{method: "GET", path: "/v2/" + repo + "/blobs/sha256:xyz"}, status: 400, code: "DIGEST_INVALID"},
		{name: "blob digest short", req: req{method: "GET", path: "/v2/" + repo + "/blobs/sha256:abcd"}, status: 400, code: "DIGEST_INVALID"},
		{name: "blob digest uppercase", req: req{method: "GET", path: "/v2/" + repo + "/blobs/" + strings.ToUpper(layer.digest.String())}, status: 400, code: "DIGEST_INVALID"},
		{name: "blob digest md5", req: req{method: "GET", path: "/v2/" + repo + "/blobs/md5:d41d8cd98f00b204e9800998ecf8427e"}, status: 400, code: "DIGEST_INVALID"},
		{name: "blob digest sha384", req: req{method: "GET", path: "/v2/" + repo + "/blobs/" + digest.SHA384.FromString("x").String()}, status: 400, code: "DIGEST_INVALID"},
		{name: "blob digest no algorithm", req: req{method: "GET", path: "/v2/" + repo + "/blobs/" + layer.digest.Encoded()}, status: 400, code: "DIGEST_INVALID"},
		{name: "blob digest escaped colon", req: req{method: "GET", path: "/v2/" + repo + "/blobs/sha256%3A" + layer.digest.Encoded()}, status: 400, code: "DIGEST_INVALID"},
		{name: "blob digest traversal", req: req{method: "GET", path: "/v2/" + repo + "/blobs/sha256:..%2f..%2fx"}, status: 400, code: "DIGEST_INVALID"},
		{name: "manifest digest invalid", req: req{method: "GET", path: "/v2/" + repo + "/manifests/sha256:short"}, status: 400, code: "DIGEST_INVALID"},
		{name: "referrers digest invalid", req: req{method: "GET", path: "/v2/" + repo + "/referrers/latest"}, status: 400, code: "DIGEST_INVALID"},
		{name: "monolithic digest invalid", req: req{method: "POST", path: "/v2/" + repo + "/blobs/uploads/?digest=sha256:nope", body: strings.NewReader("x")},
			status: 400, code: "DIGEST_INVALID"},
		{name: "monolithic digest empty", req: req{method: "POST", path: "/v2/" + repo + "/blobs/uploads/?digest=", body: strings.NewReader("x")},
			status: 400, code: "DIGEST_INVALID"},
		{name: "monolithic digest mismatch", req: req{method: "POST", path: "/v2/" + repo + "/blobs/uploads/?digest=" + missing.String(), body: strings.NewReader("x")},
			status: 400, code: "DIGEST_INVALID"},
		{name: "monolithic sha512 mismatch", req: req{method: "POST", path: "/v2/" + repo + "/blobs/uploads/?digest=" + missing512.String(), body: strings.NewReader("x")},
			status: 400, code: "DIGEST_INVALID"},
		{name: "mount digest invalid", req: req{method: "POST", path: "/v2/" + repo + "/blobs/uploads/?mount=sha256:nope&from=library/other"}, status: 400, code: "DIGEST_INVALID"},
		{name: "mount from invalid", req: req{method: "POST", path: "/v2/library/new/blobs/uploads/?mount=" + layer.digest.String() + "&from=Library/Alpine"}, status: 400, code: "NAME_INVALID"},
		{name: "mount from traversal", req: req{method: "POST", path: "/v2/library/new/blobs/uploads/?mount=" + layer.digest.String() + "&from=library/alpine/../x"}, status: 400, code: "NAME_INVALID"},

		// Uploads.
		{name: "upload status", req: req{method: "GET", path: uploadPath}, status: 204,
			check: all(headerIs("Range", "0-9"), headerIs("Location", uploadPath), headerIs("Docker-Upload-UUID", s.upload))},
		{name: "upload unknown GET", req: req{method: "GET", path: unknownUpload}, status: 404, code: "BLOB_UPLOAD_UNKNOWN"},
		{name: "upload unknown PATCH", req: req{method: "PATCH", path: unknownUpload, body: strings.NewReader("x")}, status: 404, code: "BLOB_UPLOAD_UNKNOWN"},
		{name: "upload unknown PUT", req: req{method: "PUT", path: unknownUpload + "?digest=" + missing.String(), body: strings.NewReader("x")}, status: 404, code: "BLOB_UPLOAD_UNKNOWN"},
		{name: "upload unknown DELETE", req: req{method: "DELETE", path: unknownUpload}, status: 404, code: "BLOB_UPLOAD_UNKNOWN"},
		{name: "upload id not a uuid", req: req{method: "PATCH", path: "/v2/" + repo + "/blobs/uploads/not-an-id", body: strings.NewReader("x")}, status: 404, code: "BLOB_UPLOAD_UNKNOWN"},
		{name: "upload id uppercase", req: req{method: "GET", path: "/v2/" + repo + "/blobs/uploads/" + strings.ToUpper(s.upload)}, status: 404, code: "BLOB_UPLOAD_UNKNOWN"},
		{name: "upload id traversal", req: req{method: "GET", path: "/v2/" + repo + "/blobs/uploads/..%2f..%2f_layers"}, status: 404, code: "BLOB_UPLOAD_UNKNOWN"},
		{name: "upload of another repository", req: req{method: "GET", path: "/v2/library/other/blobs/uploads/" + s.upload}, status: 404, code: "BLOB_UPLOAD_UNKNOWN"},
		{name: "upload chunk out of order", req: req{method: "PATCH", path: uploadPath, header: map[string]string{"Content-Range": "20-24"},
			body: strings.NewReader("abcde")}, status: 416, code: "RANGE_INVALID", check: all(headerIs("Range", "0-9"), headerIs("Location", uploadPath))},
		{name: "upload chunk length disagrees", req: req{method: "PATCH", path: uploadPath, header: map[string]string{"Content-Range": "10-14", "Content-Length": "3"},
			body: strings.NewReader("abc")}, status: 416, code: "RANGE_INVALID", check: all(headerIs("Range", "0-9"), headerIs("Location", uploadPath))},
		{name: "upload chunk range inverted", req: req{method: "PATCH", path: uploadPath, header: map[string]string{"Content-Range": "14-10"},
			body: strings.NewReader("abc")}, status: 416, code: "RANGE_INVALID"},
		{name: "upload chunk range malformed", req: req{method: "PATCH", path: uploadPath, header: map[string]string{"Content-Range": "ten-14"},
			body: strings.NewReader("abc")}, status: 400, code: "BLOB_UPLOAD_INVALID"},
		{name: "upload finish without digest", req: req{method: "PUT", path: uploadPath}, status: 400, code: "DIGEST_INVALID"},
		{name: "upload finish bad digest", req: req{method: "PUT", path: uploadPath + "?digest=sha256:1234"}, status: 400, code: "DIGEST_INVALID"},
		{name: "upload final chunk out of order", req: req{method: "PUT", path: uploadPath + "?digest=" + missing.String(),
			header: map[string]string{"Content-Range": "3-5"}, body: strings.NewReader("abc")}, status: 416, code: "RANGE_INVALID",
			check: headerIs("Range", "0-9")},

		// Manifests.
		{name: "manifest by tag", req: req{method: "GET", path: "/v2/" + repo + "/manifests/latest"}, status: 200,
			check: all(bodyIs(string(man.data)), manifestHeaders(man))},
		{name: "manifest by digest", req: req{method: "GET", path: "/v2/" + repo + "/manifests/" + man.digest.String()}, status: 200,
			check: all(bodyIs(string(man.data)), manifestHeaders(man))},
		{name: "manifest HEAD", req: req{method: "HEAD", path: "/v2/" + repo + "/manifests/latest"}, status: 200,
			check: all(bodyIs(""), manifestHeaders(man))},
		{name: "manifest unknown tag", req: req{method: "GET", path: "/v2/" + repo + "/manifests/nope"}, status: 404, code: "MANIFEST_UNKNOWN"},
		{name: "manifest unknown tag HEAD", req: req{method: "HEAD", path: "/v2/" + repo + "/manifests/nope"}, status: 404, check: bodyIs("")},
		{name: "manifest unknown digest", req: req{method: "GET", path: "/v2/" + repo + "/manifests/" + missing.String()}, status: 404, code: "MANIFEST_UNKNOWN"},
		{name: "manifest blob is not a manifest", req: req{method: "GET", path: "/v2/" + repo + "/manifests/" + layer.digest.String()}, status: 404, code: "MANIFEST_UNKNOWN"},
		{name: "manifest unknown repository", req: req{method: "GET", path: "/v2/library/other/manifests/latest"}, status: 404, code: "MANIFEST_UNKNOWN"},
		{name: "manifest bad tag", req: req{method: "GET", path: "/v2/" + repo + "/manifests/-bad"}, status: 404, code: "MANIFEST_UNKNOWN"},
		{name: "manifest tag too long", req: req{method: "GET", path: "/v2/" + repo + "/manifests/" + strings.Repeat("t", 129)}, status: 404, code: "MANIFEST_UNKNOWN"},
		{name: "manifest tag dot-dot", req: req{method: "GET", path: "/v2/" + repo + "/manifests/.."}, status: 404, code: "MANIFEST_UNKNOWN"},
		{name: "blob digest dot-dot", req: req{method: "GET", path: "/v2/" + repo + "/blobs/.."}, status: 400, code: "DIGEST_INVALID"},
		{name: "manifest tag escaped", req: req{method: "GET", path: "/v2/" + repo + "/manifests/a%2fb"}, status: 404, code: "MANIFEST_UNKNOWN"},
		{name: "manifest PUT bad tag", req: req{method: "PUT", path: "/v2/" + repo + "/manifests/.bad", header: ociManifest,
			body: bytes.NewReader(man.data)}, status: 400, code: "MANIFEST_INVALID"},
		{name: "manifest PUT tag too long", req: req{method: "PUT", path: "/v2/" + repo + "/manifests/" + strings.Repeat("t", 129), header: ociManifest,
			body: bytes.NewReader(man.data)}, status: 400, code: "MANIFEST_INVALID"},
		{name: "manifest PUT digest mismatch", req: req{method: "PUT", path: "/v2/" + repo + "/manifests/" + missing.String(), header: ociManifest,
			body: bytes.NewReader(man.data)}, status: 400, code: "DIGEST_INVALID"},
		{name: "manifest PUT bad digest", req: req{method: "PUT", path: "/v2/" + repo + "/manifests/sha256:totallywrong", header: ociManifest,
			body: bytes.NewReader(man.data)}, status: 400, code: "DIGEST_INVALID"},
		{name: "manifest PUT missing blob", req: req{method: "PUT", path: "/v2/" + repo + "/manifests/broken", header: ociManifest,
			body: bytes.NewReader(imageManifest(t, newBlob([]byte("not pushed")), nil, "", layer).data)}, status: 400, code: "MANIFEST_BLOB_UNKNOWN"},
		{name: "manifest PUT missing layer", req: req{method: "PUT", path: "/v2/" + repo + "/manifests/broken", header: ociManifest,
			body: bytes.NewReader(imageManifest(t, cfg, nil, "", layer, newBlob([]byte("not pushed"))).data)}, status: 400, code: "MANIFEST_BLOB_UNKNOWN"},
		{name: "manifest PUT blob of another repository", req: req{method: "PUT", path: "/v2/library/other/manifests/x", header: ociManifest,
			body: bytes.NewReader(man.data)}, status: 400, code: "MANIFEST_BLOB_UNKNOWN"},
		{name: "index PUT missing child", req: req{method: "PUT", path: "/v2/" + repo + "/manifests/idx", header: map[string]string{"Content-Type": v1.MediaTypeImageIndex},
			body: bytes.NewReader(indexOf(t, newBlob([]byte(`{"not":"pushed"}`))).data)}, status: 400, code: "MANIFEST_BLOB_UNKNOWN"},
		{name: "manifest PUT media type disagrees", req: req{method: "PUT", path: "/v2/" + repo + "/manifests/x", header: map[string]string{"Content-Type": v1.MediaTypeImageIndex},
			body: bytes.NewReader(man.data)}, status: 400, code: "MANIFEST_INVALID"},
		{name: "manifest PUT image and index", req: req{method: "PUT", path: "/v2/" + repo + "/manifests/x", header: ociManifest,
			body: bytes.NewReader(imageAndIndex(t, cfg, man))}, status: 400, code: "MANIFEST_INVALID"},
		{name: "manifest PUT not JSON", req: req{method: "PUT", path: "/v2/" + repo + "/manifests/x", header: ociManifest,
			body: strings.NewReader("{")}, status: 400, code: "MANIFEST_INVALID"},
		{name: "manifest PUT empty", req: req{method: "PUT", path: "/v2/" + repo + "/manifests/x", header: ociManifest}, status: 400, code: "MANIFEST_INVALID"},
		{name: "manifest PUT schema 1", req: req{method: "PUT", path: "/v2/" + repo + "/manifests/x",
			header: map[string]string{"Content-Type": "application/vnd.docker.distribution.manifest.v1+prettyjws"},
			body:   strings.NewReader(`{"schemaVersion":1,"name":"library/alpine","tag":"x","fsLayers":[]}`)}, status: 400, code: "MANIFEST_INVALID"},
		{name: "manifest PUT too large by Content-Length", req: req{method: "PUT", path: "/v2/" + repo + "/manifests/x", header: ociManifest,
			body: bytes.NewReader(make([]byte, 4<<20+1))}, status: 413, code: "MANIFEST_INVALID"},
		{name: "manifest DELETE disabled by tag", req: req{method: "DELETE", path: "/v2/" + repo + "/manifests/latest"}, status: 405, code: "UNSUPPORTED"},
		{name: "manifest DELETE disabled by digest", req: req{method: "DELETE", path: "/v2/" + repo + "/manifests/" + man.digest.String()}, status: 405, code: "UNSUPPORTED"},

		// Tags and catalog.
		{name: "tags", req: req{method: "GET", path: "/v2/" + repo + "/tags/list"}, status: 200,
			check: all(jsonIs(`{"name":"library/alpine","tags":["latest"]}`), headerIs("Link", ""))},
		{name: "tags n=0", req: req{method: "GET", path: "/v2/" + repo + "/tags/list?n=0"}, status: 200,
			check: all(jsonIs(`{"name":"library/alpine","tags":[]}`), headerIs("Link", ""))},
		{name: "tags after last", req: req{method: "GET", path: "/v2/" + repo + "/tags/list?last=latest"}, status: 200,
			check: jsonIs(`{"name":"library/alpine","tags":[]}`)},
		{name: "tags unknown repository", req: req{method: "GET", path: "/v2/library/other/tags/list"}, status: 404, code: "NAME_UNKNOWN"},
		{name: "tags n not a number", req: req{method: "GET", path: "/v2/" + repo + "/tags/list?n=ten"}, status: 400, code: "PAGINATION_NUMBER_INVALID"},
		{name: "tags n negative", req: req{method: "GET", path: "/v2/" + repo + "/tags/list?n=-1"}, status: 400, code: "PAGINATION_NUMBER_INVALID"},
		{name: "tags n empty", req: req{method: "GET", path: "/v2/" + repo + "/tags/list?n="}, status: 400, code: "PAGINATION_NUMBER_INVALID"},
		{name: "tags n beyond int64 is clamped", req: req{method: "GET", path: "/v2/" + repo + "/tags/list?n=99999999999999999999999"}, status: 200,
			check: all(jsonIs(`{"name":"library/alpine","tags":["latest"]}`), headerIs("Link", ""))},
		{name: "tags n hugely negative", req: req{method: "GET", path: "/v2/" + repo + "/tags/list?n=-99999999999999999999999"}, status: 400, code: "PAGINATION_NUMBER_INVALID"},
		{name: "catalog n beyond int64 is clamped", req: req{method: "GET", path: "/v2/_catalog?n=99999999999999999999999"}, status: 200, check: jsonIs(`{"repositories":["library/alpine"]}`)},
		{name: "catalog", req: req{method: "GET", path: "/v2/_catalog"}, status: 200, check: jsonIs(`{"repositories":["library/alpine"]}`)},
		{name: "catalog n=0", req: req{method: "GET", path: "/v2/_catalog?n=0"}, status: 200, check: jsonIs(`{"repositories":[]}`)},
		{name: "catalog n not a number", req: req{method: "GET", path: "/v2/_catalog?n=1e3"}, status: 400, code: "PAGINATION_NUMBER_INVALID"},

		// Referrers.
		{name: "referrers", req: req{method: "GET", path: "/v2/" + repo + "/referrers/" + man.digest.String()}, status: 200,
			check: all(headerIs("Content-Type", v1.MediaTypeImageIndex), headerIs("OCI-Filters-Applied", ""), referrersAre(s.referrer.digest))},
		{name: "referrers filtered in", req: req{method: "GET", path: "/v2/" + repo + "/referrers/" + man.digest.String() + "?artifactType=application/vnd.example.sbom"}, status: 200,
			check: all(headerIs("OCI-Filters-Applied", "artifactType"), referrersAre(s.referrer.digest))},
		{name: "referrers filtered out", req: req{method: "GET", path: "/v2/" + repo + "/referrers/" + man.digest.String() + "?artifactType=application/vnd.example.other"}, status: 200,
			check: all(headerIs("OCI-Filters-Applied", "artifactType"), referrersAre())},
		{name: "referrers of unknown subject", req: req{method: "GET", path: "/v2/" + repo + "/referrers/" + missing.String()}, status: 200,
			check: all(headerIs("Content-Type", v1.MediaTypeImageIndex), referrersAre())},
		{name: "referrers of unknown repository", req: req{method: "GET", path: "/v2/library/other/referrers/" + man.digest.String()}, status: 200,
			check: referrersAre()},
	}

	// Every hostile or invalid name, on every route that takes a name,
	// is NAME_INVALID and writes nothing.
	for _, name := range badNames {
		for _, c := range []struct {
			method, path string
			body         []byte
		}{
			{"GET", "/v2/" + name + "/manifests/latest", nil},
			{"HEAD", "/v2/" + name + "/manifests/latest", nil},
			{"PUT", "/v2/" + name + "/manifests/latest", man.data},
			{"DELETE", "/v2/" + name + "/manifests/latest", nil},
			{"GET", "/v2/" + name + "/blobs/" + layer.digest.String(), nil},
			{"POST", "/v2/" + name + "/blobs/uploads/", nil},
			{"POST", "/v2/" + name + "/blobs/uploads/?digest=" + layer.digest.String(), layer.data},
			{"POST", "/v2/" + name + "/blobs/uploads/?mount=" + layer.digest.String() + "&from=" + repo, nil},
			{"PATCH", "/v2/" + name + "/blobs/uploads/" + s.upload, []byte("abc")},
			{"GET", "/v2/" + name + "/tags/list", nil},
			{"GET", "/v2/" + name + "/referrers/" + man.digest.String(), nil},
		} {
			ac := apiCase{name: "bad name " + c.method + " " + c.path, req: req{method: c.method, path: c.path, header: ociManifest},
				status: 400, code: "NAME_INVALID"}
			if c.body != nil {
				ac.req.body = bytes.NewReader(c.body)
			}
			if c.method == "HEAD" {
				ac.code = ""
			}
			cases = append(cases, ac)
		}
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.snapshot()
			r := e.do(c.req)
			if c.code != "" {
				wantError(t, r, c.status, c.code)
			} else {
				wantStatus(t, r, c.status)
			}
			if c.check != nil {
				c.check(t, r)
			}
			if d := before.diff(e.snapshot()); d != "" {
				t.Errorf("storage changed: %s", d)
			}
		})
	}
}

// badNames are repository names every route refuses, as they appear in a path.
var badNames = []string{
	"Library/alpine",               // uppercase
	"libr%41ry/alpine",             // uppercase, percent-encoded
	"library/../alpine",            // traversal
	"..",                           // traversal to the root
	"library/%2e%2e/alpine",        // encoded traversal
	"%2e%2e",                       // encoded traversal to the root
	"library%2falpine",             // encoded slash
	"library%2Falpine",             // encoded slash, uppercase hex
	"library//alpine",              // empty component
	"/library/alpine",              // leading slash
	"library/alpine/",              // trailing slash
	"library/./alpine",             // dot component
	"library/_x",                   // component starting with a separator
	"library/alpine/_manifests",    // the store's own directories
	"library/alpine/_uploads",      //
	"library/alpine/_layers",       //
	"-library",                     // leading separator
	"library/alpine.",              // trailing separator
	"a%00b",                        // NUL
	"caf%C3%A9",                    // non-ASCII
	"library/alp%20ine",            // space
	strings.Repeat("a", 256),       // too long
	strings.Repeat("abcdefg/", 32), // too long, with components
}

func blobRange(b blob, spec string) req {
	return req{method: "GET", path: "/v2/" + repo + "/blobs/" + b.digest.String(), header: map[string]string{"Range": spec}}
}

func indexOf(t *testing.T, children ...blob) blob {
	idx := v1.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageIndex, Manifests: []v1.Descriptor{}}
	for _, c := range children {
		idx.Manifests = append(idx.Manifests, c.desc(v1.MediaTypeImageManifest))
	}
	return newBlob(mustJSON(t, idx))
}

// imageAndIndex is a body that is both an image manifest and an index.
func imageAndIndex(t *testing.T, config, child blob) []byte {
	return mustJSON(t, map[string]any{
		"schemaVersion": 2,
		"mediaType":     v1.MediaTypeImageManifest,
		"config":        config.desc(configType),
		"layers":        []v1.Descriptor{},
		"manifests":     []v1.Descriptor{child.desc(v1.MediaTypeImageManifest)},
	})
}

func all(checks ...func(*testing.T, resp)) func(*testing.T, resp) {
	return func(t *testing.T, r resp) {
		t.Helper()
		for _, c := range checks {
			c(t, r)
		}
	}
}

func bodyIs(want string) func(*testing.T, resp) {
	return func(t *testing.T, r resp) {
		t.Helper()
		if string(r.body) != want {
			t.Errorf("body %.80q, want %.80q", r.body, want)
		}
	}
}

func headerIs(key, want string) func(*testing.T, resp) {
	return func(t *testing.T, r resp) {
		t.Helper()
		if got := r.header.Get(key); got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
}

func jsonIs(want string) func(*testing.T, resp) {
	return func(t *testing.T, r resp) {
		t.Helper()
		headerIs("Content-Type", "application/json")(t, r)
		var got, w any
		if err := json.Unmarshal(r.body, &got); err != nil {
			t.Fatalf("body %q: %v", r.body, err)
		}
		if err := json.Unmarshal([]byte(want), &w); err != nil {
			t.Fatal(err)
		}
		if g, _ := json.Marshal(got); string(g) != string(mustJSON(t, w)) {
			t.Errorf("body %s, want %s", r.body, want)
		}
	}
}

func blobHeaders(b blob, n int) func(*testing.T, resp) {
	return all(
		headerIs("Docker-Content-Digest", b.digest.String()),
		headerIs("Content-Type", "application/octet-stream"),
		headerIs("ETag", `"`+b.digest.String()+`"`),
		headerIs("Accept-Ranges", "bytes"),
		headerIs("Content-Length", strconv.Itoa(n)),
	)
}

func manifestHeaders(m blob) func(*testing.T, resp) {
	return all(
		headerIs("Docker-Content-Digest", m.digest.String()),
		headerIs("Content-Type", v1.MediaTypeImageManifest),
		headerIs("ETag", `"`+m.digest.String()+`"`),
		headerIs("Content-Length", strconv.Itoa(len(m.data))),
	)
}

// referrersAre checks a referrers answer: an OCI index listing exactly want.
func referrersAre(want ...digest.Digest) func(*testing.T, resp) {
	return func(t *testing.T, r resp) {
		t.Helper()
		var idx struct {
			SchemaVersion int              `json:"schemaVersion"`
			MediaType     string           `json:"mediaType"`
			Manifests     *[]v1.Descriptor `json:"manifests"`
		}
		if err := json.Unmarshal(r.body, &idx); err != nil {
			t.Fatalf("body %q: %v", r.body, err)
		}
		if idx.SchemaVersion != 2 || idx.MediaType != v1.MediaTypeImageIndex || idx.Manifests == nil {
			t.Fatalf("not an OCI index with manifests: %s", r.body)
		}
		var got []digest.Digest
		for _, d := range *idx.Manifests {
			got = append(got, d.Digest)
		}
		if len(got) != len(want) {
			t.Fatalf("referrers %v, want %v", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("referrers %v, want %v", got, want)
			}
		}
	}
}

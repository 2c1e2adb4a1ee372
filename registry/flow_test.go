package registry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/registry"
	"github.com/berth-registry/berth/storage"
	"github.com/berth-registry/berth/storage/inmemory"
)

func TestMonolithicPushAndPull(t *testing.T) {
	e := newEnv(t)
	const name = "library/debian"
	config := newBlob([]byte(`{"architecture":"arm64","os":"linux"}`))
	layer := randomBlob(7, 64<<10)

	// One request: POST with the digest and the body.
	r := e.do(req{method: "POST", path: "/v2/" + name + "/blobs/uploads/?digest=" + layer.digest.String(), body: bytes.NewReader(layer.data)})
	wantStatus(t, r, http.StatusCreated)
	headerIs("Location", "/v2/"+name+"/blobs/"+layer.digest.String())(t, r)
	headerIs("Docker-Content-Digest", layer.digest.String())(t, r)
	headerIs("Content-Length", "0")(t, r)

	// Two requests: POST for a session, PUT with the body.
	r = e.do(req{method: "POST", path: "/v2/" + name + "/blobs/uploads/"})
	wantStatus(t, r, http.StatusAccepted)
	loc, id := r.header.Get("Location"), r.header.Get("Docker-Upload-UUID")
	if loc != "/v2/"+name+"/blobs/uploads/"+id || id == "" {
		t.Fatalf("Location %q, Docker-Upload-UUID %q", loc, id)
	}
	headerIs("Range", "0-0")(t, r)
	headerIs("Content-Length", "0")(t, r)
	r = e.do(req{method: "PUT", path: loc + "?digest=" + config.digest.String(), body: bytes.NewReader(config.data)})
	wantStatus(t, r, http.StatusCreated)
	headerIs("Location", "/v2/"+name+"/blobs/"+config.digest.String())(t, r)

	for _, b := range []blob{config, layer} {
		r = e.head("/v2/" + name + "/blobs/" + b.digest.String())
		wantStatus(t, r, http.StatusOK)
		blobHeaders(b, len(b.data))(t, r)
		r = e.get("/v2/" + name + "/blobs/" + b.digest.String())
		wantStatus(t, r, http.StatusOK)
		if !bytes.Equal(r.body, b.data) {
			t.Fatalf("blob %s came back different", b.digest)
		}
	}

	man := imageManifest(t, config, nil, "", layer)
	r = e.pushManifest(name, "12", v1.MediaTypeImageManifest, man.data)
	wantStatus(t, r, http.StatusCreated)
	headerIs("Location", "/v2/"+name+"/manifests/"+man.digest.String())(t, r)
	headerIs("Docker-Content-Digest", man.digest.String())(t, r)
	headerIs("OCI-Subject", "")(t, r)
	for _, ref := range []string{"12", man.digest.String()} {
		r = e.get("/v2/" + name + "/manifests/" + ref)
		wantStatus(t, r, http.StatusOK)
		manifestHeaders(man)(t, r)
		bodyIs(string(man.data))(t, r)
	}
	jsonIs(`{"name":"library/debian","tags":["12"]}`)(t, e.get("/v2/"+name+"/tags/list"))
	jsonIs(`{"repositories":["library/debian"]}`)(t, e.get("/v2/_catalog"))

	// An index over the image, pushed by digest and then tagged.
	idx := indexOf(t, man)
	r = e.pushManifest(name, idx.digest.String(), v1.MediaTypeImageIndex, idx.data)
	wantStatus(t, r, http.StatusCreated)
	r = e.pushManifest(name, "multi", v1.MediaTypeImageIndex, idx.data)
	wantStatus(t, r, http.StatusCreated)
	r = e.get("/v2/" + name + "/manifests/multi")
	wantStatus(t, r, http.StatusOK)
	headerIs("Content-Type", v1.MediaTypeImageIndex)(t, r)
	headerIs("Docker-Content-Digest", idx.digest.String())(t, r)

	// The empty blob.
	empty := newBlob(nil)
	r = e.do(req{method: "POST", path: "/v2/" + name + "/blobs/uploads/?digest=" + empty.digest.String()})
	wantStatus(t, r, http.StatusCreated)
	r = e.get("/v2/" + name + "/blobs/" + empty.digest.String())
	wantStatus(t, r, http.StatusOK)
	blobHeaders(empty, 0)(t, r)
	wantError(t, e.do(blobRangeIn(name, empty, "bytes=0-")), http.StatusRequestedRangeNotSatisfiable, "RANGE_INVALID")
	wantError(t, e.do(blobRangeIn(name, empty, "bytes=-1")), http.StatusRequestedRangeNotSatisfiable, "RANGE_INVALID")

	noUploadsLeft(t, e.driver)
}

func blobRangeIn(name string, b blob, spec string) req {
	return req{method: "GET", path: "/v2/" + name + "/blobs/" + b.digest.String(), header: map[string]string{"Range": spec}}
}

// noUploadsLeft fails if any upload session is left in storage.
func noUploadsLeft(t *testing.T, d storage.Driver) {
	t.Helper()
	for p := range snapshotOf(t, d) {
		if strings.Contains(p, "/_uploads/") {
			t.Errorf("upload left behind: %s", p)
		}
	}
}

// TestChunkedUploadSurvivesRestart uploads a blob in chunks across three
// registry processes over the same storage (the first two "crash" after a
// chunk), the last also without any saved hash state, and checks that the
// blob verifies and reads back whole.
func TestChunkedUploadSurvivesRestart(t *testing.T) {
	for _, tc := range []struct {
		name          string
		alg           digest.Algorithm
		dropHashState bool
	}{
		{"sha256", digest.SHA256, false},
		{"sha256 without hash state", digest.SHA256, true},
		{"sha512", digest.SHA512, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := inmemory.New()
			const name = "chunked/blob"
			data := randomBlob(3, 300_000).data
			want := tc.alg.FromBytes(data)
			c1, c2, c3 := data[:100_000], data[100_000:250_000], data[250_000:]

			e1 := newEnvOn(t, d)
			r := e1.do(req{method: "POST", path: "/v2/" + name + "/blobs/uploads/", header: map[string]string{"Content-Length": "0"}})
			wantStatus(t, r, http.StatusAccepted)
			loc := r.header.Get("Location")
			r = e1.do(req{method: "PATCH", path: loc, body: bytes.NewReader(c1),
				header: map[string]string{"Content-Range": "0-99999", "Content-Length": "100000", "Content-Type": "application/octet-stream"}})
			wantStatus(t, r, http.StatusAccepted)
			headerIs("Range", "0-99999")(t, r)
			headerIs("Location", loc)(t, r)
			headerIs("Content-Length", "0")(t, r)

			// A new process over the same storage picks the upload up.
			e2 := newEnvOn(t, d)
			r = e2.get(loc)
			wantStatus(t, r, http.StatusNoContent)
			headerIs("Range", "0-99999")(t, r)
			// A chunk without Content-Range is appended where the upload ends.
			r = e2.do(req{method: "PATCH", path: loc, body: bytes.NewReader(c2)})
			wantStatus(t, r, http.StatusAccepted)
			headerIs("Range", "0-249999")(t, r)
			// Resending the first chunk is out of order.
			r = e2.do(req{method: "PATCH", path: loc, body: bytes.NewReader(c1), header: map[string]string{"Content-Range": "0-99999"}})
			wantError(t, r, http.StatusRequestedRangeNotSatisfiable, "RANGE_INVALID")
			headerIs("Range", "0-249999")(t, r)
			headerIs("Location", loc)(t, r)

			if tc.dropHashState {
				for p := range snapshotOf(t, d) {
					if strings.HasSuffix(p, "/hashstates") {
						if err := d.Delete(context.Background(), p); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			e3 := newEnvOn(t, d)
			r = e3.do(req{method: "PUT", path: loc + "?digest=" + want.String(), body: bytes.NewReader(c3),
				header: map[string]string{"Content-Range": "250000-299999"}})
			wantStatus(t, r, http.StatusCreated)
			headerIs("Location", "/v2/"+name+"/blobs/"+want.String())(t, r)
			headerIs("Docker-Content-Digest", want.String())(t, r)

			r = e3.get("/v2/" + name + "/blobs/" + want.String())
			wantStatus(t, r, http.StatusOK)
			if !bytes.Equal(r.body, data) {
				t.Fatal("the blob came back different")
			}
			wantError(t, e3.get(loc), http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN")
			noUploadsLeft(t, d)
		})
	}
}

func TestChunkedUploadWrongDigestDiscardsUpload(t *testing.T) {
	e := newEnv(t)
	r := e.do(req{method: "POST", path: "/v2/a/b/blobs/uploads/"})
	loc := r.header.Get("Location")
	wantStatus(t, e.do(req{method: "PATCH", path: loc, body: strings.NewReader("hello")}), http.StatusAccepted)
	r = e.do(req{method: "PUT", path: loc + "?digest=" + digest.FromString("other").String()})
	wantError(t, r, http.StatusBadRequest, "DIGEST_INVALID")
	wantError(t, e.get(loc), http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN")
	noUploadsLeft(t, e.driver)
}

func TestCrossMount(t *testing.T) {
	e := newEnv(t)
	b := randomBlob(11, 5000)
	e.pushBlob("team/a", b)
	for _, tc := range []struct{ name, to, query string }{
		{"from", "team/b", "?mount=" + b.digest.String() + "&from=team/a"},
		{"automatic", "team/c", "?mount=" + b.digest.String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(req{method: "POST", path: "/v2/" + tc.to + "/blobs/uploads/" + tc.query})
			wantStatus(t, r, http.StatusCreated)
			headerIs("Location", "/v2/"+tc.to+"/blobs/"+b.digest.String())(t, r)
			headerIs("Docker-Content-Digest", b.digest.String())(t, r)
			r = e.get("/v2/" + tc.to + "/blobs/" + b.digest.String())
			wantStatus(t, r, http.StatusOK)
			if !bytes.Equal(r.body, b.data) {
				t.Fatal("mounted blob differs")
			}
		})
	}
	unknown := digest.FromString("never pushed")
	for _, tc := range []struct{ name, query string }{
		{"unknown blob from", "?mount=" + unknown.String() + "&from=team/a"},
		{"unknown blob automatic", "?mount=" + unknown.String()},
		{"blob not in from", "?mount=" + b.digest.String() + "&from=team/empty"},
	} {
		t.Run(tc.name+" falls back to an upload", func(t *testing.T) {
			r := e.do(req{method: "POST", path: "/v2/team/d/blobs/uploads/" + tc.query})
			wantStatus(t, r, http.StatusAccepted)
			loc := r.header.Get("Location")
			if !strings.HasPrefix(loc, "/v2/team/d/blobs/uploads/") || strings.Contains(loc, "?") {
				t.Fatalf("Location %q", loc)
			}
			wantStatus(t, e.get(loc), http.StatusNoContent)
			wantError(t, e.get("/v2/team/d/blobs/"+b.digest.String()), http.StatusNotFound, "BLOB_UNKNOWN")
		})
	}
}

func TestSHA512(t *testing.T) {
	e := newEnv(t)
	const name = "algo/sha512"
	config := blob{data: []byte(`{"os":"linux"}`)}
	config.digest = digest.SHA512.FromBytes(config.data)
	layer := randomBlob(5, 4000)
	layer.digest = digest.SHA512.FromBytes(layer.data)

	e.pushBlob(name, config)
	r := e.do(req{method: "POST", path: "/v2/" + name + "/blobs/uploads/"})
	loc := r.header.Get("Location")
	wantStatus(t, e.do(req{method: "PATCH", path: loc, body: bytes.NewReader(layer.data[:1000])}), http.StatusAccepted)
	r = e.do(req{method: "PUT", path: loc + "?digest=" + layer.digest.String(), body: bytes.NewReader(layer.data[1000:])})
	wantStatus(t, r, http.StatusCreated)
	headerIs("Docker-Content-Digest", layer.digest.String())(t, r)
	r = e.get("/v2/" + name + "/blobs/" + layer.digest.String())
	wantStatus(t, r, http.StatusOK)
	blobHeaders(layer, len(layer.data))(t, r)

	man := imageManifest(t, config, nil, "", layer)
	man.digest = digest.SHA512.FromBytes(man.data)
	r = e.pushManifest(name, man.digest.String(), v1.MediaTypeImageManifest, man.data)
	wantStatus(t, r, http.StatusCreated)
	headerIs("Docker-Content-Digest", man.digest.String())(t, r)
	headerIs("Location", "/v2/"+name+"/manifests/"+man.digest.String())(t, r)
	r = e.get("/v2/" + name + "/manifests/" + man.digest.String())
	wantStatus(t, r, http.StatusOK)
	manifestHeaders(man)(t, r)
	bodyIs(string(man.data))(t, r)
	// The same bytes are also known by their sha256 digest only if pushed so.
	wantError(t, e.get("/v2/"+name+"/manifests/"+digest.FromBytes(man.data).String()), http.StatusNotFound, "MANIFEST_UNKNOWN")
}

func TestReferrers(t *testing.T) {
	e := newEnv(t, withDeletes)
	const name = "app/web"
	img := e.pushImage(name, "v1", 21)
	subject := img.manifest.desc(v1.MediaTypeImageManifest)
	const typeA, typeB = "application/vnd.example.signature", "application/vnd.example.sbom"

	sig := imageManifest(t, img.config, &subject, typeA, img.layer)
	sbom := imageManifest(t, img.config, &subject, typeB)
	idxRef := newBlob(mustJSON(t, v1.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageIndex,
		ArtifactType: typeA, Subject: &subject, Manifests: []v1.Descriptor{subject}}))
	for _, m := range []struct {
		b          blob
		ref, type_ string
	}{{sig, sig.digest.String(), v1.MediaTypeImageManifest}, {sbom, "sbom", v1.MediaTypeImageManifest}, {idxRef, idxRef.digest.String(), v1.MediaTypeImageIndex}} {
		r := e.pushManifest(name, m.ref, m.type_, m.b.data)
		wantStatus(t, r, http.StatusCreated)
		headerIs("OCI-Subject", img.manifest.digest.String())(t, r)
	}
	// A referrer may come before its subject.
	ghost := v1.Descriptor{MediaType: v1.MediaTypeImageManifest, Digest: digest.FromString("later"), Size: 10}
	early := imageManifest(t, img.config, &ghost, typeA)
	r := e.pushManifest(name, early.digest.String(), v1.MediaTypeImageManifest, early.data)
	wantStatus(t, r, http.StatusCreated)
	headerIs("OCI-Subject", ghost.Digest.String())(t, r)

	sorted := func(ds ...digest.Digest) []digest.Digest { slices.Sort(ds); return ds }
	refs := func(query string) ([]digest.Digest, resp) {
		r := e.get("/v2/" + name + "/referrers/" + img.manifest.digest.String() + query)
		wantStatus(t, r, http.StatusOK)
		headerIs("Content-Type", v1.MediaTypeImageIndex)(t, r)
		var idx v1.Index
		if err := json.Unmarshal(r.body, &idx); err != nil {
			t.Fatal(err)
		}
		var got []digest.Digest
		for _, d := range idx.Manifests {
			got = append(got, d.Digest)
			if d.Digest == sbom.digest && (d.ArtifactType != typeB || d.Size != int64(len(sbom.data)) || d.MediaType != v1.MediaTypeImageManifest) {
				t.Errorf("sbom descriptor %+v", d)
			}
		}
		return sorted(got...), r
	}
	got, r := refs("")
	if want := sorted(sig.digest, sbom.digest, idxRef.digest); !slices.Equal(got, want) {
		t.Fatalf("referrers %v, want %v", got, want)
	}
	headerIs("OCI-Filters-Applied", "")(t, r)
	got, r = refs("?artifactType=" + typeA)
	if want := sorted(sig.digest, idxRef.digest); !slices.Equal(got, want) {
		t.Fatalf("filtered referrers %v, want %v", got, want)
	}
	headerIs("OCI-Filters-Applied", "artifactType")(t, r)

	r = e.get("/v2/" + name + "/referrers/" + ghost.Digest.String())
	referrersAre(early.digest)(t, r)

	// Deleting a referrer takes it out of the list.
	wantStatus(t, e.do(req{method: "DELETE", path: "/v2/" + name + "/manifests/" + sig.digest.String()}), http.StatusAccepted)
	got, _ = refs("")
	if want := sorted(sbom.digest, idxRef.digest); !slices.Equal(got, want) {
		t.Fatalf("referrers after delete %v, want %v", got, want)
	}
}

var linkRE = regexp.MustCompile(`^<(/v2/[^>]+)>; rel="next"$`)

// pages follows Link headers from first and returns every entry and the
// number of pages.
func pages(t *testing.T, e *env, first, field string, n int) ([]string, int) {
	t.Helper()
	var all []string
	count := 0
	for next := first; next != ""; count++ {
		if count > 100 {
			t.Fatal("too many pages")
		}
		r := e.get(next)
		wantStatus(t, r, http.StatusOK)
		var body map[string]json.RawMessage
		if err := json.Unmarshal(r.body, &body); err != nil {
			t.Fatal(err)
		}
		var entries []string
		if err := json.Unmarshal(body[field], &entries); err != nil || entries == nil {
			t.Fatalf("%s: %s is not a list (%v)", r.body, field, err)
		}
		if len(entries) > n {
			t.Fatalf("page of %d entries, n=%d", len(entries), n)
		}
		all = append(all, entries...)
		next = ""
		if link := r.header.Get("Link"); link != "" {
			m := linkRE.FindStringSubmatch(link)
			if m == nil {
				t.Fatalf("Link %q", link)
			}
			if !strings.HasSuffix(m[1], "&n="+strconv.Itoa(n)) {
				t.Errorf("Link %q does not keep n=%d", link, n)
			}
			next = m[1]
		}
	}
	return all, count
}

func TestPagination(t *testing.T) {
	e := newEnv(t)
	img := e.pushImage("page/tags", "", 31)
	tags := []string{"v1", "v10", "v2", "latest", "Latest", "_x", "a.b-c", "9"}
	for _, tag := range tags {
		wantStatus(t, e.pushManifest("page/tags", tag, v1.MediaTypeImageManifest, img.manifest.data), http.StatusCreated)
	}
	slices.Sort(tags)
	for _, n := range []int{1, 3, 7, 8, 100} {
		got, count := pages(t, e, "/v2/page/tags/tags/list?n="+strconv.Itoa(n), "tags", n)
		if !slices.Equal(got, tags) {
			t.Errorf("n=%d: tags %v, want %v", n, got, tags)
		}
		if want := (len(tags) + n - 1) / n; count != want {
			t.Errorf("n=%d: %d pages, want %d", n, count, want)
		}
	}
	// last need not be a tag: entries after it in lexical order.
	got, _ := pages(t, e, "/v2/page/tags/tags/list?n=2&last=v11", "tags", 2)
	if want := []string{"v2"}; !slices.Equal(got, want) {
		t.Errorf("after v11: %v, want %v", got, want)
	}

	repos := []string{"page/tags", "a", "a/b", "a-b", "z/y/x", "m"}
	for _, name := range repos[1:] {
		e.pushImage(name, "t", 32)
	}
	slices.Sort(repos)
	for _, n := range []int{1, 2, 5, 6} {
		got, _ := pages(t, e, "/v2/_catalog?n="+strconv.Itoa(n), "repositories", n)
		if !slices.Equal(got, repos) {
			t.Errorf("catalog n=%d: %v, want %v", n, got, repos)
		}
	}
	got, _ = pages(t, e, "/v2/_catalog?last=a%2Fb&n=2", "repositories", 2)
	if want := []string{"m", "page/tags", "z/y/x"}; !slices.Equal(got, want) {
		t.Errorf("catalog after a/b: %v, want %v", got, want)
	}
}

func TestPaginationClampsN(t *testing.T) {
	e := newEnv(t)
	img := e.pushImage("many/tags", "", 41)
	for i := range 1001 {
		tag := "t" + strconv.Itoa(10000+i)
		wantStatus(t, e.pushManifest("many/tags", tag, v1.MediaTypeImageManifest, img.manifest.data), http.StatusCreated)
	}
	r := e.get("/v2/many/tags/tags/list?n=5000")
	wantStatus(t, r, http.StatusOK)
	var body struct{ Tags []string }
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Fatal(err)
	}
	if len(body.Tags) != 1000 {
		t.Fatalf("%d tags, want 1000", len(body.Tags))
	}
	headerIs("Link", `</v2/many/tags/tags/list?last=t10999&n=1000>; rel="next"`)(t, r)
	// Without n, everything.
	r = e.get("/v2/many/tags/tags/list")
	if err := json.Unmarshal(r.body, &body); err != nil || len(body.Tags) != 1001 {
		t.Fatalf("%d tags without n (%v), want 1001", len(body.Tags), err)
	}
	headerIs("Link", "")(t, r)
}

func TestDeletes(t *testing.T) {
	e := newEnv(t, withDeletes)
	const name = "del/me"
	img := e.pushImage(name, "v1", 51)
	wantStatus(t, e.pushManifest(name, "v2", v1.MediaTypeImageManifest, img.manifest.data), http.StatusCreated)
	man := "/v2/" + name + "/manifests/"

	// A tag.
	wantStatus(t, e.do(req{method: "DELETE", path: man + "v1"}), http.StatusAccepted)
	wantError(t, e.get(man+"v1"), http.StatusNotFound, "MANIFEST_UNKNOWN")
	wantStatus(t, e.get(man+"v2"), http.StatusOK)
	wantStatus(t, e.get(man+img.manifest.digest.String()), http.StatusOK)
	wantError(t, e.do(req{method: "DELETE", path: man + "v1"}), http.StatusNotFound, "MANIFEST_UNKNOWN")
	wantError(t, e.do(req{method: "DELETE", path: man + "-bad"}), http.StatusNotFound, "MANIFEST_UNKNOWN")

	// A manifest, with the tags pointing at it.
	wantStatus(t, e.do(req{method: "DELETE", path: man + img.manifest.digest.String()}), http.StatusAccepted)
	wantError(t, e.get(man+img.manifest.digest.String()), http.StatusNotFound, "MANIFEST_UNKNOWN")
	wantError(t, e.get(man+"v2"), http.StatusNotFound, "MANIFEST_UNKNOWN")
	// Its only manifest gone, the repository still holds blobs: its tag list
	// is empty, but the catalog (Distribution's rule: repositories with
	// manifests) no longer lists it.
	jsonIs(`{"name":"del/me","tags":[]}`)(t, e.get("/v2/"+name+"/tags/list"))
	jsonIs(`{"repositories":[]}`)(t, e.get("/v2/_catalog"))
	wantError(t, e.do(req{method: "DELETE", path: man + img.manifest.digest.String()}), http.StatusNotFound, "MANIFEST_UNKNOWN")
	wantError(t, e.do(req{method: "DELETE", path: man + "sha256:bad"}), http.StatusBadRequest, "DIGEST_INVALID")

	// A blob.
	blobPath := "/v2/" + name + "/blobs/" + img.layer.digest.String()
	r := e.do(req{method: "DELETE", path: blobPath})
	wantStatus(t, r, http.StatusAccepted)
	headerIs("Docker-Content-Digest", img.layer.digest.String())(t, r)
	wantError(t, e.get(blobPath), http.StatusNotFound, "BLOB_UNKNOWN")
	wantError(t, e.do(req{method: "DELETE", path: blobPath}), http.StatusNotFound, "BLOB_UNKNOWN")
	wantError(t, e.do(req{method: "DELETE", path: "/v2/" + name + "/blobs/sha256:bad"}), http.StatusBadRequest, "DIGEST_INVALID")
	wantError(t, e.do(req{method: "DELETE", path: "/v2/Del/me/blobs/" + img.layer.digest.String()}), http.StatusBadRequest, "NAME_INVALID")
}

// TestCancelUpload: an upload can be cancelled even when deletes are off,
// since that discards unfinished bytes, not content.
func TestCancelUpload(t *testing.T) {
	for _, deletes := range []bool{false, true} {
		var opts []envOption
		if deletes {
			opts = append(opts, withDeletes)
		}
		e := newEnv(t, opts...)
		r := e.do(req{method: "POST", path: "/v2/x/y/blobs/uploads/"})
		loc := r.header.Get("Location")
		wantStatus(t, e.do(req{method: "PATCH", path: loc, body: strings.NewReader("data")}), http.StatusAccepted)
		wantStatus(t, e.do(req{method: "DELETE", path: loc}), http.StatusNoContent)
		wantError(t, e.get(loc), http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN")
		wantError(t, e.do(req{method: "DELETE", path: loc}), http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN")
		noUploadsLeft(t, e.driver)
	}
}

// TestTagParameters: a PUT by digest with ?tag= parameters applies every
// tag and names them in OCI-Tag; the digest in the URL, sha512 included,
// is the manifest's identity, also when read back by one of the tags.
func TestTagParameters(t *testing.T) {
	e := newEnv(t)
	const name = "tags/param"
	img := e.pushImage(name, "", 1)
	r := e.do(req{method: "PUT", path: "/v2/" + name + "/manifests/" + img.manifest.digest.String() + "?tag=1.2.3&tag=1.2&tag=latest&tag=1.2",
		header: map[string]string{"Content-Type": v1.MediaTypeImageManifest}, body: bytes.NewReader(img.manifest.data)})
	wantStatus(t, r, http.StatusCreated)
	var got []string
	for _, v := range r.header.Values("OCI-Tag") {
		for t := range strings.SplitSeq(v, ",") {
			got = append(got, strings.TrimSpace(t))
		}
	}
	if want := []string{"1.2.3", "1.2", "latest"}; !slices.Equal(got, want) {
		t.Errorf("OCI-Tag: %q, want %q", got, want)
	}
	for _, tag := range []string{"1.2.3", "1.2", "latest"} {
		r := e.head("/v2/" + name + "/manifests/" + tag)
		wantStatus(t, r, http.StatusOK)
		headerIs("Docker-Content-Digest", img.manifest.digest.String())(t, r)
	}
	// A push without tag parameters sends no OCI-Tag.
	r = e.pushManifest(name, img.manifest.digest.String(), v1.MediaTypeImageManifest, img.manifest.data)
	wantStatus(t, r, http.StatusCreated)
	headerIs("OCI-Tag", "")(t, r)

	// sha512: the tag resolves to the sha512 identity the push named.
	m512 := digest.SHA512.FromBytes(img.manifest.data)
	r = e.do(req{method: "PUT", path: "/v2/" + name + "/manifests/" + m512.String() + "?tag=v512",
		header: map[string]string{"Content-Type": v1.MediaTypeImageManifest}, body: bytes.NewReader(img.manifest.data)})
	wantStatus(t, r, http.StatusCreated)
	headerIs("Docker-Content-Digest", m512.String())(t, r)
	headerIs("OCI-Tag", "v512")(t, r)
	r = e.get("/v2/" + name + "/manifests/v512")
	wantStatus(t, r, http.StatusOK)
	headerIs("Docker-Content-Digest", m512.String())(t, r)
	bodyIs(string(img.manifest.data))(t, r)

	// Bad tags refuse the whole push, before anything is stored.
	before := e.snapshot()
	for _, q := range []string{"?tag=.bad", "?tag=ok&tag=", "?tag=" + strings.Repeat("t", 129), "?tag=a%2Fb"} {
		r := e.do(req{method: "PUT", path: "/v2/" + name + "/manifests/" + img.manifest.digest.String() + q,
			header: map[string]string{"Content-Type": v1.MediaTypeImageManifest}, body: bytes.NewReader(img.manifest.data)})
		wantError(t, r, http.StatusBadRequest, "MANIFEST_INVALID")
	}
	many := strings.Repeat("&tag=t", registry.MaxPushTags+1)[1:]
	r = e.do(req{method: "PUT", path: "/v2/" + name + "/manifests/" + img.manifest.digest.String() + "?" + many,
		header: map[string]string{"Content-Type": v1.MediaTypeImageManifest}, body: bytes.NewReader(img.manifest.data)})
	wantError(t, r, http.StatusRequestURITooLong, "MANIFEST_INVALID")
	if d := before.diff(e.snapshot()); d != "" {
		t.Errorf("refused pushes changed storage:\n%s", d)
	}
}

// TestSparseManifests: with sparse manifests on, an index whose child is
// absent and an image whose layer is absent are stored and served; pulling
// what is absent answers unknown. Off (the store's zero value, TestAPI),
// both are MANIFEST_BLOB_UNKNOWN.
func TestSparseManifests(t *testing.T) {
	e := newEnv(t, withSparse, withAccessLog)
	const name = "sparse/mirror"
	img := e.pushImage(name, "", 1)
	absentLayer := randomBlob(7, 100)
	partial := imageManifest(t, img.config, nil, "", img.layer, absentLayer)
	r := e.pushManifest(name, "partial", v1.MediaTypeImageManifest, partial.data)
	wantStatus(t, r, http.StatusCreated)
	headerIs("Docker-Content-Digest", partial.digest.String())(t, r)
	wantError(t, e.get("/v2/"+name+"/blobs/"+absentLayer.digest.String()), http.StatusNotFound, "BLOB_UNKNOWN")

	absentChild := newBlob([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`))
	idx := indexOf(t, img.manifest, absentChild)
	r = e.pushManifest(name, "multi", v1.MediaTypeImageIndex, idx.data)
	wantStatus(t, r, http.StatusCreated)
	r = e.get("/v2/" + name + "/manifests/multi")
	wantStatus(t, r, http.StatusOK)
	bodyIs(string(idx.data))(t, r)
	wantError(t, e.get("/v2/"+name+"/manifests/"+absentChild.digest.String()), http.StatusNotFound, "MANIFEST_UNKNOWN")
	// Pushed later, the child is served through the index.
	r = e.pushManifest(name, absentChild.digest.String(), v1.MediaTypeImageManifest, absentChild.data)
	if r.status != http.StatusCreated { // its config is absent too: sparse as well
		t.Fatalf("pushing the child later: %d %s", r.status, r.body)
	}
	wantStatus(t, e.get("/v2/"+name+"/manifests/"+absentChild.digest.String()), http.StatusOK)
	if !strings.Contains(e.logs.String(), `"msg":"sparse manifest accepted"`) {
		t.Errorf("no log line for the sparse push:\n%s", e.logs.String())
	}
}

package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/versitygw"
)

// Berth on S3: the same black-box tests as on the filesystem, against a
// local versitygw (an S3 server over a posix directory) started per test.

// startVersity starts versitygw with a fresh bucket, stopped at cleanup. In
// integration mode a missing versitygw fails t (make prereqs installs it).
func startVersity(t *testing.T) *versitygw.Server {
	t.Helper()
	_, err := versitygw.Binary()
	prerequisite(t, err == nil, "%v (make prereqs installs it into ~/.cache/berth-tools; or set VERSITYGW)", err)
	gw := versitygw.Start(t, "berth")
	t.Logf("versitygw on %s, bucket %s, directory %s", gw.Endpoint, gw.Bucket, gw.Dir)
	return gw
}

// startBerthS3 starts berth on gw's bucket under prefix (path-style, static
// keys), answering blob GETs with redirects or not.
func startBerthS3(t *testing.T, gw *versitygw.Server, prefix string, redirect bool) *Server {
	t.Helper()
	return startServerWith(t, Options{Kind: Berth, Driver: S3, S3: S3Options{
		Endpoint: gw.Endpoint, Bucket: gw.Bucket, Prefix: prefix,
		AccessKey: gw.AccessKey, SecretKey: gw.SecretKey, Redirect: redirect,
	}})
}

func redirectName(on bool) string {
	if on {
		return "redirect"
	}
	return "no-redirect"
}

// blobGETs counts the blob GETs in s's access log by status.
func blobGETs(t *testing.T, s *Server) map[string]int {
	t.Helper()
	b, err := s.ReadLog(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, "msg=request method=GET route=/v2/{name}/blobs/{digest} ") {
			continue
		}
		for field := range strings.FieldsSeq(line) {
			if status, ok := strings.CutPrefix(field, "status="); ok {
				counts[status]++
			}
		}
	}
	return counts
}

// checkRedirects fails t unless blob GETs on s were answered the way its
// redirect setting says: 307 to the bucket, or 200 with the bytes.
func checkRedirects(t *testing.T, s *Server, redirect bool) {
	t.Helper()
	c := blobGETs(t, s)
	switch {
	case redirect && (c["307"] == 0 || c["200"] != 0 || c["206"] != 0):
		t.Errorf("redirect on, yet blob GETs by status: %v (want 307s only)", c)
	case !redirect && (c["307"] != 0 || c["200"] == 0):
		t.Errorf("redirect off, yet blob GETs by status: %v (want no 307)", c)
	default:
		t.Logf("blob GETs by status: %v", c)
	}
}

// TestS3Conformance runs the conformance suite against berth on S3, with
// blob GETs redirected to presigned URLs (the default) and served by berth.
func TestS3Conformance(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	gw := startVersity(t)
	for _, redirect := range []bool{true, false} {
		t.Run(redirectName(redirect), func(t *testing.T) {
			srv := startBerthS3(t, gw, "conformance/"+redirectName(redirect), redirect)
			if redirect {
				runConformanceRedirected(t, srv.URL)
			} else {
				runConformance(t, srv.URL)
			}
			checkRedirects(t, srv, redirect)
		})
	}
}

// TestS3Clients runs the five real clients against berth on S3, with and
// without redirects: with them, every client follows a 307 to versitygw.
func TestS3Clients(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	gw := startVersity(t)
	for _, redirect := range []bool{true, false} {
		t.Run(redirectName(redirect), func(t *testing.T) {
			srv := startBerthS3(t, gw, "clients/"+redirectName(redirect), redirect)
			runClients(t, srv.URL)
			checkRedirects(t, srv, redirect)
		})
	}
}

// TestS3LayoutMatchesFilesystem pushes the same content (the test images, an
// extra tag, a chunked upload, a referrer) to berth on the filesystem and
// to berth on S3, and compares the files under the filesystem root with the
// objects under the S3 prefix, read from versitygw's posix directory: the
// same relative paths, sizes and, for files up to 64 KiB (links, manifests),
// bytes. Upload state (_uploads, named by random ids) is left out.
func TestS3LayoutMatchesFilesystem(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	env := toolEnv(t)
	needTools(t, env, "skopeo", "crane")
	dir, imgs := testImages(t)
	gw := startVersity(t)
	const prefix = "layout/berth"
	fsRoot := t.TempDir()
	fsSrv := startServer(t, Berth, Filesystem, fsRoot)
	s3Srv := startBerthS3(t, gw, prefix, true)

	extra := newRawImage(t, "layout/raw", 3<<20)
	for _, srv := range []*Server{fsSrv, s3Srv} {
		pushImages(t, env, srv.Host, "layout", dir, imgs)
		mustOutput(t, env, "crane", "tag", "--insecure", srv.Host+"/layout/busybox:latest", "v1")
		extra.push(t, srv.URL, srv.URL, 1<<20) // chunked, 1 MiB PATCHes
		extra.pushReferrer(t, srv.URL)
	}

	fsFiles := layoutFiles(t, fsRoot)
	s3Files := layoutFiles(t, filepath.Join(gw.Dir, gw.Bucket, filepath.FromSlash(prefix)))
	if len(fsFiles) == 0 {
		t.Fatalf("no files under %s", fsRoot)
	}
	// The S3 driver keeps the state of unfinished chunked uploads under
	// <prefix>/_berth/; every upload here has finished, so none may be left.
	var pending []string
	for p := range s3Files {
		if strings.HasPrefix(p, "_berth/") {
			pending = append(pending, p)
			delete(s3Files, p)
		}
	}
	if len(pending) > 0 {
		slices.Sort(pending)
		t.Errorf("S3 driver state left after every upload finished:\n  %s", strings.Join(head(pending, 20), "\n  "))
	}
	var onlyFS, onlyS3, differ []string
	for p, a := range fsFiles {
		b, ok := s3Files[p]
		switch {
		case !ok:
			onlyFS = append(onlyFS, p)
		case strings.HasSuffix(p, "/_berth/summary"):
			// A repository's summary holds push times, which differ
			// between the two servers: its tags and digests must not.
			if !sameSummaryTags(t, a.path, b.path) {
				differ = append(differ, p+": the summaries name other tags or digests")
			}
		case a.size != b.size:
			differ = append(differ, fmt.Sprintf("%s: %d bytes on the filesystem, %d on S3", p, a.size, b.size))
		case a.size <= 64<<10 && !sameBytes(t, a.path, b.path):
			differ = append(differ, p+": bytes differ")
		}
	}
	for p := range s3Files {
		if _, ok := fsFiles[p]; !ok {
			onlyS3 = append(onlyS3, p)
		}
	}
	for _, l := range []*[]string{&onlyFS, &onlyS3, &differ} {
		slices.Sort(*l)
	}
	if len(onlyFS)+len(onlyS3)+len(differ) > 0 {
		t.Errorf("layouts differ:\nonly on the filesystem (%d):\n  %s\nonly on S3 (%d):\n  %s\ndifferent (%d):\n  %s",
			len(onlyFS), strings.Join(head(onlyFS, 20), "\n  "), len(onlyS3), strings.Join(head(onlyS3, 20), "\n  "),
			len(differ), strings.Join(head(differ, 20), "\n  "))
	}
	kinds := map[string]int{}
	for p := range fsFiles {
		switch {
		case strings.HasPrefix(p, "docker/registry/v2/blobs/"):
			kinds["blobs"]++
		case strings.Contains(p, "/_layers/"):
			kinds["layer links"]++
		case strings.Contains(p, "/_manifests/revisions/"):
			kinds["revision links"]++
		case strings.Contains(p, "/_manifests/tags/"):
			kinds["tag links"]++
		case strings.Contains(p, "/_referrers/"):
			kinds["referrers"]++
		default:
			kinds["other"]++
		}
	}
	if kinds["referrers"] == 0 || kinds["blobs"] == 0 {
		t.Errorf("the pushes left no referrers or no blobs: %v", kinds)
	}
	t.Logf("%d files compared: %v", len(fsFiles), kinds)
}

type layoutFile struct {
	path string
	size int64
}

// layoutFiles lists the regular files under root by slash-separated path
// relative to root, leaving out upload state.
func layoutFiles(t *testing.T, root string) map[string]layoutFile {
	t.Helper()
	files := map[string]layoutFile{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			// Uploads, and garbage collection's leases (named at random),
			// are not content.
			if d.Name() == "_uploads" || d.Name() == "gc" && filepath.Base(filepath.Dir(path)) == "_berth" {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return fmt.Errorf("%s: not a regular file (%s)", path, info.Mode())
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = layoutFile{path: path, size: info.Size()}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func sameBytes(t *testing.T, a, b string) bool {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(x) == string(y)
}

func head(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("... and %d more", len(s)-n))
	}
	return s
}

// sameSummaryTags reports whether two repository summaries name the same
// digests for the same tags.
func sameSummaryTags(t *testing.T, a, b string) bool {
	t.Helper()
	tags := func(p string) map[string]string {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var s struct {
			Tags map[string]struct{ Digest string } `json:"tags"`
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		out := map[string]string{}
		for k, v := range s.Tags {
			out[k] = v.Digest
		}
		return out
	}
	return maps.Equal(tags(a), tags(b))
}

package registry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/gc"
	"github.com/berth-registry/berth/storage"
	"github.com/berth-registry/berth/storage/filesystem"
	"github.com/berth-registry/berth/storage/inmemory"
)

// size is the number of bytes of an image: manifest, config and layer.
func (img image) size() int64 {
	return int64(len(img.manifest.data) + len(img.config.data) + len(img.layer.data))
}

// usage GETs path and decodes the report.
func (e *env) usage(path string) gc.UsageReport {
	e.t.Helper()
	r := e.get(path)
	wantStatus(e.t, r, http.StatusOK)
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		e.t.Errorf("%s: Content-Type %q", path, ct)
	}
	var rep gc.UsageReport
	if err := json.Unmarshal(r.body, &rep); err != nil {
		e.t.Fatalf("%s: %v in %s", path, err, r.body)
	}
	return rep
}

// TestUsage pushes images that share content and a deleted one, makes
// everything two hours old (older than the default grace), and reads the
// report, whole and by glob.
func TestUsage(t *testing.T) {
	root := t.TempDir()
	d, err := filesystem.New(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	e := newEnvOn(t, d, withDeletes)

	a := e.pushImage("team/app", "v1", 1)
	e.pushImage("other/app", "v1", 1) // the same image: everything shared
	b := e.pushImage("team/db", "v1", 2)
	c := e.pushImage("team/db", "", 3) // untagged: kept
	gone := e.pushImage("team/db", "old", 4)
	wantStatus(t, e.do(req{method: "DELETE", path: "/v2/team/db/manifests/" + gone.manifest.digest.String()}), http.StatusAccepted)
	past := time.Now().Add(-2 * time.Hour)
	// Directories too: a link's directory dates the link on a filesystem.
	err = filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, past, past)
	})
	if err != nil {
		t.Fatal(err)
	}

	before := time.Now()
	raw := e.get("/v2/_berth/usage")
	after := time.Now()
	wantStatus(t, raw, http.StatusOK)
	// The field names are the interface: check them on the raw JSON.
	var shape struct {
		Cutoff         *time.Time                   `json:"cutoff"`
		DeleteUntagged *bool                        `json:"deleteUntagged"`
		Repositories   []map[string]json.RawMessage `json:"repositories"`
		Total          map[string]json.RawMessage   `json:"total"`
	}
	if err := json.Unmarshal(raw.body, &shape); err != nil {
		t.Fatalf("%v in %s", err, raw.body)
	}
	if shape.Cutoff == nil || shape.DeleteUntagged == nil || *shape.DeleteUntagged || len(shape.Repositories) == 0 {
		t.Fatalf("body %s lacks cutoff, deleteUntagged or repositories", raw.body)
	}
	// The registry counts with the default grace, from when it read.
	if shape.Cutoff.Before(before.Add(-gc.DefaultGrace)) || shape.Cutoff.After(after.Add(-gc.DefaultGrace)) {
		t.Errorf("cutoff %s is not the default grace before the request (%s .. %s)", shape.Cutoff, before, after)
	}
	for _, k := range []string{"name", "bytes", "sharedBytes", "reclaimableBytes", "manifests", "tags", "blobs"} {
		if _, ok := shape.Repositories[0][k]; !ok {
			t.Errorf("repository entry lacks %q: %s", k, raw.body)
		}
	}
	for _, k := range []string{"repositories", "bytes", "blobs", "sharedBytes", "reclaimableBytes", "unlinkedReclaimableBytes", "manifests", "tags"} {
		if _, ok := shape.Total[k]; !ok {
			t.Errorf("total lacks %q: %s", k, raw.body)
		}
	}

	appUsage := gc.RepositoryUsage{Name: "team/app", Bytes: a.size(), SharedBytes: a.size(), Manifests: 1, Tags: 1, Blobs: 3}
	dbUsage := gc.RepositoryUsage{Name: "team/db", Bytes: b.size() + c.size(), Manifests: 2, Tags: 1, Blobs: 6,
		ReclaimableBytes: int64(len(gone.config.data) + len(gone.layer.data))}
	all := e.usage("/v2/_berth/usage")
	wantRepos := []gc.RepositoryUsage{
		{Name: "other/app", Bytes: a.size(), SharedBytes: a.size(), Manifests: 1, Tags: 1, Blobs: 3},
		appUsage, dbUsage,
	}
	if !slices.Equal(all.Repositories, wantRepos) {
		t.Errorf("repositories:\n got %+v\nwant %+v", all.Repositories, wantRepos)
	}
	wantTotal := gc.UsageTotal{Repositories: 3, Bytes: a.size() + b.size() + c.size(), Blobs: 9, SharedBytes: a.size(),
		ReclaimableBytes: dbUsage.ReclaimableBytes, UnlinkedReclaimableBytes: int64(len(gone.manifest.data)), Manifests: 4, Tags: 3,
		LocalBytes: a.size() + b.size() + c.size()}
	if all.Total != wantTotal {
		t.Errorf("total:\n got %+v\nwant %+v", all.Total, wantTotal)
	}

	// A glob lists fewer repositories; sharing with the others still counts.
	team := e.usage("/v2/_berth/usage?repositories=team/*")
	if want := []gc.RepositoryUsage{appUsage, dbUsage}; !slices.Equal(team.Repositories, want) {
		t.Errorf("team/*:\n got %+v\nwant %+v", team.Repositories, want)
	}
	if team.Total.Repositories != 2 || team.Total.Bytes != wantTotal.Bytes || team.Total.SharedBytes != a.size() {
		t.Errorf("team/* total %+v", team.Total)
	}
	if none := e.usage("/v2/_berth/usage?repositories=nobody/**"); none.Repositories == nil || len(none.Repositories) != 0 || none.Total.Bytes != 0 {
		t.Errorf("a glob matching nothing: %+v", none)
	}

	wantError(t, e.get("/v2/_berth/usage?repositories=team/%5B"), http.StatusBadRequest, "NAME_INVALID")
	wantError(t, e.get("/v2/_berth/usage?repositories=team//app"), http.StatusBadRequest, "NAME_INVALID")
	wantError(t, e.do(req{method: "POST", path: "/v2/_berth/usage"}), http.StatusMethodNotAllowed, "UNSUPPORTED")
}

// TestUsageAuth: the usage report needs what the catalog needs.
func TestUsageAuth(t *testing.T) {
	opt, tk := withTokenAuth(t)
	e := newEnv(t, opt)
	push := tk.token("alice", "repository:a/b:pull,push")
	upload := newBlob([]byte("layer"))
	wantStatus(t, e.as(push, req{method: "POST", path: "/v2/a/b/blobs/uploads/?digest=" + upload.digest.String(),
		body: bytes.NewReader(upload.data)}), http.StatusCreated)

	for _, tc := range []struct {
		name   string
		token  string // "" sends none
		status int
		code   string
	}{
		{"no token", "", http.StatusUnauthorized, "UNAUTHORIZED"},
		{"bad token", "not-a-token", http.StatusUnauthorized, "UNAUTHORIZED"},
		{"repository access only", push, http.StatusUnauthorized, "DENIED"},
		{"catalog access", tk.token("admin", "registry:catalog:*"), http.StatusOK, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			send := func(path string) resp {
				if tc.token == "" {
					return e.get(path)
				}
				return e.as(tc.token, req{method: "GET", path: path})
			}
			catalog, usage := send("/v2/_catalog"), send("/v2/_berth/usage")
			if catalog.status != tc.status || usage.status != tc.status {
				t.Fatalf("catalog %d, usage %d, want both %d (usage body %s)", catalog.status, usage.status, tc.status, usage.body)
			}
			if tc.status != http.StatusOK {
				wantError(t, usage, tc.status, tc.code)
				if usage.header.Get("WWW-Authenticate") == "" {
					t.Errorf("no WWW-Authenticate challenge")
				}
			}
		})
	}
	// A token lacking the catalog grant is told which scope to ask for,
	// exactly as by the catalog.
	wantChallenge(t, e.as(push, req{method: "GET", path: "/v2/_berth/usage"}),
		`Bearer realm="https://auth.example/token",service="berth",scope="registry:catalog:*",error="insufficient_scope"`)
}

// graphReads counts the listings of the blob store's root, one per
// reference graph read (gc.ReadGraph lists it once to walk the blobs; no
// client request does).
type graphReads struct {
	storage.Driver
	mu sync.Mutex
	n  int
}

func (d *graphReads) List(ctx context.Context, p string) ([]string, error) {
	if p == "/docker/registry/v2/blobs" {
		d.mu.Lock()
		d.n++
		d.mu.Unlock()
	}
	return d.Driver.List(ctx, p)
}

func (d *graphReads) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n
}

// TestUsageSharesReads: concurrent and repeated requests share one read of
// the graph while it is fresh (30 s), and get the same report.
func TestUsageSharesReads(t *testing.T) {
	d := &graphReads{Driver: inmemory.New()}
	e := newEnvOn(t, d)
	e.pushImage("a", "v1", 1)
	e.pushImage("b", "v1", 2)

	start := time.Now()
	const n = 8
	bodies := make(chan string, n+1)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			res, err := http.Get(e.srv.URL + "/v2/_berth/usage")
			if err != nil {
				bodies <- "error: " + err.Error()
				return
			}
			defer res.Body.Close()
			b, err := io.ReadAll(res.Body)
			if err != nil || res.StatusCode != http.StatusOK {
				bodies <- "error: " + res.Status + " " + string(b)
				return
			}
			bodies <- string(b)
		})
	}
	wg.Wait()
	bodies <- string(e.get("/v2/_berth/usage").body)
	close(bodies)
	elapsed := time.Since(start)

	var first string
	for b := range bodies {
		if first == "" {
			first = b
		}
		if b != first {
			t.Errorf("reports differ:\n%s\n%s", first, b)
		}
	}
	// Not a timing threshold: a slower run is allowed a read per 30 s.
	reads := d.count()
	if allowed := 1 + int(elapsed/(30*time.Second)); reads < 1 || reads > allowed {
		t.Errorf("%d requests read the graph %d times in %s, want 1..%d (0: the counter no longer sees gc.ReadGraph)",
			n+1, reads, elapsed, allowed)
	}
}

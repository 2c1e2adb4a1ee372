package registry_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/berth-registry/berth/registry"
	"github.com/berth-registry/berth/storage"
	"github.com/berth-registry/berth/storage/inmemory"
	"github.com/berth-registry/berth/storage/store"
)

// fullDriver is an in-memory driver that, while full is set, refuses
// every write with ENOSPC as a filesystem does, and says how much is free
// (storage.SpaceReporter).
type fullDriver struct {
	storage.Driver
	full atomic.Bool
}

func (d *fullDriver) Writer(ctx context.Context, p string, append bool) (storage.FileWriter, error) {
	if d.full.Load() {
		return nil, &fs.PathError{Op: "open", Path: p, Err: syscall.ENOSPC}
	}
	w, err := d.Driver.Writer(ctx, p, append)
	if err != nil {
		return nil, err
	}
	return &fullWriter{FileWriter: w, d: d}, nil
}

func (d *fullDriver) FreeBytes(context.Context) (int64, error) {
	if d.full.Load() {
		return 0, nil
	}
	return 1 << 40, nil
}

type fullWriter struct {
	storage.FileWriter
	d *fullDriver
}

func (w *fullWriter) Write(p []byte) (int, error) {
	if w.d.full.Load() {
		return 0, &fs.PathError{Op: "write", Path: "data", Err: syscall.ENOSPC}
	}
	return w.FileWriter.Write(p)
}

// TestStorageFull: with no space left, pushes get 507 with the OCI
// envelope and a message a person understands, before their bodies are
// read where the driver says nothing is free; reads go on; /readyz says
// so; the refusals are counted and logged once; once there is space
// again, pushes work without a restart.
func TestStorageFull(t *testing.T) {
	d := &fullDriver{Driver: inmemory.New()}
	e := newEnvOn(t, d, withMetrics)
	kept := randomBlob(1, 1000)
	e.pushBlob("app", kept)

	d.full.Store(true)
	for i, r := range []req{
		{method: "POST", path: "/v2/app/blobs/uploads/"},
		{method: "POST", path: "/v2/app/blobs/uploads/?digest=" + randomBlob(2, 10).digest.String(), body: strings.NewReader(string(randomBlob(2, 10).data))},
	} {
		res := e.do(r)
		wantError(t, res, http.StatusInsufficientStorage, "UNKNOWN")
		if !strings.Contains(string(res.body), "registry storage is full") {
			t.Errorf("request %d: body %s does not say the storage is full", i, res.body)
		}
	}
	wantStatus(t, e.get("/v2/app/blobs/"+kept.digest.String()), http.StatusOK)
	if r := e.get("/readyz"); r.status != http.StatusOK || !strings.Contains(string(r.body), "storage full") {
		t.Errorf("/readyz = %d %q, want 200 saying the storage is full", r.status, r.body)
	}
	if n := strings.Count(e.logs.String(), "storage full: refusing writes"); n != 1 {
		t.Errorf("the refusals were logged %d times, want once per burst:\n%s", n, e.logs)
	}
	if m := e.get("/metrics"); !strings.Contains(string(m.body), "berth_storage_full_refusals_total 2") {
		t.Errorf("metrics lack berth_storage_full_refusals_total 2")
	}

	d.full.Store(false)
	e.pushBlob("app", randomBlob(3, 1000))
	if r := e.get("/readyz"); string(r.body) != "ok\n" {
		t.Errorf("/readyz after space came back = %q", r.body)
	}
}

func withBodyTimeout(d time.Duration) envOption {
	return func(o *registry.Options, _ *store.Options) { o.BodyTimeout = d }
}

// silentPatch opens an upload in repo and sends a PATCH that declares
// 1 MiB, sends 4 KiB and goes silent; it returns the connection (to read
// the answer from) and the upload's location.
func silentPatch(t *testing.T, e *env, repo string) (net.Conn, string) {
	t.Helper()
	r := e.do(req{method: "POST", path: "/v2/" + repo + "/blobs/uploads/"})
	wantStatus(t, r, http.StatusAccepted)
	loc := r.header.Get("Location")
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	path := strings.TrimPrefix(loc, e.srv.URL)
	fmt.Fprintf(conn, "PATCH %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", path, 1<<20)
	if _, err := conn.Write(make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	return conn, path
}

// TestSilentClients: a hundred PATCHes that stall mid-body hold nobody
// else up: other clients push and pull while they are open.
func TestSilentClients(t *testing.T) {
	e := newEnv(t)
	for i := range 100 {
		silentPatch(t, e, fmt.Sprintf("silent/%d", i%7))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a guard: a stall would hang here
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			b := randomBlob(uint64(100+i), 64<<10)
			hr, _ := http.NewRequestWithContext(ctx, "POST", e.srv.URL+"/v2/busy/blobs/uploads/?digest="+b.digest.String(), strings.NewReader(string(b.data)))
			res, err := http.DefaultClient.Do(hr)
			if err != nil {
				errs <- err
				return
			}
			res.Body.Close()
			if res.StatusCode != http.StatusCreated {
				errs <- fmt.Errorf("push %d: %d", i, res.StatusCode)
				return
			}
			hr, _ = http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/v2/busy/blobs/"+b.digest.String(), nil)
			if res, err = http.DefaultClient.Do(hr); err != nil {
				errs <- err
				return
			}
			n, _ := io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if n != int64(len(b.data)) {
				errs <- fmt.Errorf("pull %d: %d bytes", i, n)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestStalledBody: a body from which nothing arrives for the body timeout
// is cut with 408, logged at info as a client gone, not as a server error,
// and the upload keeps what arrived, so the client can resume.
func TestStalledBody(t *testing.T) {
	e := newEnv(t, withBodyTimeout(200*time.Millisecond))
	conn, path := silentPatch(t, e, "app")
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestTimeout {
		t.Errorf("stalled PATCH: status %d, want 408", res.StatusCode)
	}
	r := e.get(path)
	wantStatus(t, r, http.StatusNoContent)
	if got := r.header.Get("Range"); got != "0-4095" {
		t.Errorf("upload Range after the stall = %q, want 0-4095 (what arrived)", got)
	}
	if strings.Contains(e.logs.String(), `"level":"ERROR"`) {
		t.Errorf("a stalled client was logged as an error:\n%s", e.logs)
	}
}

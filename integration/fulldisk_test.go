package integration

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fullDisk makes a 64 MiB ext4 filesystem on a loop device, mounted for
// the test, and returns its mount point.
func fullDisk(t *testing.T) string {
	t.Helper()
	prerequisite(t, os.Geteuid() == 0, "mounting a loop device needs root")
	_, err := exec.LookPath("mkfs.ext4")
	prerequisite(t, err == nil, "mkfs.ext4 (e2fsprogs) is not installed")
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "disk.img"), filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount -o loop: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			exec.Command("umount", "-l", mnt).Run()
			t.Logf("umount %s: %v\n%s", mnt, err, out)
		}
	})
	return mnt
}

// fill writes a file under dir until the filesystem has no room left for
// anything (as root, its reserved blocks too) and returns its path.
func fill(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, fmt.Sprintf("filler-%d", time.Now().UnixNano()))
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for size := len(buf); size > 0; {
		_, err := f.Write(buf[:size])
		if errors.Is(err, syscall.ENOSPC) {
			size /= 2 // fill the last blocks too
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	f.Sync()
	// ext4 keeps a few blocks that no write may take (its delayed
	// allocation reserve): full means that another file cannot grow.
	probe := filepath.Join(dir, "probe")
	err = os.WriteFile(probe, make([]byte, 8<<10), 0o644)
	os.Remove(probe)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filled the disk, and a new file still fits (%v)", err)
	}
	return p
}

// pushBlobStatus pushes b to repo monolithically and returns the status
// and body of the answer.
func pushBlobStatus(t *testing.T, base, repo string, b []byte) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/v2/"+repo+"/blobs/uploads/?digest="+sha256Digest(b), bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestFullDisk: on a filesystem with no free block, pushes get 507 with a
// message that says so, reads go on, and garbage collection still works:
// `berth gc` and then the in-server collector each free a deleted image's
// blobs (the collector's reserve lets them write what they must before
// they delete), after which pushes work again without a restart.
func TestFullDisk(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	mnt := fullDisk(t)
	root := filepath.Join(mnt, "registry")
	srv := startServerWith(t, Options{Kind: Berth, Root: root})
	base := srv.URL

	kept := newImage(randomLayer(4 << 20))
	doomed := newImage(randomLayer(12 << 20))
	pushTree(t, base, "full/app", "kept", kept)
	pushTree(t, base, "full/app", "doomed", doomed)
	httpDo(t, noRedirect, http.MethodDelete, base+"/v2/full/app/manifests/"+doomed.digest, nil, nil, http.StatusAccepted)
	waitFile(t, filepath.Join(root, "docker/registry/v2/_berth/gc/reserve"))

	filler := fill(t, mnt)
	status, body := pushBlobStatus(t, base, "full/app", randomBytes(256<<10))
	if status != http.StatusInsufficientStorage || !strings.Contains(body, "registry storage is full") {
		t.Fatalf("a push on the full disk: %d %s; want 507 saying the storage is full", status, body)
	}
	pullTree(t, base, "full/app", "kept", kept)
	if _, ready := httpDo(t, noRedirect, http.MethodGet, base+"/readyz", nil, nil, http.StatusOK); !strings.Contains(string(ready), "storage full") {
		t.Errorf("/readyz on the full disk: %q", ready)
	}

	rep := mustBerthGC(t, "--config", srv.ConfigPath, "--grace", "0s")
	if rep.Deleted.Blobs < 2 {
		t.Fatalf("berth gc on the full disk deleted %s; want the deleted image's layer and config", rep.Deleted)
	}
	blobGone(t, base, "full/app", doomed.blobs[1].digest)
	if status, body := pushBlobStatus(t, base, "full/app", randomBytes(256<<10)); status != http.StatusCreated {
		t.Fatalf("a push after berth gc freed space: %d %s", status, body)
	}
	pullTree(t, base, "full/app", "kept", kept)

	// The in-server collector, on a disk full again.
	os.Remove(filler)
	stopServer(t, srv)
	srv = startServerWith(t, Options{Kind: Berth, Root: root, Extra: "gc:\n  interval: 2s\n  grace: 0s\n"})
	base = srv.URL
	doomed = newImage(randomLayer(12 << 20))
	pushTree(t, base, "full/app", "doomed", doomed)
	fill(t, mnt)
	httpDo(t, noRedirect, http.MethodDelete, base+"/v2/full/app/manifests/"+doomed.digest, nil, nil, http.StatusAccepted)
	deadline := time.Now().Add(time.Minute) // a guard: the loop runs every 2 s
	for {
		status, body := pushBlobStatus(t, base, "full/app", randomBytes(256<<10))
		if status == http.StatusCreated {
			break
		}
		if status != http.StatusInsufficientStorage || time.Now().After(deadline) {
			t.Fatalf("waiting for the in-server collector to free space: %d %s\n%s", status, body, srv.LogTail(30))
		}
		time.Sleep(500 * time.Millisecond)
	}
	blobGone(t, base, "full/app", doomed.blobs[1].digest)
	pullTree(t, base, "full/app", "kept", kept)
}

// waitFile waits (a bounded while) until the file p exists.
func waitFile(t *testing.T, p string) {
	t.Helper()
	for range 100 {
		if _, err := os.Stat(p); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never appeared", p)
}

// blobGone fails t unless repo's blob d answers 404.
func blobGone(t *testing.T, base, repo, d string) {
	t.Helper()
	httpDo(t, noRedirect, http.MethodHead, base+"/v2/"+repo+"/blobs/"+d, nil, nil, http.StatusNotFound)
}

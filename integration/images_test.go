package integration

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testImage is one line of make-test-images.sh's digests.txt:
// "<image> <digest> <mediaType> <size>".
type testImage struct {
	Name, Digest, MediaType string
	Size                    int64
}

var allImages = []string{"busybox", "multilayer", "multiarch", "debian"}

var (
	imagesOnce sync.Once
	imagesDir  string
	imagesList []testImage
	imagesErr  error
)

// testImages returns the directory of the four test image layouts built by
// make-test-images.sh, and their digests. The layouts are cached across runs
// under imagesCacheRoot()/<hash of the script>, so they are rebuilt only when
// the script changes (the debian image takes minutes).
func testImages(t *testing.T) (string, []testImage) {
	t.Helper()
	script := filepath.Join(harnessDir(t), "make-test-images.sh")
	imagesOnce.Do(func() { imagesDir, imagesList, imagesErr = buildTestImages(t, script) })
	if imagesErr != nil {
		t.Fatalf("test images: %v", imagesErr)
	}
	return imagesDir, imagesList
}

func imagesCacheRoot() string {
	if d := os.Getenv("BERTH_TEST_IMAGES_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("OCI_HARNESS_CACHE"); d != "" {
		return filepath.Join(d, "test-images")
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "oci-harness", "test-images")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "oci-harness", "test-images")
}

func buildTestImages(t *testing.T, script string) (string, []testImage, error) {
	src, err := os.ReadFile(script)
	if err != nil {
		return "", nil, err
	}
	sum := sha256.Sum256(src)
	root := imagesCacheRoot()
	dir := filepath.Join(root, hex.EncodeToString(sum[:])[:16])
	if imgs, err := readDigests(dir); err == nil {
		t.Logf("test images: cached in %s", dir)
		return dir, imgs, nil
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", nil, err
	}
	// One builder at a time (another go test process may be at it).
	lock, err := os.OpenFile(filepath.Join(root, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", nil, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", nil, err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if imgs, err := readDigests(dir); err == nil {
		return dir, imgs, nil
	}
	if os.Geteuid() != 0 {
		return "", nil, fmt.Errorf("missing prerequisite: %s must run as root to build the images (none cached in %s)", filepath.Base(script), dir)
	}
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	t.Logf("test images: building into %s (first run: a minute or more, debootstrap)", dir)
	start := time.Now()
	lines, err := runLogged(t, os.Environ(), 25*time.Minute, script, tmp)
	if err != nil {
		os.RemoveAll(tmp)
		return "", nil, fmt.Errorf("%s failed: %v; last line %q", script, err, lastLine(lines))
	}
	if _, err := readDigests(tmp); err != nil {
		return "", nil, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", nil, err
	}
	t.Logf("test images: built in %.0fs", time.Since(start).Seconds())
	imgs, err := readDigests(dir)
	return dir, imgs, err
}

// readDigests parses DIR/digests.txt and checks that all images are present.
func readDigests(dir string) ([]testImage, error) {
	b, err := os.ReadFile(filepath.Join(dir, "digests.txt"))
	if err != nil {
		return nil, err
	}
	byName := map[string]testImage{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 4 {
			return nil, fmt.Errorf("digests.txt: bad line %q", line)
		}
		size, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("digests.txt: bad size in %q", line)
		}
		byName[f[0]] = testImage{Name: f[0], Digest: f[1], MediaType: f[2], Size: size}
	}
	var imgs []testImage
	for _, name := range allImages {
		img, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("digests.txt in %s lacks %s", dir, name)
		}
		if _, err := os.Stat(filepath.Join(dir, name, "index.json")); err != nil {
			return nil, err
		}
		imgs = append(imgs, img)
	}
	return imgs, nil
}

// pushImages copies each layout to HOST/PREFIX/NAME:latest with skopeo,
// keeping digests (all platforms of the index).
func pushImages(t *testing.T, env []string, host, prefix, dir string, imgs []testImage) {
	t.Helper()
	for _, img := range imgs {
		start := time.Now()
		ref := fmt.Sprintf("%s/%s/%s:latest", host, prefix, img.Name)
		err := run(t.Context(), env, io.Discard, "skopeo", "--insecure-policy", "copy", "--all", "--preserve-digests",
			"--dest-tls-verify=false", "oci:"+filepath.Join(dir, img.Name)+":latest", "docker://"+ref)
		if err != nil {
			t.Fatalf("push %s: %v", img.Name, err)
		}
		t.Logf("pushed %s (%s) in %.1fs", ref, img.Digest, time.Since(start).Seconds())
	}
}

// verifyImages pulls each image back from HOST/PREFIX/NAME:latest with crane
// and checks the tag's digest, the pulled descriptor, and that every manifest
// (the index's children too), config and layer is byte-identical to the
// source layout.
func verifyImages(t *testing.T, env []string, host, prefix, dir string, imgs []testImage) {
	t.Helper()
	for _, img := range imgs {
		ref := fmt.Sprintf("%s/%s/%s:latest", host, prefix, img.Name)
		got, err := output(t.Context(), env, "crane", "digest", "--insecure", ref)
		if err != nil {
			t.Errorf("%s: %v", img.Name, err)
			continue
		}
		if got != img.Digest {
			t.Errorf("%s: crane digest %s = %s, want %s (digests.txt)", img.Name, ref, got, img.Digest)
			continue
		}
		pulled := filepath.Join(t.TempDir(), img.Name)
		if err := run(t.Context(), env, io.Discard, "crane", "pull", "--insecure", "--format", "oci", ref, pulled); err != nil {
			t.Errorf("%s: %v", img.Name, err)
			continue
		}
		if err := checkPulledIndex(pulled, img); err != nil {
			t.Errorf("%s: %v", img.Name, err)
		}
		var n int
		if err := compareTree(filepath.Join(dir, img.Name), pulled, img.Digest, img.MediaType, &n); err != nil {
			t.Errorf("%s: %v", img.Name, err)
			continue
		}
		t.Logf("%s: %s and %d blobs byte-identical to the source layout", ref, img.Digest, n)
	}
}

// checkPulledIndex checks the descriptor crane wrote for the pulled image.
func checkPulledIndex(layout string, img testImage) error {
	var idx struct {
		Manifests []descriptor `json:"manifests"`
	}
	b, err := os.ReadFile(filepath.Join(layout, "index.json"))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return fmt.Errorf("pulled index.json: %v", err)
	}
	for _, d := range idx.Manifests {
		if d.Digest == img.Digest {
			if d.MediaType != img.MediaType || d.Size != img.Size {
				return fmt.Errorf("pulled descriptor %s %s size %d, want %s size %d", d.Digest, d.MediaType, d.Size, img.MediaType, img.Size)
			}
			return nil
		}
	}
	return fmt.Errorf("pulled index.json does not list %s: %s", img.Digest, b)
}

type descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

// compareTree compares the blob dgst and everything it references in two OCI
// layouts, counting the blobs in *n.
func compareTree(src, dst, dgst, mediaType string, n *int) error {
	srcPath, dstPath := blobPath(src, dgst), blobPath(dst, dgst)
	if err := sameFile(srcPath, dstPath); err != nil {
		return fmt.Errorf("%s %s: %v", mediaType, dgst, err)
	}
	*n++
	if !strings.Contains(mediaType, "manifest") && !strings.Contains(mediaType, "index") {
		return nil
	}
	b, err := os.ReadFile(srcPath)
	if err != nil {
		return err
	}
	var m struct {
		Manifests []descriptor `json:"manifests"`
		Config    *descriptor  `json:"config"`
		Layers    []descriptor `json:"layers"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("%s: %v", dgst, err)
	}
	children := append(m.Manifests, m.Layers...)
	if m.Config != nil {
		children = append(children, *m.Config)
	}
	for _, c := range children {
		if err := compareTree(src, dst, c.Digest, c.MediaType, n); err != nil {
			return err
		}
	}
	return nil
}

func blobPath(layout, dgst string) string {
	alg, hexPart, _ := strings.Cut(dgst, ":")
	return filepath.Join(layout, "blobs", alg, hexPart)
}

// sameFile reports a difference between two files (missing, size, bytes).
func sameFile(a, b string) error {
	fa, err := os.Open(a)
	if err != nil {
		return fmt.Errorf("source: %v", err)
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return errors.New("not in the pulled layout")
		}
		return err
	}
	defer fb.Close()
	ra, rb := bufio.NewReaderSize(fa, 1<<20), bufio.NewReaderSize(fb, 1<<20)
	bufA, bufB := make([]byte, 1<<20), make([]byte, 1<<20)
	var off int64
	for {
		na, errA := io.ReadFull(ra, bufA)
		nb, errB := io.ReadFull(rb, bufB)
		if na != nb {
			return fmt.Errorf("pulled size differs from the source (after %d bytes)", off+int64(min(na, nb)))
		}
		if !bytes.Equal(bufA[:na], bufB[:nb]) {
			return fmt.Errorf("pulled bytes differ from the source near offset %d", off)
		}
		off += int64(na)
		endA := errA == io.EOF || errA == io.ErrUnexpectedEOF
		endB := errB == io.EOF || errB == io.ErrUnexpectedEOF
		if endA && endB {
			return nil
		}
		if endA != endB {
			return fmt.Errorf("pulled size differs from the source (after %d bytes)", off)
		}
		if errA != nil {
			return errA
		}
		if errB != nil {
			return errB
		}
	}
}

// TestTestImages pushes the four test images (busybox, multilayer with a
// 64 MiB layer, a multi-arch index, a debian rootfs) and pulls them back.
func TestTestImages(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	env := toolEnv(t)
	needTools(t, env, "skopeo", "crane")
	dir, imgs := testImages(t)
	srv := startServer(t, underTest(), Filesystem, t.TempDir())
	pushImages(t, env, srv.Host, "test-images", dir, imgs)
	verifyImages(t, env, srv.Host, "test-images", dir, imgs)
}

// mustOutput runs a client command and returns its trimmed stdout; it fails
// t if the command fails.
func mustOutput(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	out, err := output(t.Context(), env, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

package pull_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/runner/pull"
)

// consumer is a PullOptions.Layer that decompresses each layer, checks its diff_id as a
// real consumer must, reads the stream to io.EOF and keeps the compressed bytes.
type consumer struct {
	mu      sync.Mutex
	got     map[digest.Digest][]byte // compressed bytes by blob digest
	readErr map[digest.Digest]error  // how reading ended, for failed layers
	calls   int
}

func newConsumer() *consumer {
	return &consumer{got: map[digest.Digest][]byte{}, readErr: map[digest.Digest]error{}}
}

func (c *consumer) layer(_ context.Context, l pull.Layer, r io.Reader) error {
	c.mu.Lock()
	c.calls++
	c.mu.Unlock()
	var raw bytes.Buffer
	tee := io.TeeReader(r, &raw)
	err := func() error {
		var ur io.Reader = tee
		if l.Compression == pull.Gzip {
			zr, err := gzip.NewReader(tee)
			if err != nil {
				return err
			}
			ur = zr
		}
		h := digest.Canonical.Digester()
		if _, err := io.Copy(h.Hash(), ur); err != nil {
			return err
		}
		if _, err := io.Copy(io.Discard, tee); err != nil { // to io.EOF: the digest is verified
			return err
		}
		if l.Compression != pull.Zstd && h.Digest() != l.DiffID {
			return fmt.Errorf("diff_id %s, want %s", h.Digest(), l.DiffID)
		}
		return nil
	}()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.readErr[l.Descriptor.Digest] = err
		return fmt.Errorf("consumer: %w", err)
	}
	c.got[l.Descriptor.Digest] = raw.Bytes()
	return nil
}

// eventLog is a Progress that records events.
type eventLog struct {
	mu     sync.Mutex
	events []pull.Event
}

func (e *eventLog) Update(ev pull.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events = append(e.events, ev)
}

func (e *eventLog) kinds(k pull.EventKind) []pull.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []pull.Event
	for _, ev := range e.events {
		if ev.Kind == k {
			out = append(out, ev)
		}
	}
	return out
}

func noBackoff(int) time.Duration { return 0 }

func mustRef(t *testing.T, s string) pull.Reference {
	t.Helper()
	ref, err := pull.ParseReference(s, "")
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

func platformPtr(t *testing.T, s string) *pull.Platform {
	t.Helper()
	p, err := pull.ParsePlatform(s)
	if err != nil {
		t.Fatal(err)
	}
	return &p
}

// multiPlatform stores three images (amd64, arm64/v8, arm/v7) and an attestation-like
// entry in an index tagged "multi" of repo, and returns the images by platform.
func multiPlatform(t *testing.T, reg *testRegistry, repo string, docker bool) map[string]testImage {
	t.Helper()
	imgs := map[string]testImage{}
	var entries []ocispec.Descriptor
	for i, p := range []string{"linux/amd64", "linux/arm64/v8", "linux/arm/v7"} {
		mt := ""
		if docker {
			mt = dockerLayerGzip
		}
		img := reg.addImage(repo, imageSpec{platform: p, docker: docker, layers: []testLayer{
			makeLayer(t, int64(10*i+1), 1000, true, mt),
			makeLayer(t, int64(10*i+2), 3000, docker || i%2 == 0, mt),
		}})
		imgs[p] = img
		entries = append(entries, img.desc)
	}
	att := reg.addImage(repo, imageSpec{platform: "unknown/unknown"})
	entries = append(entries, att.desc)
	idx := reg.addIndex(repo, docker, entries...)
	reg.tag(repo, "multi", idx.Digest)
	return imgs
}

func TestPullSelectsPlatformFromIndex(t *testing.T) {
	for _, docker := range []bool{false, true} {
		t.Run(fmt.Sprintf("docker=%t", docker), func(t *testing.T) {
			reg := newTestRegistry(t)
			imgs := multiPlatform(t, reg, "team/app", docker)
			for _, tc := range []struct{ want, got string }{
				{"linux/amd64", "linux/amd64"},
				{"linux/arm64", "linux/arm64/v8"},
				{"linux/arm64/v8", "linux/arm64/v8"},
				{"linux/aarch64", "linux/arm64/v8"},
				{"linux/arm/v7", "linux/arm/v7"},
				{"linux/arm", "linux/arm/v7"},
				{"linux/arm/v8", "linux/arm/v7"}, // an armv8 CPU in 32-bit mode runs v7
			} {
				t.Run(tc.want, func(t *testing.T) {
					c := newConsumer()
					client := pull.NewClient(pull.ClientOptions{})
					img, err := client.Pull(context.Background(), mustRef(t, reg.host()+"/team/app:multi"),
						pull.PullOptions{Platform: platformPtr(t, tc.want), Layer: c.layer})
					if err != nil {
						t.Fatal(err)
					}
					want := imgs[tc.got]
					if img.Digest != want.desc.Digest {
						t.Errorf("pulled %s, want the %s manifest %s", img.Digest, tc.got, want.desc.Digest)
					}
					if img.Index == "" {
						t.Error("Image.Index is empty for a pull through an index")
					}
					if len(img.Layers) != len(want.layers) || len(c.got) != len(want.layers) {
						t.Fatalf("%d layers, consumer got %d, want %d", len(img.Layers), len(c.got), len(want.layers))
					}
					for i, l := range want.layers {
						if !bytes.Equal(c.got[l.desc.Digest], l.blob) {
							t.Errorf("layer %d: consumer got other bytes", i)
						}
						if img.Layers[i].DiffID != l.diffID {
							t.Errorf("layer %d: DiffID %s, want %s", i, img.Layers[i].DiffID, l.diffID)
						}
					}
					if !bytes.Equal(img.RawConfig, want.config) {
						t.Error("RawConfig differs from the config")
					}
				})
			}
			t.Run("no match", func(t *testing.T) {
				client := pull.NewClient(pull.ClientOptions{})
				_, err := client.Pull(context.Background(), mustRef(t, reg.host()+"/team/app:multi"),
					pull.PullOptions{Platform: platformPtr(t, "linux/riscv64"), Layer: newConsumer().layer})
				if !errors.Is(err, pull.ErrNoMatchingPlatform) {
					t.Fatalf("err = %v, want ErrNoMatchingPlatform", err)
				}
				if !strings.Contains(err.Error(), "linux/amd64, linux/arm/v7, linux/arm64/v8") {
					t.Errorf("error does not list the available platforms: %v", err)
				}
				if strings.Contains(err.Error(), "unknown") {
					t.Errorf("error lists the attestation entry: %v", err)
				}
			})
			t.Run("arm/v6 does not run v7", func(t *testing.T) {
				client := pull.NewClient(pull.ClientOptions{})
				_, err := client.Resolve(context.Background(), mustRef(t, reg.host()+"/team/app:multi"), platformPtr(t, "linux/arm/v6"))
				if !errors.Is(err, pull.ErrNoMatchingPlatform) {
					t.Fatalf("err = %v, want ErrNoMatchingPlatform", err)
				}
			})
		})
	}
}

func TestPullNestedIndex(t *testing.T) {
	reg := newTestRegistry(t)
	amd := reg.addImage("app", imageSpec{platform: "linux/amd64", layers: []testLayer{makeLayer(t, 1, 100, true, "")}})
	arm := reg.addImage("app", imageSpec{platform: "linux/arm64", layers: []testLayer{makeLayer(t, 2, 100, true, "")}})
	inner := reg.addIndex("app", false, amd.desc, arm.desc) // no platform on the inner index's entry
	outer := reg.addIndex("app", false, inner)
	reg.tag("app", "nested", outer.Digest)

	img, err := pull.NewClient(pull.ClientOptions{}).Resolve(context.Background(), mustRef(t, reg.host()+"/app:nested"), platformPtr(t, "linux/arm64"))
	if err != nil {
		t.Fatal(err)
	}
	if img.Digest != arm.desc.Digest || img.Index != outer.Digest {
		t.Errorf("resolved %s via %s, want %s via %s", img.Digest, img.Index, arm.desc.Digest, outer.Digest)
	}

	// Four levels are too many.
	d := outer
	for range 3 {
		d = reg.addIndex("app", false, d)
	}
	reg.tag("app", "deep", d.Digest)
	_, err = pull.NewClient(pull.ClientOptions{}).Resolve(context.Background(), mustRef(t, reg.host()+"/app:deep"), platformPtr(t, "linux/arm64"))
	if !errors.Is(err, pull.ErrInvalidImage) {
		t.Fatalf("err = %v, want ErrInvalidImage for indexes nested too deep", err)
	}
}

func TestPullSingleManifestPlatform(t *testing.T) {
	reg := newTestRegistry(t)
	img := reg.addImage("solo", imageSpec{platform: "linux/arm64", layers: []testLayer{makeLayer(t, 1, 100, true, "")}})
	reg.tag("solo", "v1", img.desc.Digest)
	ref := mustRef(t, reg.host()+"/solo:v1")
	client := pull.NewClient(pull.ClientOptions{})
	if _, err := client.Resolve(context.Background(), ref, platformPtr(t, "linux/amd64")); !errors.Is(err, pull.ErrNoMatchingPlatform) {
		t.Errorf("explicit linux/amd64 for an arm64 image: err = %v, want ErrNoMatchingPlatform", err)
	}
	got, err := client.Resolve(context.Background(), ref, platformPtr(t, "linux/arm64/v8"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Platform.String() != "linux/arm64/v8" || got.Index != "" {
		t.Errorf("Platform %s, Index %q; want linux/arm64/v8 and no index", got.Platform, got.Index)
	}
	// Without an explicit platform, a single-platform image is resolved whatever it is
	// for; the caller can compare Image.Platform with the host's.
	if _, err := client.Resolve(context.Background(), ref, nil); err != nil {
		t.Errorf("no platform asked: %v", err)
	}
}

func TestPullTokenAuth(t *testing.T) {
	reg := newTestRegistry(t)
	reg.requireToken("alice", "s3cret")
	imgs := multiPlatform(t, reg, "team/app", false)
	ref := mustRef(t, reg.host()+"/team/app:multi")

	creds := func(host string) (pull.Credentials, error) {
		if host != reg.host() {
			t.Errorf("credentials asked for %q, want %q", host, reg.host())
		}
		return pull.Credentials{Username: "alice", Password: "s3cret"}, nil
	}
	c := newConsumer()
	img, err := pull.NewClient(pull.ClientOptions{Credentials: creds}).Pull(context.Background(), ref,
		pull.PullOptions{Platform: platformPtr(t, "linux/amd64"), Layer: c.layer})
	if err != nil {
		t.Fatal(err)
	}
	if img.Digest != imgs["linux/amd64"].desc.Digest {
		t.Errorf("pulled %s", img.Digest)
	}
	reg.mu.Lock()
	toks := reg.tokenRequests
	reg.mu.Unlock()
	// One token serves the index, the manifest, the config and both layers.
	if len(toks) != 1 {
		t.Fatalf("%d token requests, want 1: %+v", len(toks), toks)
	}
	if tr := toks[0]; tr.method != http.MethodGet || tr.user != "alice" || tr.account != "alice" ||
		tr.scope != "repository:team/app:pull" || tr.service != testService {
		t.Errorf("token request %+v, want GET as alice for repository:team/app:pull of %s", tr, testService)
	}

	t.Run("wrong password", func(t *testing.T) {
		bad := func(string) (pull.Credentials, error) {
			return pull.Credentials{Username: "alice", Password: "nope"}, nil
		}
		_, err := pull.NewClient(pull.ClientOptions{Credentials: bad}).Resolve(context.Background(), ref, nil)
		if !errors.Is(err, pull.ErrUnauthorized) {
			t.Fatalf("err = %v, want ErrUnauthorized", err)
		}
	})
	t.Run("anonymous", func(t *testing.T) {
		_, err := pull.NewClient(pull.ClientOptions{}).Resolve(context.Background(), ref, nil)
		if !errors.Is(err, pull.ErrUnauthorized) {
			t.Fatalf("err = %v, want ErrUnauthorized", err)
		}
	})
	t.Run("basic", func(t *testing.T) {
		reg.mu.Lock()
		reg.basic = true
		reg.mu.Unlock()
		defer func() { reg.mu.Lock(); reg.basic = false; reg.mu.Unlock() }()
		if _, err := pull.NewClient(pull.ClientOptions{Credentials: creds}).Pull(context.Background(), ref,
			pull.PullOptions{Platform: platformPtr(t, "linux/arm/v7"), Layer: newConsumer().layer}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestPullRefusesDigestMismatch(t *testing.T) {
	setup := func(t *testing.T) (*testRegistry, testImage) {
		reg := newTestRegistry(t)
		img := reg.addImage("app", imageSpec{platform: "linux/amd64", layers: []testLayer{
			makeLayer(t, 1, 2000, true, ""), makeLayer(t, 2, 2000, false, ""),
		}})
		reg.tag("app", "v1", img.desc.Digest)
		return reg, img
	}
	flip := func(b []byte) []byte {
		c := bytes.Clone(b)
		c[len(c)/2] ^= 0xff
		return c
	}
	pullIt := func(t *testing.T, reg *testRegistry, ref string, c *consumer) error {
		_, err := pull.NewClient(pull.ClientOptions{}).Pull(context.Background(), mustRef(t, reg.host()+"/"+ref),
			pull.PullOptions{Platform: platformPtr(t, "linux/amd64"), Layer: c.layer})
		return err
	}

	t.Run("manifest by digest", func(t *testing.T) {
		reg, img := setup(t)
		reg.setManifest("app", img.desc.Digest.String(), img.desc.MediaType, bytes.Replace(img.manifest, []byte(`"schemaVersion":2`), []byte(`"schemaVersion":2 `), 1))
		if err := pullIt(t, reg, "app@"+img.desc.Digest.String(), newConsumer()); !errors.Is(err, pull.ErrDigestMismatch) {
			t.Fatalf("err = %v, want ErrDigestMismatch", err)
		}
	})
	t.Run("manifest by tag with Docker-Content-Digest", func(t *testing.T) {
		reg, _ := setup(t)
		reg.header["app@v1"] = map[string]string{"Docker-Content-Digest": digest.FromString("other").String()}
		if err := pullIt(t, reg, "app:v1", newConsumer()); !errors.Is(err, pull.ErrDigestMismatch) {
			t.Fatalf("err = %v, want ErrDigestMismatch", err)
		}
	})
	t.Run("manifest from an index", func(t *testing.T) {
		reg, img := setup(t)
		idx := reg.addIndex("app", false, img.desc)
		reg.tag("app", "multi", idx.Digest)
		reg.setManifest("app", img.desc.Digest.String(), img.desc.MediaType, bytes.Replace(img.manifest, []byte(`"schemaVersion":2`), []byte(`"schemaVersion":2 `), 1))
		if err := pullIt(t, reg, "app:multi", newConsumer()); !errors.Is(err, pull.ErrDigestMismatch) {
			t.Fatalf("err = %v, want ErrDigestMismatch", err)
		}
	})
	t.Run("config", func(t *testing.T) {
		reg, img := setup(t)
		reg.override[img.cfgDesc.Digest] = flip(img.config)
		c := newConsumer()
		if err := pullIt(t, reg, "app:v1", c); !errors.Is(err, pull.ErrDigestMismatch) {
			t.Fatalf("err = %v, want ErrDigestMismatch", err)
		}
		if c.calls != 0 {
			t.Errorf("the consumer was called %d times before the config verified", c.calls)
		}
	})
	t.Run("layer", func(t *testing.T) {
		reg, img := setup(t)
		bad := img.layers[1]
		reg.override[bad.desc.Digest] = flip(bad.blob)
		c := newConsumer()
		err := pullIt(t, reg, "app:v1", c)
		if !errors.Is(err, pull.ErrDigestMismatch) {
			t.Fatalf("err = %v, want ErrDigestMismatch", err)
		}
		if _, committed := c.got[bad.desc.Digest]; committed {
			t.Error("the consumer reached io.EOF on a corrupt layer")
		}
		if !errors.Is(c.readErr[bad.desc.Digest], pull.ErrDigestMismatch) {
			t.Errorf("the consumer's read ended with %v, want ErrDigestMismatch", c.readErr[bad.desc.Digest])
		}
	})
	t.Run("layer longer than its descriptor", func(t *testing.T) {
		reg, img := setup(t)
		l := img.layers[1]
		reg.override[l.desc.Digest] = append(bytes.Clone(l.blob), "trailing"...)
		// Only Size bytes are read: the extra bytes are never handed over, the digest matches.
		c := newConsumer()
		if err := pullIt(t, reg, "app:v1", c); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(c.got[l.desc.Digest], l.blob) {
			t.Error("the consumer got bytes beyond the descriptor's size")
		}
	})
}

func TestPullResumesWithRange(t *testing.T) {
	reg := newTestRegistry(t)
	big := makeLayer(t, 7, 300_000, false, "")
	img := reg.addImage("app", imageSpec{platform: "linux/amd64", layers: []testLayer{big}})
	reg.tag("app", "v1", img.desc.Digest)
	const cut = 100_000
	reg.dropAfter[big.desc.Digest] = []int64{cut}

	c, events := newConsumer(), &eventLog{}
	_, err := pull.NewClient(pull.ClientOptions{Backoff: noBackoff}).Pull(context.Background(), mustRef(t, reg.host()+"/app:v1"),
		pull.PullOptions{Platform: platformPtr(t, "linux/amd64"), Layer: c.layer, Progress: events})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c.got[big.desc.Digest], big.blob) {
		t.Fatal("the consumer got other bytes than the layer")
	}
	log := reg.blobLog(big.desc.Digest)
	if len(log) != 2 {
		t.Fatalf("%d requests for the layer, want 2: %+v", len(log), log)
	}
	if log[0].rangeHeader != "" || log[0].served != cut {
		t.Errorf("first request: Range %q, %d bytes served; want no Range and %d", log[0].rangeHeader, log[0].served, cut)
	}
	if want := fmt.Sprintf("bytes=%d-", cut); log[1].rangeHeader != want {
		t.Errorf("second request: Range %q, want %q", log[1].rangeHeader, want)
	}
	if total := log[0].served + log[1].served; total != big.desc.Size {
		t.Errorf("%d bytes served in all, want exactly the layer's %d", total, big.desc.Size)
	}
	retries := events.kinds(pull.EventLayerRetry)
	if len(retries) != 1 || retries[0].Done != cut {
		t.Errorf("retry events %+v, want one at offset %d", retries, cut)
	}
}

func TestPullResumesAStalledConnection(t *testing.T) {
	reg := newTestRegistry(t)
	big := makeLayer(t, 12, 100_000, true, "")
	img := reg.addImage("app", imageSpec{platform: "linux/amd64", layers: []testLayer{big}})
	reg.tag("app", "v1", img.desc.Digest)
	reg.stall = true
	reg.dropAfter[big.desc.Digest] = []int64{30_000}

	c := newConsumer()
	_, err := pull.NewClient(pull.ClientOptions{IdleTimeout: 50 * time.Millisecond, Backoff: noBackoff}).Pull(context.Background(),
		mustRef(t, reg.host()+"/app:v1"), pull.PullOptions{Platform: platformPtr(t, "linux/amd64"), Layer: c.layer})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c.got[big.desc.Digest], big.blob) {
		t.Fatal("the consumer got other bytes than the layer")
	}
	log := reg.blobLog(big.desc.Digest)
	if len(log) != 2 || log[1].rangeHeader != "bytes=30000-" {
		t.Errorf("requests %+v, want a second one from byte 30000", log)
	}
}

func TestPullRestartsWhenRangeIsIgnored(t *testing.T) {
	reg := newTestRegistry(t)
	big := makeLayer(t, 8, 200_000, true, "")
	img := reg.addImage("app", imageSpec{platform: "linux/amd64", layers: []testLayer{big}})
	reg.tag("app", "v1", img.desc.Digest)
	reg.ignoreRange = true
	reg.dropAfter[big.desc.Digest] = []int64{50_000}

	c := newConsumer()
	_, err := pull.NewClient(pull.ClientOptions{Backoff: noBackoff}).Pull(context.Background(), mustRef(t, reg.host()+"/app:v1"),
		pull.PullOptions{Platform: platformPtr(t, "linux/amd64"), Layer: c.layer})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c.got[big.desc.Digest], big.blob) {
		t.Fatal("the consumer got other bytes than the layer (the restart must skip what was delivered)")
	}
	if log := reg.blobLog(big.desc.Digest); len(log) != 2 || log[1].served != big.desc.Size {
		t.Errorf("requests %+v, want a second one serving the whole blob", log)
	}
}

func TestPullGivesUpAfterRetries(t *testing.T) {
	reg := newTestRegistry(t)
	l := makeLayer(t, 9, 10_000, false, "")
	img := reg.addImage("app", imageSpec{platform: "linux/amd64", layers: []testLayer{l}})
	reg.tag("app", "v1", img.desc.Digest)
	reg.dropAfter[l.desc.Digest] = []int64{0, 0, 0, 0, 0, 0, 0, 0} // never a byte

	_, err := pull.NewClient(pull.ClientOptions{Retries: 2, Backoff: noBackoff}).Pull(context.Background(), mustRef(t, reg.host()+"/app:v1"),
		pull.PullOptions{Platform: platformPtr(t, "linux/amd64"), Layer: newConsumer().layer})
	if err == nil {
		t.Fatal("pull succeeded although every connection dropped")
	}
	if n := len(reg.blobLog(l.desc.Digest)); n != 3 {
		t.Errorf("%d requests, want 3 (the first and 2 retries)", n)
	}
}

func TestPullRedirectDropsAuthorization(t *testing.T) {
	reg := newTestRegistry(t)
	reg.requireToken("alice", "s3cret")
	big := makeLayer(t, 11, 150_000, true, "")
	img := reg.addImage("app", imageSpec{platform: "linux/amd64", layers: []testLayer{big}})
	reg.tag("app", "v1", img.desc.Digest)

	// The storage server behind the redirect: records every request's headers, serves
	// Range requests, and drops the first connection for the layer after 60000 bytes.
	var mu sync.Mutex
	var seen []http.Header
	dropped := false
	storage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		d := digest.Digest(strings.TrimPrefix(req.URL.Path, "/"))
		mu.Lock()
		seen = append(seen, req.Header.Clone())
		drop := d == big.desc.Digest && !dropped
		dropped = dropped || drop
		mu.Unlock()
		reg.mu.Lock()
		content := reg.blobs[d]
		reg.mu.Unlock()
		if req.URL.Query().Get("sig") != "presigned" || content == nil {
			http.NotFound(w, req)
			return
		}
		if drop {
			w.Header().Set("Content-Length", fmt.Sprint(len(content)))
			w.Write(content[:60_000])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		http.ServeContent(w, req, "", time.Time{}, bytes.NewReader(content))
	}))
	defer storage.Close()
	reg.redirect = func(d digest.Digest) string { return storage.URL + "/" + d.String() + "?sig=presigned" }
	creds := func(string) (pull.Credentials, error) {
		return pull.Credentials{Username: "alice", Password: "s3cret"}, nil
	}
	c := newConsumer()
	if _, err := pull.NewClient(pull.ClientOptions{Credentials: creds}).Pull(context.Background(), mustRef(t, reg.host()+"/app:v1"),
		pull.PullOptions{Platform: platformPtr(t, "linux/amd64"), Layer: c.layer}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c.got[big.desc.Digest], big.blob) {
		t.Error("the consumer got other bytes than the layer")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 3 { // the config, the layer, the layer again from byte 60000
		t.Fatalf("the storage server got %d requests, want 3 (config, layer, resumed layer)", len(seen))
	}
	if r := seen[2].Get("Range"); r != "bytes=60000-" {
		t.Errorf("the resumed request through the redirect has Range %q, want bytes=60000-", r)
	}
	for _, h := range seen {
		if a := h.Get("Authorization"); a != "" {
			t.Errorf("the storage server received Authorization %q", a)
		}
	}
	// The registry itself did get the token.
	reg.mu.Lock()
	defer reg.mu.Unlock()
	for _, b := range reg.blobRequests {
		if !strings.HasPrefix(b.authorization, "Bearer ") {
			t.Errorf("registry blob request %s without the bearer token", b.path)
		}
	}
}

func TestPullForeignLayers(t *testing.T) {
	setup := func(t *testing.T) (*testRegistry, testLayer, *[]http.Header, string) {
		reg := newTestRegistry(t)
		reg.requireToken("alice", "s3cret")
		foreign := makeLayer(t, 21, 5000, true, dockerForeignLayer)
		var mu sync.Mutex
		seen := &[]http.Header{}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			mu.Lock()
			*seen = append(*seen, req.Header.Clone())
			mu.Unlock()
			http.ServeContent(w, req, "", time.Time{}, bytes.NewReader(foreign.blob))
		}))
		t.Cleanup(srv.Close)
		foreign.desc.URLs = []string{srv.URL + "/nope-first", srv.URL + "/layer.tar.gz"}
		base := makeLayer(t, 22, 500, true, dockerLayerGzip)
		img := reg.addImage("win", imageSpec{platform: "linux/amd64", docker: true, layers: []testLayer{foreign, base}})
		reg.tag("win", "v1", img.desc.Digest)
		return reg, foreign, seen, srv.URL
	}
	creds := func(string) (pull.Credentials, error) {
		return pull.Credentials{Username: "alice", Password: "s3cret"}, nil
	}

	t.Run("fetched from urls without credentials", func(t *testing.T) {
		reg, foreign, seen, _ := setup(t)
		c := newConsumer()
		if _, err := pull.NewClient(pull.ClientOptions{Credentials: creds}).Pull(context.Background(), mustRef(t, reg.host()+"/win:v1"),
			pull.PullOptions{Platform: platformPtr(t, "linux/amd64"), Layer: c.layer}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(c.got[foreign.desc.Digest], foreign.blob) {
			t.Error("the consumer got other bytes than the foreign layer")
		}
		if len(*seen) == 0 {
			t.Fatal("the foreign URL was not contacted")
		}
		for _, h := range *seen {
			if a := h.Get("Authorization"); a != "" {
				t.Errorf("the foreign URL received Authorization %q", a)
			}
		}
		if n := len(reg.blobLog(foreign.desc.Digest)); n != 0 {
			t.Errorf("the registry was asked for the foreign layer %d times although its URL served it", n)
		}
	})
	t.Run("NoForeignURLs", func(t *testing.T) {
		reg, foreign, seen, _ := setup(t)
		_, err := pull.NewClient(pull.ClientOptions{Credentials: creds}).Pull(context.Background(), mustRef(t, reg.host()+"/win:v1"),
			pull.PullOptions{Platform: platformPtr(t, "linux/amd64"), Layer: newConsumer().layer, NoForeignURLs: true})
		if !errors.Is(err, pull.ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound (the registry does not hold the foreign layer)", err)
		}
		if len(*seen) != 0 {
			t.Errorf("the foreign URL was contacted %d times", len(*seen))
		}
		if n := len(reg.blobLog(foreign.desc.Digest)); n == 0 {
			t.Error("the registry was not asked for the layer")
		}
	})
}

func TestPullSkipsLayersTheConsumerHas(t *testing.T) {
	reg := newTestRegistry(t)
	imgs := multiPlatform(t, reg, "app", false)
	want := imgs["linux/arm64/v8"]
	var asked []pull.Layer
	c, events := newConsumer(), &eventLog{}
	img, err := pull.NewClient(pull.ClientOptions{}).Pull(context.Background(), mustRef(t, reg.host()+"/app:multi"), pull.PullOptions{
		Platform: platformPtr(t, "linux/arm64"),
		Have:     func(l pull.Layer) bool { asked = append(asked, l); return true },
		Layer:    c.layer,
		Progress: events,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(asked) != len(want.layers) || c.calls != 0 {
		t.Errorf("Have asked for %d layers, consumer called %d times; want %d and 0", len(asked), c.calls, len(want.layers))
	}
	if asked[0].ChainID != want.layers[0].diffID ||
		asked[1].ChainID != digest.FromString(want.layers[0].diffID.String()+" "+want.layers[1].diffID.String()) {
		t.Errorf("ChainIDs %s, %s do not follow the image spec", asked[0].ChainID, asked[1].ChainID)
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if len(reg.blobRequests) != 1 || !strings.HasSuffix(reg.blobRequests[0].path, want.cfgDesc.Digest.String()) {
		t.Errorf("blob requests %+v, want only the config", reg.blobRequests)
	}
	if len(reg.manifestReqs) != 2 {
		t.Errorf("%d manifest requests, want 2 (index and manifest)", len(reg.manifestReqs))
	}
	if n := len(events.kinds(pull.EventLayerSkipped)); n != 2 || img == nil {
		t.Errorf("%d skipped events, want 2", n)
	}
}

func TestPullRefusesInconsistentImages(t *testing.T) {
	reg := newTestRegistry(t)
	l := makeLayer(t, 1, 100, true, "")
	short := reg.addImage("app", imageSpec{platform: "linux/amd64", layers: []testLayer{l, makeLayer(t, 2, 100, true, "")},
		diffIDs: []digest.Digest{l.diffID}})
	reg.tag("app", "short", short.desc.Digest)
	odd := reg.addImage("app", imageSpec{platform: "linux/amd64", layers: []testLayer{makeLayer(t, 3, 100, true, "application/vnd.example.thing")}})
	reg.tag("app", "odd", odd.desc.Digest)
	zstd := reg.addImage("app", imageSpec{platform: "linux/amd64", layers: []testLayer{makeLayer(t, 4, 100, false, ocispec.MediaTypeImageLayerZstd)}})
	reg.tag("app", "zstd", zstd.desc.Digest)

	client := pull.NewClient(pull.ClientOptions{})
	if _, err := client.Resolve(context.Background(), mustRef(t, reg.host()+"/app:short"), nil); !errors.Is(err, pull.ErrInvalidImage) {
		t.Errorf("fewer diff_ids than layers: err = %v, want ErrInvalidImage", err)
	}
	if _, err := client.Resolve(context.Background(), mustRef(t, reg.host()+"/app:odd"), nil); !errors.Is(err, pull.ErrUnsupported) {
		t.Errorf("unknown layer media type: err = %v, want ErrUnsupported", err)
	}
	if _, err := client.Resolve(context.Background(), mustRef(t, reg.host()+"/app:missing"), nil); !errors.Is(err, pull.ErrNotFound) {
		t.Errorf("unknown tag: err = %v, want ErrNotFound", err)
	}
	img, err := client.Resolve(context.Background(), mustRef(t, reg.host()+"/app:zstd"), nil)
	if err != nil || img.Layers[0].Compression != pull.Zstd {
		t.Errorf("zstd layer: %v, want it resolved as Zstd", err)
	}
}

func TestPullParallelAndCancel(t *testing.T) {
	reg := newTestRegistry(t)
	var layers []testLayer
	for i := range 6 {
		layers = append(layers, makeLayer(t, int64(100+i), 2000, i%2 == 0, ""))
	}
	img := reg.addImage("app", imageSpec{platform: "linux/amd64", layers: layers})
	reg.tag("app", "v1", img.desc.Digest)

	// The consumer blocks until Parallel layers are in flight at once, proving they are.
	const parallel = 3
	var mu sync.Mutex
	inFlight, maxInFlight := 0, 0
	reached := make(chan struct{})
	var once sync.Once
	c := newConsumer()
	layer := func(ctx context.Context, l pull.Layer, r io.Reader) error {
		mu.Lock()
		inFlight++
		maxInFlight = max(maxInFlight, inFlight)
		if inFlight == parallel {
			once.Do(func() { close(reached) })
		}
		mu.Unlock()
		select {
		case <-reached:
		case <-ctx.Done():
			return ctx.Err()
		}
		err := c.layer(ctx, l, r)
		mu.Lock()
		inFlight--
		mu.Unlock()
		return err
	}
	if _, err := pull.NewClient(pull.ClientOptions{}).Pull(context.Background(), mustRef(t, reg.host()+"/app:v1"),
		pull.PullOptions{Platform: platformPtr(t, "linux/amd64"), Layer: layer, Parallel: parallel}); err != nil {
		t.Fatal(err)
	}
	if maxInFlight != parallel || len(c.got) != len(layers) {
		t.Errorf("at most %d layers at once, %d consumed; want %d and %d", maxInFlight, len(c.got), parallel, len(layers))
	}

	// A consumer failure stops the pull and is returned.
	boom := errors.New("disk full")
	_, err := pull.NewClient(pull.ClientOptions{}).Pull(context.Background(), mustRef(t, reg.host()+"/app:v1"),
		pull.PullOptions{Platform: platformPtr(t, "linux/amd64"), Layer: func(context.Context, pull.Layer, io.Reader) error { return boom }})
	if !errors.Is(err, boom) {
		t.Errorf("err = %v, want the consumer's error", err)
	}
}

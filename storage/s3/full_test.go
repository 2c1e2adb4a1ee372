package s3

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/gc"
	"github.com/berth-registry/berth/internal/versitygw"
	"github.com/berth-registry/berth/storage"
	"github.com/berth-registry/berth/storage/store"
)

// testFullBucket: a bucket over its quota refuses writes with an error
// that storage.IsFull knows, and garbage collection still runs on it: it
// releases its reserve (a delete, which frees room under a quota), writes
// what it must and deletes a deleted image's blobs.
func testFullBucket(t *testing.T, srv *versitygw.Server) {
	ctx := t.Context()
	proxy := newS3Proxy(t, srv.Endpoint)
	d := newTestDriver(t, srv, func(c *Config) { c.Endpoint = proxy.srv.URL })
	st := store.New(d, store.Options{})
	t.Cleanup(func() { d.Delete(context.Background(), "/docker") })

	put := func(b []byte) digest.Digest {
		t.Helper()
		dg := digest.FromBytes(b)
		if _, err := st.PutBlob(ctx, "app", bytes.NewReader(b), dg); err != nil {
			t.Fatal(err)
		}
		return dg
	}
	layer, config := []byte("a layer the collector deletes"), []byte(`{"architecture":"amd64","os":"linux"}`)
	ld, cd := put(layer), put(config)
	body := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%d}]}`, cd, len(config), ld, len(layer))
	res, err := st.PutManifest(ctx, "app", nil, "", "application/vnd.oci.image.manifest.v1+json", body)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteManifest(ctx, "app", res.Digest); err != nil {
		t.Fatal(err)
	}
	if err := st.Reserve(ctx, 64<<10); err != nil {
		t.Fatal(err)
	}
	// S3 keeps modification times to the second: let the collector's
	// start (the storage's clock) be later than the blobs'.
	time.Sleep(1100 * time.Millisecond)

	proxy.setFull()
	if err := storage.WriteAll(ctx, d, "/probe", []byte("x")); !storage.IsFull(err) {
		t.Fatalf("a write to the full bucket: %v; want an error IsFull knows", err)
	}
	rep, err := gc.Run(ctx, st, gc.Options{Grace: gc.NoGrace, Reserve: 64 << 10})
	if err != nil {
		t.Fatalf("gc on the full bucket: %v", err)
	}
	if rep.Deleted.Blobs < 2 {
		t.Errorf("gc on the full bucket deleted %+v; want the layer and the config", rep.Deleted)
	}
	if _, err := d.Stat(ctx, "/docker/registry/v2/_berth/gc/reserve"); err != nil {
		t.Errorf("the reserve after the run: %v", err)
	}
}

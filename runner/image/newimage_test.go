package image_test

import (
	"archive/tar"
	"bytes"
	"io"
	"testing"

	"github.com/berth-registry/berth/runner/image"
)

// TestStoreLayerDeterministic: the same tar stream stored in two stores
// gives the same blob, whose gzip header has no time, no name and a
// fixed OS byte, so that a reproducible build's layer digests depend on
// the files alone.
func TestStoreLayerDeterministic(t *testing.T) {
	needRoot(t)
	var tarBytes bytes.Buffer
	tw := tar.NewWriter(&tarBytes)
	for _, n := range []string{"a", "b"} {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: 1, Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(n))
	}
	tw.Close()
	var blobs [][]byte
	for range 2 {
		s := openStore(t)
		l, err := s.StoreLayer(t.Context(), image.FormatOCI.Layer, func(w io.Writer) error {
			_, err := w.Write(tarBytes.Bytes())
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		b, err := s.ReadBlob(l.Digest)
		if err != nil {
			t.Fatal(err)
		}
		blobs = append(blobs, b)
	}
	if !bytes.Equal(blobs[0], blobs[1]) {
		t.Fatal("the same layer stored twice gave two blobs")
	}
	h := blobs[0]
	if len(h) < 10 || h[0] != 0x1f || h[1] != 0x8b {
		t.Fatalf("not gzip: % x", h[:min(len(h), 10)])
	}
	if flags, mtime := h[3], h[4:8]; flags != 0 || !bytes.Equal(mtime, []byte{0, 0, 0, 0}) {
		t.Errorf("gzip header: flags %#x, mtime % x; want no name, comment or time", flags, mtime)
	}
}

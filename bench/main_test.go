package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestChunksFollowTheFile: the chunk files the chunked push sends are the
// blob file cut in pieces, after each fresh tail too, and the digest is the
// file's, whichever chunk the tail falls in.
func TestChunksFollowTheFile(t *testing.T) {
	for _, c := range []struct{ size, chunk int64 }{
		{100_000, 4096},
		{100_000, 100_000 - 10}, // the tail across the last two chunks
		{4096 * 3, 4096},
		{5000, 1 << 20},
	} {
		b := &bench{size: c.size, chunk: c.chunk}
		if err := b.makeFile(filepath.Join(t.TempDir(), "blob")); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			dgst, err := b.freshDigest()
			if err != nil {
				t.Fatal(err)
			}
			file, err := os.ReadFile(b.file)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(file)
			if want := "sha256:" + hex.EncodeToString(sum[:]); dgst != want || int64(len(file)) != c.size {
				t.Fatalf("size %d: digest %s of a %d-byte file, want %s", c.size, dgst, len(file), want)
			}
			var joined []byte
			for _, p := range b.chunks {
				part, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				if int64(len(part)) > c.chunk {
					t.Fatalf("chunk %s holds %d bytes, more than %d", p, len(part), c.chunk)
				}
				joined = append(joined, part...)
			}
			if !bytes.Equal(joined, file) {
				t.Fatalf("size %d, chunk %d: the %d chunks differ from the file", c.size, c.chunk, len(b.chunks))
			}
		}
	}
}

// TestTableRatios: the ratio table divides the first column's median (and
// best) by every other column's, and leaves out what has no samples.
func TestTableRatios(t *testing.T) {
	f := newFigure("push", "MiB/s")
	f.samples["berth"] = []float64{90, 100, 110}
	f.samples["dd"] = []float64{100, 200, 50}
	g := newFigure("pull", "MiB/s")
	g.samples["berth"] = []float64{10}
	var out bytes.Buffer
	printTable(&out, []string{"berth", "dd"}, []*figure{f, g})
	var row string
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.Contains(l, "push") && strings.Contains(l, "(") {
			row = l
		}
	}
	if !strings.Contains(row, "1.00 (0.55)") {
		t.Errorf("push ratio row %q, want median 100/100 and best 110/200 as 1.00 (0.55)\n%s", row, out.String())
	}
}

func TestZBMedians(t *testing.T) {
	got := zbMedians("zb: Get Catalog: 8.2 req/s (runs: 8.2 7.9 9.0)\nnoise\nzb: Pull 75% and Push 25% Mixed 1MB: 177.0 req/s (runs: 177.0)\n")
	want := map[string]string{
		"Get Catalog":                     "8.2 req/s (runs: 8.2 7.9 9.0)",
		"Pull 75% and Push 25% Mixed 1MB": "177.0 req/s (runs: 177.0)",
	}
	if len(got) != len(want) {
		t.Fatalf("zbMedians = %q", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("zbMedians[%q] = %q, want %q", k, got[k], v)
		}
	}
}

package layers_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/berth-registry/berth/runner/layers"
)

// BenchmarkUnpack unpacks a ~100 MiB layer (400 files of 256 KiB, half
// random, half text-like) in each compression, into a fresh store each
// time. Run with -benchtime=3x or so; it reports MB/s of uncompressed tar.
func BenchmarkUnpack(b *testing.B) {
	requireRoot(b)
	rng := rand.New(rand.NewPCG(1, 2))
	var ents []ent
	for i := range 400 {
		body := make([]byte, 256<<10)
		if i%2 == 0 {
			for j := range body {
				body[j] = byte(rng.Uint32())
			}
		} else {
			for j := range body {
				body[j] = "abcdefgh ijklmnop\n"[rng.IntN(18)]
			}
		}
		ents = append(ents, reg(fmt.Sprintf("d%02d/f%03d", i/20, i), string(body), 0o644))
	}
	tarball := buildTar(b, ents...)
	for _, c := range compressions {
		blob := c.compress(b, tarball)
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(tarball)))
			for b.Loop() {
				b.StopTimer()
				s, err := layers.Open(b.TempDir())
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if _, err := s.Unpack(context.Background(), bytes.NewReader(blob), c.mediaType, sha(tarball), layers.Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

package store

import (
	"bytes"
	"crypto/sha256"
	"math/rand/v2"
	"testing"
)

// TestCopyHashingShare: whatever part of the shared pipeline buffers is
// free (all, some, none: the three stages then take turns on one buffer),
// the copy writes and hashes every byte, and gives back what it took.
func TestCopyHashingShare(t *testing.T) {
	data := make([]byte, 5*copyBufferSize+12345)
	rand.NewChaCha8([32]byte{1}).Read(data)
	want := sha256.Sum256(data)
	for _, taken := range []int{0, cap(pipelineShare) - 3, cap(pipelineShare)} {
		for range taken {
			pipelineShare <- struct{}{}
		}
		var w bytes.Buffer
		h := sha256.New()
		if err := copyHashing(&w, h, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(w.Bytes(), data) || !bytes.Equal(h.Sum(nil), want[:]) {
			t.Errorf("with %d of %d shared buffers taken: wrote %d bytes, hash differs: %t",
				taken, cap(pipelineShare), w.Len(), !bytes.Equal(h.Sum(nil), want[:]))
		}
		if len(pipelineShare) != taken {
			t.Errorf("with %d shared buffers taken, %d are after the copy", taken, len(pipelineShare))
		}
		for range taken {
			<-pipelineShare
		}
	}
}

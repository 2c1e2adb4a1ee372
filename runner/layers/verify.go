package layers

import (
	"fmt"
	"hash"
	"io"

	"github.com/opencontainers/go-digest"
)

// VerifyReader returns a reader of r that checks the bytes against a
// descriptor while they stream: at r's end it returns an error wrapping
// ErrDigestMismatch instead of io.EOF if they do not hash to want or, when
// size >= 0, do not number size; reading past size fails at once. Wrapped
// around a compressed blob given to Unpack, it makes a bad blob fail the
// unpack (Unpack reads the blob to its end). A malformed want fails the
// first Read with ErrInvalid.
func VerifyReader(r io.Reader, want digest.Digest, size int64) io.Reader {
	v := &verifier{r: r, want: want, size: size}
	if err := want.Validate(); err != nil {
		v.err = fmt.Errorf("%w: digest %q: %v", ErrInvalid, want, err)
	} else {
		v.h = want.Algorithm().Hash()
	}
	return v
}

type verifier struct {
	r    io.Reader
	want digest.Digest
	size int64
	h    hash.Hash
	n    int64
	err  error // sticky
}

func (v *verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if v.size >= 0 && v.n > v.size {
		v.err = fmt.Errorf("%w: blob %s is longer than %d bytes", ErrDigestMismatch, v.want, v.size)
		return n, v.err
	}
	if err == io.EOF {
		switch got := digest.NewDigest(v.want.Algorithm(), v.h); {
		case v.size >= 0 && v.n != v.size:
			v.err = fmt.Errorf("%w: blob %s has %d bytes, want %d", ErrDigestMismatch, v.want, v.n, v.size)
		case got != v.want:
			v.err = fmt.Errorf("%w: blob %s hashes to %s", ErrDigestMismatch, v.want, got)
		default:
			v.err = io.EOF
		}
		return n, v.err
	}
	return n, err
}

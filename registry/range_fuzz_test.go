package registry

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseRange checks the blob GET Range parser: a satisfiable range lies
// within the blob, a range written with both ends keeps its first byte, and
// the range it resolved to, written back canonically, parses to itself.
func FuzzParseRange(f *testing.F) {
	// What docker, containerd, crane, curl and browsers send.
	for _, spec := range []string{"bytes=0-", "bytes=10-19", "bytes=-5", "bytes=990-", "bytes=0-999999",
		"bytes=500-0", "bytes=0-1,5-6", "items=0-1", "bytes=", "bytes=-", "bytes=-0", "bytes = 3-4", "BYTES=3-4",
		"bytes=9223372036854775807-", "bytes=-9223372036854775807", "bytes=18446744073709551616-", "bytes=+1-2", "bytes=1--2"} {
		for _, size := range []int64{0, 1, 1000} {
			f.Add(spec, size)
		}
	}
	f.Fuzz(func(t *testing.T, spec string, size int64) {
		if size < 0 {
			size = -(size + 1) // a blob's size is never negative
		}
		first, last, ok, satisfiable := parseRange(spec, size)
		if !ok {
			if satisfiable || first != 0 || last != 0 {
				t.Fatalf("ignored range %q: first %d last %d satisfiable %v", spec, first, last, satisfiable)
			}
			return
		}
		if !satisfiable {
			return
		}
		if first < 0 || first > last || last >= size {
			t.Fatalf("range %q of %d bytes: %d-%d lies outside the blob", spec, size, first, last)
		}
		_, set, _ := strings.Cut(spec, "=")
		if a, b, _ := strings.Cut(strings.TrimSpace(set), "-"); a != "" {
			if n, err := strconv.ParseInt(a, 10, 64); err != nil || n != first {
				t.Fatalf("range %q: first byte %d, want %s", spec, first, a)
			}
			if b != "" {
				if n, err := strconv.ParseInt(b, 10, 64); err != nil || min(n, size-1) != last {
					t.Fatalf("range %q of %d bytes: last byte %d", spec, size, last)
				}
			}
		}
		canon := "bytes=" + strconv.FormatInt(first, 10) + "-" + strconv.FormatInt(last, 10)
		f2, l2, ok2, sat2 := parseRange(canon, size)
		if f2 != first || l2 != last || !ok2 || !sat2 {
			t.Fatalf("%q resolved to %s, which parses to %d-%d ok %v satisfiable %v", spec, canon, f2, l2, ok2, sat2)
		}
	})
}

// FuzzChunk checks how an upload PATCH's Content-Range is read: refused
// with one of the two errors the error table maps (400 or 416), or
// accepted with a start that is not negative and a body limited to
// exactly the range's length, which agrees with Content-Length.
func FuzzChunk(f *testing.F) {
	// docker and containerd send "<start>-<end>"; some clients the RFC form.
	for _, cr := range []string{"", "0-9", "10-14", "14-10", "ten-14", "0-0", "bytes 0-9/10", "bytes 0-9/*",
		" 5-9 ", "-1-4", "0-", "-", "0-9223372036854775807", "9223372036854775807-9223372036854775807", "1-9223372036854775808"} {
		for _, cl := range []int64{-1, 0, 5, 10} {
			f.Add(cr, cl)
		}
	}
	f.Fuzz(func(t *testing.T, cr string, contentLength int64) {
		if contentLength < -1 {
			contentLength = -1
		}
		const bodyLen = 4096
		r := &http.Request{Header: http.Header{}, ContentLength: contentLength,
			Body: io.NopCloser(strings.NewReader(strings.Repeat("x", bodyLen)))}
		if cr != "" {
			r.Header.Set("Content-Range", cr)
		}
		start, body, err := chunk(r)
		if err != nil {
			if !errors.Is(err, errUploadInvalid) && !errors.Is(err, errRangeNotSatisfiable) {
				t.Fatalf("Content-Range %q: error %v is neither 400 nor 416", cr, err)
			}
			return
		}
		if cr == "" {
			if start != -1 {
				t.Fatalf("no Content-Range: start %d", start)
			}
			return
		}
		first, last, ok := parseContentRange(cr)
		if !ok || start != first || start < 0 || last < first {
			t.Fatalf("Content-Range %q accepted as start %d (parsed %d-%d, %v)", cr, start, first, last, ok)
		}
		n, _ := io.Copy(io.Discard, body)
		want := last - first + 1
		if want <= 0 || n != min(want, bodyLen) {
			t.Fatalf("Content-Range %q: body of %d bytes read, range is %d", cr, n, want)
		}
		if contentLength >= 0 && contentLength != want {
			t.Fatalf("Content-Range %q accepted with Content-Length %d", cr, contentLength)
		}
		// The range written back as "<start>-<end>" parses to itself.
		f2, l2, ok2 := parseContentRange(strconv.FormatInt(first, 10) + "-" + strconv.FormatInt(last, 10))
		if !ok2 || f2 != first || l2 != last {
			t.Fatalf("%d-%d re-parses as %d-%d %v", first, last, f2, l2, ok2)
		}
	})
}

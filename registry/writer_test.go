package registry

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// readerFromWriter is a ResponseWriter with ReadFrom and Flush, like net/http's.
type readerFromWriter struct {
	*httptest.ResponseRecorder
	readFrom int
	flushed  int
}

func (w *readerFromWriter) ReadFrom(r io.Reader) (int64, error) {
	w.readFrom++
	return io.Copy(w.ResponseRecorder, r)
}

func (w *readerFromWriter) Flush() { w.flushed++ }

func TestResponseWriterForwardsReadFrom(t *testing.T) {
	inner := &readerFromWriter{ResponseRecorder: httptest.NewRecorder()}
	w := &responseWriter{ResponseWriter: inner}
	var _ io.ReaderFrom = w
	var _ http.Flusher = w

	// io.Copy with a LimitedReader source, as the blob handler does.
	n, err := io.Copy(w, io.LimitReader(strings.NewReader("hello, world"), 5))
	if err != nil || n != 5 {
		t.Fatalf("copied %d, %v", n, err)
	}
	if inner.readFrom != 1 {
		t.Fatalf("inner ReadFrom called %d times, want 1", inner.readFrom)
	}
	if w.written != 5 || w.statusOrOK() != http.StatusOK || inner.Body.String() != "hello" {
		t.Fatalf("written %d, status %d, body %q", w.written, w.status, inner.Body)
	}
	w.Flush()
	if inner.flushed != 1 {
		t.Fatal("Flush not forwarded")
	}
	if http.NewResponseController(w).Flush() != nil || inner.flushed != 2 {
		t.Fatal("ResponseController cannot reach the inner writer")
	}
	if w.Unwrap() != inner {
		t.Fatal("Unwrap")
	}
}

func TestResponseWriterWithoutReadFrom(t *testing.T) {
	inner := httptest.NewRecorder() // has no ReadFrom
	w := &responseWriter{ResponseWriter: inner}
	w.WriteHeader(http.StatusPartialContent)
	n, err := io.Copy(w, bytes.NewReader([]byte("abc")))
	if err != nil || n != 3 || w.written != 3 || w.status != http.StatusPartialContent || inner.Body.String() != "abc" {
		t.Fatalf("copied %d, %v; written %d, status %d, body %q", n, err, w.written, w.status, inner.Body)
	}
}

func TestParseRange(t *testing.T) {
	const size = 100
	for _, tc := range []struct {
		spec            string
		first, last     int64
		ok, satisfiable bool
	}{
		{"bytes=0-0", 0, 0, true, true},
		{"bytes=0-99", 0, 99, true, true},
		{"bytes=0-1000", 0, 99, true, true},
		{"bytes=50-", 50, 99, true, true},
		{"bytes=99-", 99, 99, true, true},
		{"bytes=100-", 0, 0, true, false},
		{"bytes=100-200", 0, 0, true, false},
		{"bytes=-1", 99, 99, true, true},
		{"bytes=-100", 0, 99, true, true},
		{"bytes=-1000", 0, 99, true, true},
		{"bytes=-0", 0, 0, true, false},
		{"BYTES=1-2", 1, 2, true, true},
		{"bytes= 1-2", 1, 2, true, true},
		{"bytes=2-1", 0, 0, true, false},
		{"bytes=0-1,3-4", 0, 0, false, false},
		{"bytes=a-b", 0, 0, false, false},
		{"bytes=-", 0, 0, false, false},
		{"bytes=1", 0, 0, false, false},
		{"bytes=+1-2", 0, 0, false, false},
		{"bytes=1--2", 0, 0, false, false},
		{"bytes=99999999999999999999-", 0, 0, false, false},
		{"items=1-2", 0, 0, false, false},
		{"1-2", 0, 0, false, false},
	} {
		first, last, ok, sat := parseRange(tc.spec, size)
		if first != tc.first || last != tc.last || ok != tc.ok || sat != tc.satisfiable {
			t.Errorf("parseRange(%q) = %d, %d, %v, %v; want %d, %d, %v, %v",
				tc.spec, first, last, ok, sat, tc.first, tc.last, tc.ok, tc.satisfiable)
		}
	}
	if _, _, ok, sat := parseRange("bytes=-5", 0); !ok || sat {
		t.Error("a suffix range of an empty blob must be unsatisfiable")
	}
}

func TestParseContentRange(t *testing.T) {
	for _, tc := range []struct {
		s           string
		first, last int64
		ok          bool
	}{
		{"0-99", 0, 99, true},
		{"100-199", 100, 199, true},
		{"bytes 100-199/*", 100, 199, true},
		{"bytes 100-199/1000", 100, 199, true},
		{"100-", 0, 0, false},
		{"-5", 0, 0, false},
		{"a-b", 0, 0, false},
		{"1-2-3", 0, 0, false},
		{"", 0, 0, false},
	} {
		first, last, ok := parseContentRange(tc.s)
		if first != tc.first || last != tc.last || ok != tc.ok {
			t.Errorf("parseContentRange(%q) = %d, %d, %v", tc.s, first, last, ok)
		}
	}
}

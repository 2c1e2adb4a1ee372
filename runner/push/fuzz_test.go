package push

import (
	"strconv"
	"testing"
)

// FuzzRangeEnd checks the push client's reading of an upload status's Range
// header ("0-<last byte>", as Distribution, Harbor and berth send it): an
// end that is not negative and reads back the same.
func FuzzRangeEnd(f *testing.F) {
	for _, s := range []string{"0-0", "0-1048575", "bytes=0-99", " 0-7 ", "0--1", "0-", "-", "0-+5", "0-9223372036854775807",
		"0-9223372036854775808", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		end, ok := rangeEnd(s)
		if !ok {
			return
		}
		if end < 0 {
			t.Fatalf("Range %q: end %d", s, end)
		}
		if again, ok := rangeEnd("0-" + strconv.FormatInt(end, 10)); !ok || again != end {
			t.Fatalf("Range %q: end %d reads back as %d, %v", s, end, again, ok)
		}
	})
}

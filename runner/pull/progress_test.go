package pull

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func testProgressImage() *Image {
	img := &Image{Digest: digest.FromString("m"), Platform: Platform{OS: "linux", Architecture: "amd64"}}
	img.Reference, _ = ParseReference("localhost:5000/app:v1", "")
	for i, s := range []string{"a", "b"} {
		img.Layers = append(img.Layers, Layer{Index: i, Descriptor: ocispec.Descriptor{Digest: digest.FromString(s), Size: 2_000_000}})
	}
	return img
}

func TestPlainProgress(t *testing.T) {
	img := testProgressImage()
	var b bytes.Buffer
	p := NewPlainProgress(&b)
	a, l := img.Layers[0], img.Layers[1]
	for _, e := range []Event{
		{Kind: EventResolved, Image: img},
		{Kind: EventLayerSkipped, Layer: a},
		{Kind: EventLayerStart, Layer: l, Total: 2_000_000},
		{Kind: EventLayerProgress, Layer: l, Done: 1000, Total: 2_000_000},
		{Kind: EventLayerRetry, Layer: l, Done: 1_500_000, Total: 2_000_000, Err: errors.New("connection\nreset")},
		{Kind: EventLayerDone, Layer: l, Total: 2_000_000},
	} {
		p.Update(e)
	}
	sa, sl := a.Descriptor.Digest.Encoded()[:12], l.Descriptor.Digest.Encoded()[:12]
	want := strings.Join([]string{
		"localhost:5000/app:v1: " + img.Digest.String() + " (linux/amd64, 2 layers)",
		sa + ": already present",
		sl + ": downloading 2.0 MB",
		sl + ": resuming at 1.5 MB after: connection reset",
		sl + ": done",
	}, "\n") + "\n"
	if b.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestTerminalProgress(t *testing.T) {
	img := testProgressImage()
	var b bytes.Buffer
	p := NewTerminalProgress(&b)
	now := time.Unix(0, 0)
	p.lines.now = func() time.Time { return now }
	l := img.Layers[1]

	p.Update(Event{Kind: EventResolved, Image: img})
	first := b.String()
	if strings.Contains(first, "\x1b[2A") {
		t.Errorf("the first draw moves the cursor up: %q", first)
	}
	if strings.Count(first, "waiting") != 2 {
		t.Errorf("first draw %q, want two waiting lines", first)
	}

	b.Reset()
	p.Update(Event{Kind: EventLayerStart, Layer: l, Total: 2_000_000})
	if !strings.HasPrefix(b.String(), "\x1b[2A") || strings.Count(b.String(), "\x1b[2K") != 2 {
		t.Errorf("redraw %q, want cursor up 2 lines and both lines cleared and redrawn", b.String())
	}

	// Byte progress within the redraw interval is not drawn; after it, it is.
	b.Reset()
	p.Update(Event{Kind: EventLayerProgress, Layer: l, Done: 1_000_000, Total: 2_000_000})
	if b.Len() != 0 {
		t.Errorf("progress drawn within the interval: %q", b.String())
	}
	now = now.Add(redrawInterval)
	p.Update(Event{Kind: EventLayerProgress, Layer: l, Done: 1_000_000, Total: 2_000_000})
	if !strings.Contains(b.String(), "[==========>         ] 1.0 MB / 2.0 MB") {
		t.Errorf("progress line %q", b.String())
	}

	// Done is always drawn.
	b.Reset()
	p.Update(Event{Kind: EventLayerDone, Layer: l, Total: 2_000_000})
	if !strings.Contains(b.String(), l.Descriptor.Digest.Encoded()[:12]+": done 2.0 MB") {
		t.Errorf("done line missing: %q", b.String())
	}
}

func TestHumanSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 999: "999 B", 1000: "1.0 kB", 1_500_000: "1.5 MB", 3_200_000_000: "3.2 GB"} {
		if got := HumanSize(n); got != want {
			t.Errorf("HumanSize(%d) = %q, want %q", n, got, want)
		}
	}
}

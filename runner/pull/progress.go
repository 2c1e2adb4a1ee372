package pull

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// EventKind says what an Event reports.
type EventKind int

// The events of a pull, in the order they happen for one layer: Skipped, or Start, any
// number of Progress and Retry, then Done.
const (
	// EventResolved: the manifest and config are verified; Event.Image is set.
	EventResolved EventKind = iota
	// EventLayerSkipped: the consumer has the layer (PullOptions.Have).
	EventLayerSkipped
	// EventLayerStart: the download of the layer begins.
	EventLayerStart
	// EventLayerProgress: Done of Total bytes were handed to the consumer.
	EventLayerProgress
	// EventLayerRetry: the connection failed (Err) and the download resumes at Done.
	EventLayerRetry
	// EventLayerDone: the layer was consumed (Err nil) or failed (Err).
	EventLayerDone
)

// Event is one thing that happened during a pull.
type Event struct {
	Kind  EventKind
	Image *Image // EventResolved only
	Layer Layer  // the layer events
	Done  int64  // bytes so far (the offset, for EventLayerRetry)
	Total int64  // the layer's size
	Err   error  // EventLayerRetry: the cause; EventLayerDone: the failure, if any
}

// Progress receives the events of a pull. Update may be called from several goroutines
// at once and should return quickly.
type Progress interface {
	Update(Event)
}

// discardProgress ignores every event.
type discardProgress struct{}

// Update does nothing.
func (discardProgress) Update(Event) {}

// NewProgress returns a TerminalProgress when f is a terminal, else a PlainProgress.
func NewProgress(f *os.File) Progress {
	if term.IsTerminal(int(f.Fd())) {
		return NewTerminalProgress(f)
	}
	return NewPlainProgress(f)
}

// PlainProgress writes one line when the image is resolved and when each layer starts,
// is skipped, resumes or ends; for logs and pipes.
type PlainProgress struct {
	mu sync.Mutex
	w  io.Writer
}

// NewPlainProgress returns a PlainProgress writing to w.
func NewPlainProgress(w io.Writer) *PlainProgress { return &PlainProgress{w: w} }

// Update writes the line for e, if it has one.
func (p *PlainProgress) Update(e Event) {
	var line string
	switch e.Kind {
	case EventResolved:
		line = resolvedLine(e.Image)
	case EventLayerSkipped:
		line = shortDigest(e.Layer) + ": already present"
	case EventLayerStart:
		line = fmt.Sprintf("%s: downloading %s", shortDigest(e.Layer), HumanSize(e.Total))
	case EventLayerRetry:
		line = fmt.Sprintf("%s: resuming at %s after: %s", shortDigest(e.Layer), HumanSize(e.Done), clip(oneLine(e.Err), 200))
	case EventLayerDone:
		if e.Err != nil {
			line = fmt.Sprintf("%s: failed: %s", shortDigest(e.Layer), clip(oneLine(e.Err), 200))
		} else {
			line = shortDigest(e.Layer) + ": done"
		}
	default:
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintln(p.w, line)
}

// TerminalProgress draws one line per layer and redraws them in place (ANSI cursor
// movement) as the layers advance, at most every redrawInterval for byte progress.
type TerminalProgress struct {
	mu    sync.Mutex
	lines *StatusLines
}

// NewTerminalProgress returns a TerminalProgress drawing on w, which should be a
// terminal.
func NewTerminalProgress(w io.Writer) *TerminalProgress {
	return &TerminalProgress{lines: NewStatusLines(w)}
}

// Update records e and redraws.
func (t *TerminalProgress) Update(e Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e.Kind == EventResolved {
		t.lines.Println(resolvedLine(e.Image))
		lines := make([]string, len(e.Image.Layers))
		for i, l := range e.Image.Layers {
			lines[i] = shortDigest(l) + ": waiting"
		}
		t.lines.Reset(lines)
		return
	}
	name := shortDigest(e.Layer)
	i := e.Layer.Index
	switch e.Kind {
	case EventLayerSkipped:
		t.lines.Set(i, name+": already present", false)
	case EventLayerStart:
		t.lines.Set(i, name+": downloading "+Bar(0, e.Total), false)
	case EventLayerProgress:
		t.lines.Set(i, name+": downloading "+Bar(e.Done, e.Total), true)
	case EventLayerRetry:
		t.lines.Set(i, fmt.Sprintf("%s: resuming at %s (%s)", name, HumanSize(e.Done), clip(oneLine(e.Err), 40)), false)
	case EventLayerDone:
		if e.Err != nil {
			t.lines.Set(i, name+": failed: "+clip(oneLine(e.Err), 60), false)
		} else {
			t.lines.Set(i, name+": done "+HumanSize(e.Total), false)
		}
	}
}

// StatusLines is a block of status lines on a terminal, one per item (a layer), that is
// redrawn in place (ANSI cursor movement) when a line changes; changes that report
// byte progress alone are drawn at most every redrawInterval. It is the terminal
// rendering of TerminalProgress and of other commands' progress (berth push). It is
// not safe for concurrent use: its owner serializes the calls.
type StatusLines struct {
	w        io.Writer
	now      func() time.Time
	lines    []string  // by item index
	drawn    int       // lines on screen below the cursor's home
	lastDraw time.Time // of the last redraw
}

// redrawInterval is the least time between two redraws caused by byte progress alone.
const redrawInterval = 100 * time.Millisecond

// NewStatusLines returns an empty block drawing on w, which should be a terminal.
func NewStatusLines(w io.Writer) *StatusLines {
	return &StatusLines{w: w, now: time.Now}
}

// Println writes line below the block, which is left as it is on screen; the next
// Reset starts a new block below it.
func (s *StatusLines) Println(line string) {
	fmt.Fprintln(s.w, line)
	s.lines, s.drawn = nil, 0
}

// Reset starts a new block of lines (one per item) and draws it.
func (s *StatusLines) Reset(lines []string) {
	s.lines = lines
	s.draw()
}

// Set replaces line i of the block and redraws the block; when progress is true (a
// change of byte counts alone), only if the last redraw is at least redrawInterval
// ago. An index outside the block is ignored.
func (s *StatusLines) Set(i int, line string, progress bool) {
	if i < 0 || i >= len(s.lines) {
		return
	}
	s.lines[i] = line
	if progress && s.now().Sub(s.lastDraw) < redrawInterval {
		return // drawn with a later change; a final status always redraws
	}
	s.draw()
}

// draw moves the cursor back over the lines drawn last and draws them all again.
func (s *StatusLines) draw() {
	var b strings.Builder
	if s.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", s.drawn)
	}
	for _, l := range s.lines {
		b.WriteString("\r\x1b[2K")
		b.WriteString(l)
		b.WriteByte('\n')
	}
	io.WriteString(s.w, b.String())
	s.drawn = len(s.lines)
	s.lastDraw = s.now()
}

// resolvedLine describes a resolved image.
func resolvedLine(img *Image) string {
	if img == nil {
		return "resolved"
	}
	return fmt.Sprintf("%s: %s (%s, %d layers)", img.Reference, img.Digest, img.Platform, len(img.Layers))
}

// shortDigest names a layer by the first 12 hex digits of its blob digest.
func shortDigest(l Layer) string {
	enc := l.Descriptor.Digest.Encoded()
	if len(enc) > 12 {
		enc = enc[:12]
	}
	return enc
}

// Bar renders "[=====>    ] 12.3 MB / 40.0 MB".
func Bar(done, total int64) string {
	const width = 20
	filled := 0
	if total > 0 {
		filled = int(done * width / total)
	}
	s := strings.Repeat("=", filled)
	if filled < width {
		s += ">" + strings.Repeat(" ", width-filled-1)
	}
	return "[" + s + "] " + HumanSize(done) + " / " + HumanSize(total)
}

// HumanSize renders a byte count in decimal units: "512 B", "12.3 MB".
func HumanSize(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	for _, u := range []string{"kB", "MB", "GB", "TB"} {
		f /= unit
		if f < unit {
			return fmt.Sprintf("%.1f %s", f, u)
		}
	}
	return fmt.Sprintf("%.1f PB", f/unit)
}

// oneLine renders an error on one line.
func oneLine(err error) string {
	if err == nil {
		return ""
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}

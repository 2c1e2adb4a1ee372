package push

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/term"

	"github.com/berth-registry/berth/runner/image"
	"github.com/berth-registry/berth/runner/pull"
)

// EventKind says what an Event reports.
type EventKind int

// The events of a push. For one layer: Exists, Mounted, or Start, any number of
// Progress and Retry, then Pushed; Failed ends any of them.
const (
	// EventRepository: the push to Event.Reference begins.
	EventRepository EventKind = iota
	// EventImage: the blobs of an image manifest are about to be pushed; Event.Layers
	// are its layers (an index's images each have one).
	EventImage
	// EventLayerExists: the repository has the layer already.
	EventLayerExists
	// EventLayerMounted: the layer was mounted from repository Event.From.
	EventLayerMounted
	// EventLayerStart: the upload of the layer begins.
	EventLayerStart
	// EventLayerProgress: Done of Total bytes were sent.
	EventLayerProgress
	// EventLayerRetry: the upload failed (Err) and resumes at Done.
	EventLayerRetry
	// EventLayerPushed: the registry has the layer.
	EventLayerPushed
	// EventLayerFailed: the layer could not be pushed (Err).
	EventLayerFailed
)

// Event is one thing that happened during a push.
type Event struct {
	Kind      EventKind
	Reference pull.Reference       // EventRepository
	Layers    []ocispec.Descriptor // EventImage
	Index     int                  // the layer events: the layer's index in Layers
	Layer     ocispec.Descriptor   // the layer events
	From      string               // EventLayerMounted
	Done      int64                // bytes sent (the offset, for EventLayerRetry)
	Total     int64                // the layer's size
	Err       error                // EventLayerRetry, EventLayerFailed
}

// Progress receives the events of a push. Update may be called from several
// goroutines at once and should return quickly.
type Progress interface {
	Update(Event)
}

// discardProgress ignores every event.
type discardProgress struct{}

// Update does nothing.
func (discardProgress) Update(Event) {}

// NewProgress returns the progress display for f: one line per layer redrawn in
// place on a terminal, else one line per layer when it is done.
func NewProgress(f *os.File) Progress {
	if term.IsTerminal(int(f.Fd())) {
		return NewTerminalProgress(f)
	}
	return NewPlainProgress(f)
}

// repositoryLine is what docker prints first.
func repositoryLine(r pull.Reference) string {
	return "The push refers to repository [" + r.Name() + "]"
}

// layerStatus is the status of a layer that is done, or "" for other events.
func layerStatus(e Event) string {
	switch e.Kind {
	case EventLayerExists:
		return "Layer already exists"
	case EventLayerMounted:
		return "Mounted from " + e.From
	case EventLayerPushed:
		return "Pushed"
	case EventLayerFailed:
		return "Failed: " + errorLine(e.Err, 0)
	}
	return ""
}

// PlainProgress writes a line when the push begins and when each layer is done
// or retried; for logs and pipes.
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
	case EventRepository:
		line = repositoryLine(e.Reference)
	case EventLayerRetry:
		line = fmt.Sprintf("%s: Retrying at %s after: %s", image.ShortID(e.Layer.Digest), pull.HumanSize(e.Done), errorLine(e.Err, 0))
	default:
		if s := layerStatus(e); s != "" {
			line = image.ShortID(e.Layer.Digest) + ": " + s
		}
	}
	if line == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintln(p.w, line)
}

// TerminalProgress draws one line per layer of the image being pushed and
// redraws them in place as the layers advance (pull.StatusLines).
type TerminalProgress struct {
	mu    sync.Mutex
	lines *pull.StatusLines
}

// NewTerminalProgress returns a TerminalProgress drawing on w, which should be a
// terminal.
func NewTerminalProgress(w io.Writer) *TerminalProgress {
	return &TerminalProgress{lines: pull.NewStatusLines(w)}
}

// Update records e and redraws.
func (t *TerminalProgress) Update(e Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	name := image.ShortID(e.Layer.Digest)
	switch e.Kind {
	case EventRepository:
		t.lines.Println(repositoryLine(e.Reference))
	case EventImage:
		lines := make([]string, len(e.Layers))
		for i, l := range e.Layers {
			lines[i] = image.ShortID(l.Digest) + ": Preparing"
		}
		t.lines.Reset(lines)
	case EventLayerStart:
		t.lines.Set(e.Index, name+": Pushing "+pull.Bar(0, e.Total), false)
	case EventLayerProgress:
		t.lines.Set(e.Index, name+": Pushing "+pull.Bar(e.Done, e.Total), true)
	case EventLayerRetry:
		t.lines.Set(e.Index, fmt.Sprintf("%s: Retrying at %s (%s)", name, pull.HumanSize(e.Done), errorLine(e.Err, 40)), false)
	default:
		s := layerStatus(e)
		if e.Kind == EventLayerFailed {
			s = "Failed: " + errorLine(e.Err, 60) // one terminal line
		}
		if s != "" {
			t.lines.Set(e.Index, name+": "+s, false)
		}
	}
}

// errorLine renders err on one line of at most n bytes (n <= 0: any), marking a
// cut.
func errorLine(err error, n int) string {
	if err == nil {
		return ""
	}
	s := strings.Join(strings.Fields(err.Error()), " ")
	if n > 0 && len(s) > n {
		s = s[:n] + "..."
	}
	return s
}

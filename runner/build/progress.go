package build

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"time"
)

// progress prints a build as BuildKit's plain progress does: each step a
// numbered vertex ("#3 [2/4] RUN make"), its output line by line with
// the seconds since it started, and "#3 DONE 0.4s", "#3 CACHED" or
// "#3 ERROR: ...". A nil writer prints nothing (--progress quiet).
type progress struct {
	mu sync.Mutex
	w  io.Writer
	n  int
}

// vertex is one numbered step of the progress.
type vertex struct {
	p     *progress
	n     int
	start time.Time
	buf   bytes.Buffer
}

func (p *progress) printf(format string, args ...any) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}

// vertex starts a step named name.
func (p *progress) vertex(name string) *vertex {
	p.mu.Lock()
	p.n++
	v := &vertex{p: p, n: p.n, start: time.Now()}
	p.mu.Unlock()
	p.printf("#%d %s\n", v.n, name)
	return v
}

// Write prints the step's output, a line at a time.
func (v *vertex) Write(b []byte) (int, error) {
	v.p.mu.Lock()
	v.buf.Write(b)
	var lines []string
	for {
		i := bytes.IndexByte(v.buf.Bytes(), '\n')
		if i < 0 {
			break
		}
		lines = append(lines, string(v.buf.Next(i+1)))
	}
	v.p.mu.Unlock()
	for _, l := range lines {
		v.p.printf("#%d %.3f %s", v.n, time.Since(v.start).Seconds(), l)
	}
	return len(b), nil
}

// flush prints a last line without its newline.
func (v *vertex) flush() {
	v.p.mu.Lock()
	rest := v.buf.String()
	v.buf.Reset()
	v.p.mu.Unlock()
	if rest != "" {
		v.p.printf("#%d %.3f %s\n", v.n, time.Since(v.start).Seconds(), rest)
	}
}

func (v *vertex) log(msg string) { v.p.printf("#%d %s\n", v.n, msg) }

func (v *vertex) done() {
	v.flush()
	v.p.printf("#%d DONE %.1fs\n\n", v.n, time.Since(v.start).Seconds())
}

func (v *vertex) cached() { v.p.printf("#%d CACHED\n\n", v.n) }

func (v *vertex) fail(err error) {
	v.flush()
	v.p.printf("#%d ERROR: %v\n\n", v.n, err)
}

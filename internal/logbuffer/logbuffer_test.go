package logbuffer

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"
)

// gatedOutput records what it is given and, while gated, blocks each write
// until the test lets it through.
type gatedOutput struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	entered chan struct{} // a write arrived
	gate    chan struct{} // closed: writes go through
}

func (o *gatedOutput) Write(p []byte) (int, error) {
	select {
	case o.entered <- struct{}{}:
	default:
	}
	<-o.gate
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

func (o *gatedOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// within fails the test if done is not closed within a minute: a guard
// against a hang, not a measure of speed.
func within(t *testing.T, done <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatalf("%s never happened", what)
	}
}

// TestWriterDoesNotWaitForTheOutput: lines are taken while the output is
// stuck, up to the limit; beyond it Write waits; everything reaches the
// output in order once it moves, and Close leaves nothing behind.
func TestWriterDoesNotWaitForTheOutput(t *testing.T) {
	out := &gatedOutput{entered: make(chan struct{}, 1), gate: make(chan struct{})}
	w := New(out, 100)
	returned := make(chan struct{})
	go func() {
		w.Write([]byte("line 0\n"))
		close(returned)
	}()
	within(t, out.entered, "the output's first write")
	within(t, returned, "a Write returning while the output is stuck")

	var want bytes.Buffer
	want.WriteString("line 0\n")
	for i := 1; i < 10; i++ { // 90 bytes: within the limit
		line := fmt.Sprintf("line %d\n", i)
		want.WriteString(line)
		if _, err := w.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	over := make(chan struct{})
	go func() {
		w.Write([]byte("line 10, past the limit of a hundred bytes\n"))
		close(over)
	}()
	select {
	case <-over:
		t.Error("a Write past the limit did not wait for the output")
	default:
	}
	want.WriteString("line 10, past the limit of a hundred bytes\n")
	close(out.gate)
	within(t, over, "the waiting Write returning once the output moved")
	w.Write([]byte("last\n"))
	want.WriteString("last\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != want.String() {
		t.Errorf("output %q, want %q", got, want.String())
	}
	w.Write([]byte("after close\n"))
	if got := out.String(); got != want.String()+"after close\n" {
		t.Errorf("a write after Close did not reach the output: %q", got)
	}
}

// TestFlush: Flush returns only once what was written before it is out.
func TestFlush(t *testing.T) {
	out := &gatedOutput{entered: make(chan struct{}, 1), gate: make(chan struct{})}
	close(out.gate)
	w := New(out, 1<<10)
	defer w.Close()
	for i := range 100 {
		fmt.Fprintf(w, "%d\n", i)
		if i%10 == 9 {
			w.Flush()
			if got := bytes.Count([]byte(out.String()), []byte("\n")); got != i+1 {
				t.Fatalf("after Flush the output has %d lines, want %d", got, i+1)
			}
		}
	}
}

// countingOutput counts the writes it is given.
type countingOutput struct {
	mu     sync.Mutex
	writes int
	buf    bytes.Buffer
}

func (o *countingOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.writes++
	return o.buf.Write(p)
}

// TestLinesGathered: lines that come together reach the output in fewer
// writes than lines, in order.
func TestLinesGathered(t *testing.T) {
	out := &countingOutput{}
	w := New(out, 1<<20)
	var want bytes.Buffer
	for i := range 1000 {
		line := fmt.Sprintf("request %d\n", i)
		want.WriteString(line)
		w.Write([]byte(line))
	}
	w.Close()
	out.mu.Lock()
	defer out.mu.Unlock()
	if out.buf.String() != want.String() {
		t.Errorf("the output is not the lines in order")
	}
	if out.writes >= 1000 {
		t.Errorf("1000 lines took %d writes: none gathered", out.writes)
	}
}

// Package logbuffer holds a Writer that takes log lines without waiting
// for the output: a request handler that logs (the access log) returns to
// its client without a write system call, nor a stall when the reader of
// the log (a pipe to journald, a terminal) is slow.
package logbuffer

import (
	"io"
	"sync"
	"time"
)

// Writer copies what it is given into a buffer that one goroutine of its
// own writes out, in order, in as few writes as it can: it gathers what
// comes within Delay of a first line (or a quarter of its limit, if
// sooner) into one write, so that a busy server pays one system call and
// one wake-up for many lines, not one of each per line. It holds at most
// limit bytes not written yet: beyond that Write waits for the output (a
// log is never dropped). Errors of the output are dropped: there is
// nowhere to log them. Close writes what is left and stops the goroutine.
type Writer struct {
	out   io.Writer
	limit int
	timer *time.Timer // runs kick Delay after a line came to an empty buffer

	mu      sync.Mutex
	pending []byte     // taken, not yet handed to out
	spare   []byte     // the buffer out was last given, to reuse
	due     bool       // pending is to be written now
	armed   bool       // timer runs
	wake    *sync.Cond // signalled when due or closed is set
	drained *sync.Cond // signalled when pending is handed to out
	writing bool       // out holds a buffer now
	closed  bool
	done    chan struct{}
}

// Delay is the longest a line waits for others to be written with it.
const Delay = 5 * time.Millisecond

// New returns a Writer to out holding at most limit bytes unwritten.
func New(out io.Writer, limit int) *Writer {
	w := &Writer{out: out, limit: limit, done: make(chan struct{})}
	w.wake = sync.NewCond(&w.mu)
	w.drained = sync.NewCond(&w.mu)
	w.timer = time.AfterFunc(time.Hour, w.kick)
	w.timer.Stop()
	go w.run()
	return w
}

// Write takes a copy of p for the output. It waits only when limit bytes
// are unwritten already. After Close it writes p itself.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	for !w.closed && len(w.pending) > 0 && len(w.pending)+len(p) > w.limit {
		w.due = true
		w.wake.Signal()
		w.drained.Wait()
	}
	if w.closed {
		w.mu.Unlock()
		return w.out.Write(p)
	}
	w.pending = append(w.pending, p...)
	switch {
	case len(w.pending) >= w.limit/4:
		w.due = true
		w.wake.Signal()
	case !w.armed:
		w.armed = true
		w.timer.Reset(Delay)
	}
	w.mu.Unlock()
	return len(p), nil
}

// kick makes what is pending due: the timer's end.
func (w *Writer) kick() {
	w.mu.Lock()
	w.armed = false
	w.due = true
	w.wake.Signal()
	w.mu.Unlock()
}

// Flush returns once everything written before it has been handed to the
// output.
func (w *Writer) Flush() {
	w.mu.Lock()
	for len(w.pending) > 0 || w.writing {
		w.due = true
		w.wake.Signal()
		w.drained.Wait()
	}
	w.mu.Unlock()
}

// Close writes out what is left and stops the background goroutine; later
// writes go straight to the output.
func (w *Writer) Close() error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		w.wake.Signal()
	}
	w.mu.Unlock()
	<-w.done
	w.timer.Stop()
	return nil
}

// run hands the pending bytes to the output, all that gathered at once,
// until the Writer is closed and nothing is pending.
func (w *Writer) run() {
	defer close(w.done)
	w.mu.Lock()
	for {
		for !(w.due && len(w.pending) > 0) && !w.closed {
			w.wake.Wait()
		}
		if len(w.pending) == 0 {
			w.mu.Unlock()
			return
		}
		b := w.pending
		w.pending, w.spare, w.due = w.spare[:0], nil, false
		w.writing = true
		w.mu.Unlock()
		_, _ = w.out.Write(b)
		w.mu.Lock()
		w.writing = false
		if cap(b) <= 2*w.limit {
			w.spare = b
		}
		w.drained.Broadcast()
	}
}

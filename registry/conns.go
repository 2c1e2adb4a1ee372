package registry

import (
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// ConnLimit is a listener that keeps at most a fixed number of accepted
// connections open: when that many are open, Accept waits until one
// closes, and the connections beyond the cap wait in the kernel's listen
// queue (the TCP handshake completes there; the client's request waits).
//
// Queueing rather than answering 503 is deliberate: registry clients
// (docker, containerd, crane, skopeo) retry a 503 only on some requests
// and after a delay of their own, and a 503 costs the very descriptor and
// goroutine the cap is there to save; a queued connection costs the
// server nothing and the client only time, within its own connect and
// response timeouts.
//
// So that keep-alive connections cannot keep queued clients out for the
// whole idle timeout, while a connection waits (checked every idleCheck
// by polling the listening socket): every response says
// "Connection: close" (wrap the handler with Handler), so its connection
// ends cleanly after it, and connections idle for idleGrace or longer are
// closed, as the idle timeout would (a connection idle for less, or with
// bytes of a next request waiting, is left alone: a close would break the
// request its client is sending). Pair the listener with http.Server.ConnState = ConnState.
//
// Errors of the listener's Accept are returned as they are, so that
// http.Server backs off on the temporary ones (EMFILE: out of file
// descriptors) instead of stopping.
type ConnLimit struct {
	net.Listener
	slots chan struct{} // a token per open connection
	done  chan struct{} // closed by Close
	// waiting: Accept waits for a slot and connections wait in the
	// listen queue (at the cap with nobody queued, keep-alive goes on).
	waiting atomic.Bool

	mu     sync.Mutex
	idle   map[net.Conn]time.Time // connections between requests, since when
	closed sync.Once
}

// idleGrace is how long a connection must have been idle before it is
// closed to make room for a waiting one; idleCheck how often that is
// looked at meanwhile.
const (
	idleGrace = time.Second
	idleCheck = idleGrace / 4
)

// LimitConnections returns ln capped at n open connections (n must be
// positive).
func LimitConnections(ln net.Listener, n int) *ConnLimit {
	return &ConnLimit{
		Listener: ln,
		slots:    make(chan struct{}, n),
		done:     make(chan struct{}),
		idle:     map[net.Conn]time.Time{},
	}
}

// Accept waits for a free slot, then accepts a connection, which gives its
// slot back when closed.
func (l *ConnLimit) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	default:
		tick := time.NewTicker(idleCheck)
		for taken := false; !taken; {
			queued := pending(l.Listener)
			l.waiting.Store(queued)
			if queued {
				l.closeIdle(time.Now().Add(-idleGrace))
			}
			select {
			case l.slots <- struct{}{}:
				taken = true
			case <-tick.C:
			case <-l.done:
				tick.Stop()
				return nil, net.ErrClosed
			}
		}
		tick.Stop()
		l.waiting.Store(false)
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err // unwrapped: http.Server type-asserts net.Error
	}
	return &limitedConn{Conn: c, release: func() { <-l.slots }}, nil
}

// closeIdle closes the connections idle since before, but those whose
// client is sending its next request already.
func (l *ConnLimit) closeIdle(before time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c, since := range l.idle {
		if since.Before(before) && !sending(c) {
			delete(l.idle, c)
			c.Close()
		}
	}
}

// Close closes the listener and ends an Accept waiting for a slot.
func (l *ConnLimit) Close() error {
	l.closed.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// ConnState is for http.Server.ConnState: it keeps track of the idle
// connections.
func (l *ConnLimit) ConnState(c net.Conn, s http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch s {
	case http.StateIdle:
		l.idle[c] = time.Now()
	case http.StateActive, http.StateHijacked, http.StateClosed:
		delete(l.idle, c)
	}
}

// Handler wraps h so that, while a connection waits for a slot, every
// response ends its connection ("Connection: close").
func (l *ConnLimit) Handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if l.waiting.Load() {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
}

// limitedConn gives its slot back once, on the first Close.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// ReadFrom keeps the connection's own ReadFrom (sendfile for blob
// downloads), which net/http looks for.
func (c *limitedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(c.Conn, r)
}

// CloseWrite keeps the TCP half-close net/http uses for a graceful end.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

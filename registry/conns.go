package registry

import (
	"io"
	"net"
	"net/http"
	"sync"
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
// response timeouts. So that idle keep-alive connections cannot keep
// queued clients out for the whole idle timeout, an idle connection is
// closed when a new one is waiting (clients reconnect, as after the idle
// timeout): pair the listener with http.Server.ConnState = ConnState.
//
// Errors of the listener's Accept are returned as they are, so that
// http.Server backs off on the temporary ones (EMFILE: out of file
// descriptors) instead of stopping.
type ConnLimit struct {
	net.Listener
	slots chan struct{} // a token per open connection
	done  chan struct{} // closed by Close

	mu      sync.Mutex
	idle    map[net.Conn]struct{} // connections between requests
	waiting bool                  // Accept waits for a slot
	closed  sync.Once
}

// LimitConnections returns ln capped at n open connections (n must be
// positive).
func LimitConnections(ln net.Listener, n int) *ConnLimit {
	return &ConnLimit{
		Listener: ln,
		slots:    make(chan struct{}, n),
		done:     make(chan struct{}),
		idle:     map[net.Conn]struct{}{},
	}
}

// Accept waits for a free slot, then accepts a connection, which gives its
// slot back when closed.
func (l *ConnLimit) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	default:
		l.mu.Lock()
		l.waiting = true
		for c := range l.idle { // make room: one idle connection goes
			delete(l.idle, c)
			c.Close()
			break
		}
		l.mu.Unlock()
		select {
		case l.slots <- struct{}{}:
		case <-l.done:
			return nil, net.ErrClosed
		}
		l.mu.Lock()
		l.waiting = false
		l.mu.Unlock()
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err // unwrapped: http.Server type-asserts net.Error
	}
	return &limitedConn{Conn: c, release: func() { <-l.slots }}, nil
}

// Close closes the listener and ends an Accept waiting for a slot.
func (l *ConnLimit) Close() error {
	l.closed.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// ConnState is for http.Server.ConnState: it keeps track of the idle
// connections, and closes one that turns idle while a new connection
// waits for its slot.
func (l *ConnLimit) ConnState(c net.Conn, s http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch s {
	case http.StateIdle:
		if l.waiting {
			c.Close()
			return
		}
		l.idle[c] = struct{}{}
	case http.StateActive, http.StateHijacked, http.StateClosed:
		delete(l.idle, c)
	}
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

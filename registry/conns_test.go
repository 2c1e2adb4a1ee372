package registry_test

import (
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/berth-registry/berth/registry"
)

// serveLimited serves h on a loopback listener capped at n connections.
func serveLimited(t *testing.T, n int, h http.Handler, wrap func(net.Listener) net.Listener) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if wrap != nil {
		ln = wrap(ln)
	}
	limited := registry.LimitConnections(ln, n)
	srv := &http.Server{Handler: limited.Handler(h), ConnState: limited.ConnState, ErrorLog: log.New(io.Discard, "", 0)}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(limited) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + addr
}

// TestConnLimitQueues: with the cap reached, further connections wait
// and are served in turn: never more handlers at once than the cap, and
// every request is answered.
func TestConnLimitQueues(t *testing.T) {
	const limit, clients = 2, 6
	var active, most atomic.Int32
	release := make(chan struct{})
	url := serveLimited(t, limit, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := active.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		<-release
		active.Add(-1)
	}), nil)
	var wg sync.WaitGroup
	var closing atomic.Int32 // answers that ended their connection
	errs := make(chan error, clients)
	for range clients {
		wg.Go(func() {
			c := &http.Client{Transport: &http.Transport{}, Timeout: time.Minute}
			res, err := c.Get(url)
			if err != nil {
				errs <- err
				return
			}
			if res.Close {
				closing.Add(1)
			}
			res.Body.Close()
		})
	}
	// Let one handler go each time the cap is reached, or fewer remain.
	for left := clients; left > 0; left-- {
		waitFor(t, func() bool { return active.Load() == int32(min(limit, left)) })
		release <- struct{}{}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if m := most.Load(); m != limit {
		t.Errorf("%d handlers ran at once, want the cap, %d", m, limit)
	}
	// Keep-alive clients: those answered while others waited were told
	// to close, or the waiting would have lasted until an idle timeout.
	if n := closing.Load(); n == 0 {
		t.Errorf("no answer said Connection: close while connections waited")
	}
}

// TestConnLimitClosesIdle: an idle keep-alive connection does not keep a
// new client out: it is closed to make room once idle for a moment, and
// its client reconnects.
func TestConnLimitClosesIdle(t *testing.T) {
	url := serveLimited(t, 1, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}), nil)
	// The timeouts guard against a queued client never let in.
	a := &http.Client{Transport: &http.Transport{}, Timeout: time.Minute}
	b := &http.Client{Transport: &http.Transport{}, Timeout: time.Minute}
	for i, c := range []*http.Client{a, b, a, b} {
		res, err := c.Get(url)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if string(body) != "ok" {
			t.Fatalf("request %d: %q", i, body)
		}
	}
}

// flakyListener fails its first Accepts with EMFILE, as a process out of
// file descriptors does.
type flakyListener struct {
	net.Listener
	fails atomic.Int32
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestConnLimitAcceptErrors: EMFILE from accept reaches http.Server as
// the temporary error it is (it backs off and goes on), and the slot of
// the failed Accept is not lost.
func TestConnLimitAcceptErrors(t *testing.T) {
	url := serveLimited(t, 1, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), func(ln net.Listener) net.Listener {
		f := &flakyListener{Listener: ln}
		f.fails.Store(3)
		return f
	})
	for i := range 3 {
		// The timeout guards against a slot lost to a failed Accept.
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Minute}
		res, err := c.Get(url)
		if err != nil {
			t.Fatalf("request %d after EMFILE: %v", i, err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("request %d: %d", i, res.StatusCode)
		}
	}
}

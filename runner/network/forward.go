package network

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// forwarder is the user-space side of a published port: it holds the
// host port (so that nothing else takes it, and a second container asking
// for it fails) and relays the connections the kernel's DNAT does not
// catch, those made on this host (loopback included), to the container.
type forwarder struct {
	ln   net.Listener   // tcp
	pc   net.PacketConn // udp
	to   string         // container ip:port
	wg   sync.WaitGroup
	mu   sync.Mutex
	done bool
	udp  map[string]net.Conn // client address -> its conn to the container
}

// listen binds p's host address and port (a free one when p.HostPort is
// 0, the first free of the range with HostPortEnd) and returns the
// forwarder with p's actual port filled in. A taken port is
// ErrPortAllocated.
func listen(p PortMapping) (*forwarder, PortMapping, error) {
	ip := p.HostIP
	if !ip.IsValid() {
		ip = netip.IPv4Unspecified()
	}
	last := p.HostPort
	if p.HostPortEnd > p.HostPort {
		last = p.HostPortEnd
	}
	var err error
	for port := int(p.HostPort); port <= int(last); port++ {
		addr := netip.AddrPortFrom(ip, uint16(port)).String()
		f := &forwarder{udp: map[string]net.Conn{}}
		if p.Proto == UDP {
			f.pc, err = net.ListenPacket("udp", addr)
		} else {
			f.ln, err = net.Listen("tcp", addr)
		}
		if err == nil {
			q := p
			q.HostPortEnd = 0
			if f.ln != nil {
				q.HostPort = uint16(f.ln.Addr().(*net.TCPAddr).Port)
			} else {
				q.HostPort = uint16(f.pc.LocalAddr().(*net.UDPAddr).Port)
			}
			return f, q, nil
		}
		if !errors.Is(err, unix.EADDRINUSE) {
			break
		}
	}
	if errors.Is(err, unix.EADDRINUSE) {
		return nil, p, fmt.Errorf("%w: bind for %s failed", ErrPortAllocated, portSpan(ip, p))
	}
	return nil, p, fmt.Errorf("network: publishing %s: %w", portSpan(ip, p), err)
}

func portSpan(ip netip.Addr, p PortMapping) string {
	s := netip.AddrPortFrom(ip, p.HostPort).String()
	if p.HostPortEnd > p.HostPort {
		s += fmt.Sprintf("-%d", p.HostPortEnd)
	}
	return s + "/" + p.Proto
}

// serve relays to the container at to (ip:port) until close.
func (f *forwarder) serve(to string) {
	f.to = to
	f.wg.Add(1)
	if f.ln != nil {
		go f.serveTCP()
	} else {
		go f.serveUDP()
	}
}

func (f *forwarder) serveTCP() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer c.Close()
			up, err := net.DialTimeout("tcp", f.to, 10*time.Second)
			if err != nil {
				return
			}
			defer up.Close()
			var half sync.WaitGroup
			half.Add(1)
			go func() {
				defer half.Done()
				io.Copy(up, c)
				up.(*net.TCPConn).CloseWrite()
			}()
			io.Copy(c, up)
			c.(*net.TCPConn).CloseWrite()
			half.Wait()
		}()
	}
}

// udpIdle is how long a UDP client's flow lives without traffic.
const udpIdle = 60 * time.Second

func (f *forwarder) serveUDP() {
	defer f.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := f.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		f.mu.Lock()
		if f.done {
			f.mu.Unlock()
			return
		}
		up, ok := f.udp[from.String()]
		if !ok {
			up, err = net.Dial("udp", f.to)
			if err != nil {
				f.mu.Unlock()
				continue
			}
			f.udp[from.String()] = up
			f.wg.Add(1)
			go f.replies(up, from)
		}
		f.mu.Unlock()
		up.SetReadDeadline(time.Now().Add(udpIdle))
		up.Write(buf[:n])
	}
}

// replies copies the container's answers to one UDP client until the
// flow is idle.
func (f *forwarder) replies(up net.Conn, client net.Addr) {
	defer f.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, err := up.Read(buf)
		if err != nil {
			break
		}
		f.pc.WriteTo(buf[:n], client)
	}
	f.mu.Lock()
	delete(f.udp, client.String())
	f.mu.Unlock()
	up.Close()
}

// close stops the forwarder and frees its port. Relayed TCP
// connections end when either side closes (the container's end goes
// with the container).
func (f *forwarder) close() {
	f.mu.Lock()
	f.done = true
	for _, c := range f.udp {
		c.Close()
	}
	f.mu.Unlock()
	if f.ln != nil {
		f.ln.Close()
	}
	if f.pc != nil {
		f.pc.Close()
	}
}

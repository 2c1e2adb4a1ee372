package container

import (
	"os"

	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// attachHostTerminal puts stdio.In in raw mode when the container has a
// terminal and In is a host terminal, and gives the container the host
// terminal's size. It returns the function that restores the host
// terminal.
func (p *Process) attachHostTerminal(stdio Stdio) (restore func()) {
	if !p.Terminal() {
		return func() {}
	}
	p.syncSize(stdio)
	f, ok := stdio.In.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return func() {}
	}
	st, err := term.MakeRaw(int(f.Fd()))
	if err != nil {
		return func() {}
	}
	return func() { term.Restore(int(f.Fd()), st) }
}

// syncSize copies the size of the host terminal (In, else Out) to the
// container's.
func (p *Process) syncSize(stdio Stdio) {
	for _, s := range []any{stdio.In, stdio.Out} {
		f, ok := s.(*os.File)
		if !ok {
			continue
		}
		ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
		if err != nil {
			continue
		}
		p.Resize(ws.Col, ws.Row)
		return
	}
}

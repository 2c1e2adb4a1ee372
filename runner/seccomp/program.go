package seccomp

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Program is a compiled filter: classic BPF instructions in the kernel's
// struct sock_filter form, and the flags of the seccomp(2) call that
// installs it.
type Program struct {
	Flags  uint
	Filter []unix.SockFilter
}

// Install installs p on the calling thread (and what it execs): the
// thread must have no_new_privs set or hold CAP_SYS_ADMIN. Callers lock
// the goroutine to its thread (runtime.LockOSThread) first.
func (p *Program) Install() error {
	if len(p.Filter) == 0 || len(p.Filter) > maxInstructions {
		return fmt.Errorf("%w: a filter of %d instructions", ErrInvalid, len(p.Filter))
	}
	prog := unix.SockFprog{Len: uint16(len(p.Filter)), Filter: &p.Filter[0]}
	_, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, uintptr(p.Flags), uintptr(unsafe.Pointer(&prog)))
	if errno != 0 {
		return fmt.Errorf("installing the seccomp filter: %w", errno)
	}
	return nil
}

// MarshalBinary encodes p: its flags as 4 bytes, then 8 bytes per
// instruction (code, jt, jf, k), little-endian.
func (p *Program) MarshalBinary() ([]byte, error) {
	b := make([]byte, 4, 4+8*len(p.Filter))
	binary.LittleEndian.PutUint32(b, uint32(p.Flags))
	for _, f := range p.Filter {
		b = binary.LittleEndian.AppendUint16(b, f.Code)
		b = append(b, f.Jt, f.Jf)
		b = binary.LittleEndian.AppendUint32(b, f.K)
	}
	return b, nil
}

// UnmarshalBinary decodes what MarshalBinary wrote.
func (p *Program) UnmarshalBinary(b []byte) error {
	if len(b) < 4 || (len(b)-4)%8 != 0 || (len(b)-4)/8 > maxInstructions {
		return fmt.Errorf("%w: a compiled filter of %d bytes", ErrInvalid, len(b))
	}
	p.Flags = uint(binary.LittleEndian.Uint32(b))
	p.Filter = make([]unix.SockFilter, (len(b)-4)/8)
	for i := range p.Filter {
		r := b[4+8*i:]
		p.Filter[i] = unix.SockFilter{Code: binary.LittleEndian.Uint16(r), Jt: r[2], Jf: r[3], K: binary.LittleEndian.Uint32(r[4:])}
	}
	return nil
}

package seccomp

import (
	"errors"
	"fmt"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Offsets in struct seccomp_data (little-endian architectures only: the
// low half of an argument comes first).
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

// maxInstructions is the kernel's BPF_MAXINSNS.
const maxInstructions = 4096

// Compile turns a runtime-spec seccomp config into a Program for the
// kernel goarch (runtime.GOARCH for this machine). The filter has a
// section for goarch's architecture and, when s lists it, for its compat
// architecture (x86 on amd64, arm on arm64); a system call of any other
// architecture, and one of the x32 ABI, fails with ENOSYS. System call
// names an architecture does not have are left out of its section, as
// libseccomp does.
//
// Each system call's rules are tried in order, those with argument
// conditions first; the first whose conditions all hold gives the action,
// and when none does, DefaultAction applies. Conditions of one rule must
// all hold (the runtime-spec's AND). SCMP_ACT_ERRNO and SCMP_ACT_TRACE
// without errnoRet return EPERM.
//
// Errors wrap ErrInvalid (a malformed config) or ErrUnsupported (an
// action, flag or architecture this compiler does not do).
func Compile(s *specs.LinuxSeccomp, goarch string) (*Program, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: no seccomp config", ErrInvalid)
	}
	if s.ListenerPath != "" {
		return nil, fmt.Errorf("%w: a seccomp notify listener (%s)", ErrUnsupported, s.ListenerPath)
	}
	native, compat := nativeArches(goarch)
	if native == nil {
		return nil, fmt.Errorf("%w: architecture %s", ErrUnsupported, goarch)
	}
	flags, err := filterFlags(s.Flags)
	if err != nil {
		return nil, err
	}
	def, err := retValue(s.DefaultAction, s.DefaultErrnoRet)
	if err != nil {
		return nil, fmt.Errorf("default action: %w", err)
	}
	arches := []*arch{native}
	if compat != nil && slices.Contains(s.Architectures, compat.name) {
		arches = append(arches, compat)
	}
	enosys := uint32(unix.SECCOMP_RET_ERRNO) | uint32(unix.ENOSYS)

	sections := make([][]bpf.Instruction, len(arches))
	for i, a := range arches {
		if sections[i], err = compileArch(a, s.Syscalls, def, enosys); err != nil {
			return nil, err
		}
	}
	// The dispatch on seccomp_data.arch: a jump to each section, else
	// ENOSYS.
	head := []bpf.Instruction{bpf.LoadAbsolute{Off: offArch, Size: 4}}
	dispatch := 2*len(arches) + 1 // the jumps below and the ret after them
	offset := 0
	for i, a := range arches {
		// jeq arch: fall through to ja; else skip it.
		skip := dispatch - 2*i - 2 + offset
		head = append(head, bpf.JumpIf{Cond: bpf.JumpEqual, Val: a.audit, SkipTrue: 0, SkipFalse: 1},
			bpf.Jump{Skip: uint32(skip)})
		offset += len(sections[i])
	}
	head = append(head, bpf.RetConstant{Val: enosys})
	prog := head
	for _, sec := range sections {
		prog = append(prog, sec...)
	}
	if len(prog) > maxInstructions {
		return nil, fmt.Errorf("%w: the filter has %d instructions, more than the kernel's %d", ErrInvalid, len(prog), maxInstructions)
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("seccomp: assembling the filter: %w", err)
	}
	p := &Program{Flags: flags, Filter: make([]unix.SockFilter, len(raw))}
	for i, r := range raw {
		p.Filter[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return p, nil
}

// rule is one entry of a system call: an action taken when its
// conditions hold.
type rule struct {
	ret  uint32
	args []specs.LinuxSeccompArg
}

// compileArch is the section of architecture a: the system call number
// loaded, then a block per system call with rules, then def.
func compileArch(a *arch, syscalls []specs.LinuxSyscall, def, enosys uint32) ([]bpf.Instruction, error) {
	rules := make(map[uint32][]rule, len(a.table))
	for _, sc := range syscalls {
		ret, err := retValue(sc.Action, sc.ErrnoRet)
		if err != nil {
			return nil, fmt.Errorf("system calls %v: %w", sc.Names, err)
		}
		for _, c := range sc.Args {
			if c.Index > 5 {
				return nil, fmt.Errorf("%w: system calls %v: argument index %d (0 to 5)", ErrInvalid, sc.Names, c.Index)
			}
			if !knownOperator(c.Op) {
				return nil, fmt.Errorf("%w: system calls %v: operator %q", ErrInvalid, sc.Names, c.Op)
			}
		}
		for _, name := range sc.Names {
			nr, ok := a.lookup(name)
			if !ok {
				continue
			}
			rules[nr] = append(rules[nr], rule{ret: ret, args: sc.Args})
		}
	}
	nrs := make([]uint32, 0, len(rules))
	for nr := range rules {
		nrs = append(nrs, nr)
	}
	slices.Sort(nrs)

	out := []bpf.Instruction{bpf.LoadAbsolute{Off: offNr, Size: 4}}
	if a.x32 {
		out = append(out,
			bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: x32Bit, SkipTrue: 0, SkipFalse: 1},
			bpf.RetConstant{Val: enosys})
	}
	for _, nr := range nrs {
		body, err := syscallBody(rules[nr], def)
		if err != nil {
			return nil, fmt.Errorf("system call %d on %s: %w", nr, a.name, err)
		}
		if body == nil {
			continue
		}
		if len(body) <= 255 {
			out = append(out, bpf.JumpIf{Cond: bpf.JumpEqual, Val: nr, SkipTrue: 0, SkipFalse: uint8(len(body))})
		} else {
			out = append(out, bpf.JumpIf{Cond: bpf.JumpEqual, Val: nr, SkipTrue: 1, SkipFalse: 0},
				bpf.Jump{Skip: uint32(len(body))})
		}
		out = append(out, body...)
	}
	return append(out, bpf.RetConstant{Val: def}), nil
}

// syscallBody is what runs once the system call number matched: its rules
// with conditions in order, then its first rule without any (or def). It
// always returns. nil means the call needs no block (def either way).
func syscallBody(rules []rule, def uint32) ([]bpf.Instruction, error) {
	final, unconditional := def, false
	var conditional []rule
	for _, r := range rules {
		switch {
		case len(r.args) > 0:
			conditional = append(conditional, r)
		case !unconditional:
			final, unconditional = r.ret, true
		}
	}
	if len(conditional) == 0 && final == def {
		return nil, nil
	}
	var out []bpf.Instruction
	for _, r := range conditional {
		var as assembler
		fail := as.newLabel()
		for _, c := range r.args {
			argCondition(&as, c, fail)
		}
		as.emit(bpf.RetConstant{Val: r.ret})
		as.mark(fail)
		block, err := as.assemble()
		if err != nil {
			return nil, err
		}
		out = append(out, block...)
	}
	return append(out, bpf.RetConstant{Val: final}), nil
}

// knownOperator reports whether op is a comparison of the runtime-spec.
func knownOperator(op specs.LinuxSeccompOperator) bool {
	switch op {
	case specs.OpNotEqual, specs.OpLessThan, specs.OpLessEqual, specs.OpEqualTo,
		specs.OpGreaterEqual, specs.OpGreaterThan, specs.OpMaskedEqual:
		return true
	}
	return false
}

// argCondition emits the test of c on the system call's 64-bit argument,
// jumping to fail when it does not hold and falling through when it does.
// The argument is compared as two 32-bit halves, the high one first.
func argCondition(as *assembler, c specs.LinuxSeccompArg, fail label) {
	lo, hi := uint32(offArgs+8*c.Index), uint32(offArgs+8*c.Index+4)
	vlo, vhi := uint32(c.Value), uint32(c.Value>>32)
	pass := as.newLabel()
	ldHi := bpf.LoadAbsolute{Off: hi, Size: 4}
	ldLo := bpf.LoadAbsolute{Off: lo, Size: 4}
	switch c.Op {
	case specs.OpEqualTo:
		as.emit(ldHi)
		as.jump(bpf.JumpEqual, vhi, next, fail)
		as.emit(ldLo)
		as.jump(bpf.JumpEqual, vlo, next, fail)
	case specs.OpNotEqual:
		as.emit(ldHi)
		as.jump(bpf.JumpEqual, vhi, next, pass)
		as.emit(ldLo)
		as.jump(bpf.JumpEqual, vlo, fail, next)
	case specs.OpGreaterThan, specs.OpGreaterEqual:
		as.emit(ldHi)
		as.jump(bpf.JumpGreaterThan, vhi, pass, next)
		as.jump(bpf.JumpEqual, vhi, next, fail)
		as.emit(ldLo)
		cond := bpf.JumpGreaterThan
		if c.Op == specs.OpGreaterEqual {
			cond = bpf.JumpGreaterOrEqual
		}
		as.jump(cond, vlo, next, fail)
	case specs.OpLessThan, specs.OpLessEqual:
		as.emit(ldHi)
		as.jump(bpf.JumpGreaterThan, vhi, fail, next)
		as.jump(bpf.JumpEqual, vhi, next, pass)
		as.emit(ldLo)
		// a < v is !(a >= v); a <= v is !(a > v).
		cond := bpf.JumpGreaterOrEqual
		if c.Op == specs.OpLessEqual {
			cond = bpf.JumpGreaterThan
		}
		as.jump(cond, vlo, fail, next)
	case specs.OpMaskedEqual:
		v2lo, v2hi := uint32(c.ValueTwo), uint32(c.ValueTwo>>32)
		as.emit(ldHi)
		as.emit(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: vhi})
		as.jump(bpf.JumpEqual, v2hi, next, fail)
		as.emit(ldLo)
		as.emit(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: vlo})
		as.jump(bpf.JumpEqual, v2lo, next, fail)
	}
	as.mark(pass)
}

// retValue is the filter's return value for an action.
func retValue(a specs.LinuxSeccompAction, errnoRet *uint) (uint32, error) {
	data := uint32(unix.EPERM)
	if errnoRet != nil {
		if *errnoRet > unix.SECCOMP_RET_DATA {
			return 0, fmt.Errorf("%w: errnoRet %d", ErrInvalid, *errnoRet)
		}
		data = uint32(*errnoRet)
	}
	switch a {
	case specs.ActAllow:
		return unix.SECCOMP_RET_ALLOW, nil
	case specs.ActErrno:
		return unix.SECCOMP_RET_ERRNO | data, nil
	case specs.ActTrace:
		return unix.SECCOMP_RET_TRACE | data, nil
	case specs.ActKill, specs.ActKillThread:
		return unix.SECCOMP_RET_KILL_THREAD, nil
	case specs.ActKillProcess:
		return unix.SECCOMP_RET_KILL_PROCESS, nil
	case specs.ActTrap:
		return unix.SECCOMP_RET_TRAP, nil
	case specs.ActLog:
		return unix.SECCOMP_RET_LOG, nil
	case specs.ActNotify:
		return 0, fmt.Errorf("%w: action %s", ErrUnsupported, a)
	case "":
		return 0, fmt.Errorf("%w: no action", ErrInvalid)
	}
	return 0, fmt.Errorf("%w: action %q", ErrInvalid, a)
}

// filterFlags turns the config's flags into seccomp(2)'s.
func filterFlags(flags []specs.LinuxSeccompFlag) (uint, error) {
	var out uint
	for _, f := range flags {
		switch f {
		case specs.LinuxSeccompFlagLog:
			out |= unix.SECCOMP_FILTER_FLAG_LOG
		case specs.LinuxSeccompFlagSpecAllow:
			out |= unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW
		case "SECCOMP_FILTER_FLAG_TSYNC":
			// The init is one thread when it installs the filter.
		default:
			return 0, fmt.Errorf("%w: seccomp flag %q", ErrUnsupported, f)
		}
	}
	return out, nil
}

// label names a position in an assembler's block.
type label int

// next, as a jump target, is the following instruction.
const next label = -1

// assembler builds a block of instructions whose conditional jumps go to
// labels inside it (or to its end), resolved by assemble.
type assembler struct {
	ins    []bpf.Instruction
	jumps  []pendingJump
	labels []int // label -> index of the instruction it marks
}

type pendingJump struct {
	at          int
	cond        bpf.JumpTest
	val         uint32
	true, false label
}

func (as *assembler) newLabel() label {
	as.labels = append(as.labels, -1)
	return label(len(as.labels) - 1)
}

func (as *assembler) mark(l label) { as.labels[l] = len(as.ins) }

func (as *assembler) emit(i bpf.Instruction) { as.ins = append(as.ins, i) }

// jump emits a conditional jump to t when cond holds, else to f.
func (as *assembler) jump(cond bpf.JumpTest, val uint32, t, f label) {
	as.jumps = append(as.jumps, pendingJump{at: len(as.ins), cond: cond, val: val, true: t, false: f})
	as.ins = append(as.ins, nil)
}

// errLongJump: a jump inside a block went past what a conditional jump
// can reach.
var errLongJump = errors.New("seccomp: a conditional jump of more than 255 instructions")

func (as *assembler) assemble() ([]bpf.Instruction, error) {
	skip := func(from int, l label) (uint8, error) {
		if l == next {
			return 0, nil
		}
		to := as.labels[l]
		d := to - from - 1
		if to < 0 || d < 0 || d > 255 {
			return 0, errLongJump
		}
		return uint8(d), nil
	}
	for _, j := range as.jumps {
		t, err := skip(j.at, j.true)
		if err != nil {
			return nil, err
		}
		f, err := skip(j.at, j.false)
		if err != nil {
			return nil, err
		}
		as.ins[j.at] = bpf.JumpIf{Cond: j.cond, Val: j.val, SkipTrue: t, SkipFalse: f}
	}
	return as.ins, nil
}

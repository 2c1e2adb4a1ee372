package seccomp

import (
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

//go:generate go run gen_tables.go

// sysnum is a system call's name and number on one architecture.
type sysnum struct {
	name string
	nr   uint32
}

// arch is an architecture a filter can hold a section for.
type arch struct {
	name  specs.Arch
	audit uint32 // AUDIT_ARCH_*, seccomp_data.arch
	// bits32 says its system call arguments are 32 bits: conditions
	// compare the low halves only.
	bits32 bool
	// x32 says the x32 ABI shares its audit arch (x86-64): system call
	// numbers with x32Bit set are that ABI's, which the filter refuses.
	x32   bool
	table []sysnum // sorted by name
}

// x32Bit marks the x32 ABI's system call numbers (__X32_SYSCALL_BIT).
const x32Bit = 0x40000000

// Audit architectures (linux/audit.h).
const (
	auditX86_64  = 0xc000003e
	auditI386    = 0x40000003
	auditAARCH64 = 0xc00000b7
	auditARM     = 0x40000028
)

var (
	archAMD64 = &arch{name: specs.ArchX86_64, audit: auditX86_64, x32: true, table: syscallsAMD64}
	arch386   = &arch{name: specs.ArchX86, audit: auditI386, bits32: true, table: syscalls386}
	archARM64 = &arch{name: specs.ArchAARCH64, audit: auditAARCH64, table: syscallsARM64}
	archARM   = &arch{name: specs.ArchARM, audit: auditARM, bits32: true, table: syscallsARM}
)

// nativeArches maps a GOARCH to its architecture and the compat one whose
// programs its kernel also runs (nil when there is none the compiler knows).
func nativeArches(goarch string) (native, compat *arch) {
	switch goarch {
	case "amd64":
		return archAMD64, arch386
	case "386":
		return arch386, nil
	case "arm64":
		return archARM64, archARM
	case "arm":
		return archARM, nil
	}
	return nil, nil
}

// lookup returns the number of the system call name on a.
func (a *arch) lookup(name string) (uint32, bool) {
	i, ok := slices.BinarySearchFunc(a.table, name, func(s sysnum, n string) int { return strings.Compare(s.name, n) })
	if !ok {
		return 0, false
	}
	return a.table[i].nr, true
}

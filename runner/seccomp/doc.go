// Package seccomp compiles a runtime-spec seccomp config
// (specs.LinuxSeccomp) into a classic BPF program for seccomp(2) and
// installs it, in pure Go: no libseccomp, so that berth stays a static
// binary. Compile's program checks seccomp_data.arch, dispatches to the
// section of the machine's architecture (and of its compat one, x86 on
// amd64 or arm on arm64, when the config lists it), refuses the x32 ABI,
// and tests each system call with rules in a linear chain; the kernel's
// seccomp action cache spares the calls a filter always allows from
// running it at all.
//
// System call numbers come from tables generated (gen_tables.go) from
// golang.org/x/sys/unix, as plain static data: linking this package costs
// a process no initialization, which matters to the container init that
// re-executes berth.
//
// It may import the standard library, golang.org/x/sys, golang.org/x/net/bpf
// and the runtime-spec types; nothing of berth's (depcheck_test.go).
package seccomp

package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	mobyseccomp "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Security are the container's confinement settings: the flags
// --security-opt, --cap-add, --cap-drop and --privileged. The zero value
// is Berth's default: docker's default seccomp profile, docker's default
// capabilities, no_new_privs.
type Security struct {
	// SeccompProfile is a seccomp profile in docker's JSON format
	// (--security-opt seccomp=FILE); nil means docker's default profile.
	SeccompProfile []byte
	// SeccompUnconfined runs the container without a seccomp filter
	// (--security-opt seccomp=unconfined).
	SeccompUnconfined bool
	// NoNewPrivileges, when not nil, sets no_new_privs; nil means true.
	NoNewPrivileges *bool
	// CapAdd and CapDrop change DefaultCapabilities as docker does:
	// names with or without the CAP_ prefix, any case, or ALL. With ALL
	// in CapAdd the process has every capability but CapDrop's; with ALL
	// in CapDrop, only CapAdd's; else the defaults less CapDrop plus
	// CapAdd.
	CapAdd, CapDrop []string
	// Privileged gives the container every capability (that berth
	// holds), every host
	// device (HostDevices, which the caller lists into Devices), no
	// seccomp filter, no masked or read-only paths, and /sys and its
	// cgroup mount writable: full access to the host.
	Privileged bool
	// Devices are the host devices a privileged container gets (see
	// HostDevices); ignored otherwise.
	Devices []specs.LinuxDevice
}

// ParseSecurityOpt applies one --security-opt value to sec, as docker
// reads it: "seccomp=unconfined", "seccomp=FILE" (the file read with
// readFile and checked to be a profile in docker's JSON format),
// "no-new-privileges", "no-new-privileges=true|false" (also with ":"
// for "="). Errors wrap ErrInvalid and name the option or file.
func ParseSecurityOpt(sec *Security, opt string, readFile func(string) ([]byte, error)) error {
	key, value, hasValue := strings.Cut(opt, "=")
	if !hasValue {
		key, value, hasValue = strings.Cut(opt, ":")
	}
	switch key {
	case "seccomp":
		switch {
		case !hasValue || value == "":
			return fmt.Errorf("%w: security option %q: want seccomp=unconfined or seccomp=PROFILE.json", ErrInvalid, opt)
		case value == "unconfined":
			sec.SeccompUnconfined, sec.SeccompProfile = true, nil
			return nil
		}
		b, err := readFile(value)
		if err != nil {
			return fmt.Errorf("%w: seccomp profile: %w", ErrInvalid, err)
		}
		if err := checkProfile(b); err != nil {
			return fmt.Errorf("%w: seccomp profile %s: %v", ErrInvalid, value, err)
		}
		sec.SeccompUnconfined, sec.SeccompProfile = false, b
		return nil
	case "no-new-privileges":
		v := true
		if hasValue {
			b, err := strconv.ParseBool(value)
			if err != nil {
				return fmt.Errorf("%w: security option %q: want no-new-privileges=true or false", ErrInvalid, opt)
			}
			v = b
		}
		sec.NoNewPrivileges = &v
		return nil
	case "apparmor", "label":
		return fmt.Errorf("%w: security option %q: berth applies no AppArmor profile or SELinux label", ErrInvalid, opt)
	}
	return fmt.Errorf("%w: security option %q: want seccomp=... or no-new-privileges", ErrInvalid, opt)
}

// checkProfile decodes b as a seccomp profile in docker's format; a
// syntax error names its line.
func checkProfile(b []byte) error {
	var p mobyseccomp.Seccomp
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	err := dec.Decode(&p)
	if se := (*json.SyntaxError)(nil); errors.As(err, &se) {
		line := 1 + bytes.Count(b[:min(int(se.Offset), len(b))], []byte("\n"))
		return fmt.Errorf("line %d: %v", line, se)
	}
	if err != nil {
		return err
	}
	if p.DefaultAction == "" {
		return errors.New("no defaultAction")
	}
	return nil
}

// heldCapabilities is AllCapabilities less those this process does not
// hold (a runtime cannot give more than it has: a sandbox that drops
// CAP_SYS_RESOURCE from berth's root drops it from a privileged
// container); all of them when its sets cannot be read.
func heldCapabilities() []string {
	mask, ok := effectiveCapabilities()
	all := AllCapabilities()
	if !ok {
		return all
	}
	var out []string
	for bit, c := range all { // in the kernel's order: the index is the bit
		if mask&(1<<bit) != 0 {
			out = append(out, c)
		}
	}
	return out
}

// AllCapabilities returns every capability name Linux defines, in the
// order of their numbers (CAP_CHOWN is 0).
func AllCapabilities() []string {
	return []string{
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
		"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
		"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
		"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
		"CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
		"CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
		"CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
		"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
	}
}

// NormalizeCapability returns the runtime-spec name of a --cap-add or
// --cap-drop value (CAP_ added, upper case), "ALL" for all; an unknown
// name is an error wrapping ErrInvalid.
func NormalizeCapability(name string) (string, error) {
	n := strings.ToUpper(strings.TrimSpace(name))
	if n == "ALL" {
		return n, nil
	}
	if !strings.HasPrefix(n, "CAP_") {
		n = "CAP_" + n
	}
	if !slices.Contains(AllCapabilities(), n) {
		return "", fmt.Errorf("%w: unknown capability %q", ErrInvalid, name)
	}
	return n, nil
}

// capabilities returns the process's capability set for sec.
func (sec Security) capabilities() ([]string, error) {
	if sec.Privileged {
		return heldCapabilities(), nil
	}
	norm := func(names []string) ([]string, error) {
		out := make([]string, 0, len(names))
		for _, n := range names {
			c, err := NormalizeCapability(n)
			if err != nil {
				return nil, err
			}
			out = append(out, c)
		}
		return out, nil
	}
	add, err := norm(sec.CapAdd)
	if err != nil {
		return nil, err
	}
	drop, err := norm(sec.CapDrop)
	if err != nil {
		return nil, err
	}
	var caps []string
	switch {
	case slices.Contains(add, "ALL"):
		for _, c := range AllCapabilities() {
			if !slices.Contains(drop, c) {
				caps = append(caps, c)
			}
		}
		return caps, nil
	case slices.Contains(drop, "ALL"):
		caps = nil
	default:
		for _, c := range DefaultCapabilities() {
			if !slices.Contains(drop, c) {
				caps = append(caps, c)
			}
		}
	}
	for _, c := range add {
		if c != "ALL" && !slices.Contains(caps, c) {
			caps = append(caps, c)
		}
	}
	return caps, nil
}

// seccompConfig returns the container's seccomp config: sec's profile, or
// docker's default, with the rules that apply to s's capabilities (its
// bounding set), this machine's architecture and kernel; nil when the
// container runs unconfined or privileged.
func (sec Security) seccompConfig(s *specs.Spec) (*specs.LinuxSeccomp, error) {
	if sec.Privileged || sec.SeccompUnconfined {
		return nil, nil
	}
	if sec.SeccompProfile == nil {
		c, err := mobyseccomp.GetDefaultProfile(s)
		if err != nil {
			return nil, fmt.Errorf("docker's default seccomp profile: %w", err)
		}
		return c, nil
	}
	c, err := mobyseccomp.LoadProfile(string(sec.SeccompProfile), s)
	if err != nil {
		return nil, fmt.Errorf("%w: seccomp profile: %v", ErrInvalid, err)
	}
	return c, nil
}

// HostDevices lists the host's device nodes under /dev (less the
// pseudo-terminals, shared memory and message queues, which a container
// has its own of) for a privileged container's Security.Devices.
func HostDevices() ([]specs.LinuxDevice, error) {
	var out []specs.LinuxDevice
	err := filepath.WalkDir("/dev", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == "/dev" {
				return err
			}
			return nil
		}
		if d.IsDir() {
			switch p {
			case "/dev/pts", "/dev/shm", "/dev/mqueue":
				return fs.SkipDir
			}
			return nil
		}
		if p == "/dev/console" || p == "/dev/ptmx" || d.Type()&fs.ModeDevice == 0 {
			return nil
		}
		var st unix.Stat_t
		if unix.Lstat(p, &st) != nil {
			return nil
		}
		typ := "b"
		if d.Type()&fs.ModeCharDevice != 0 {
			typ = "c"
		}
		mode := os.FileMode(st.Mode & 0o777)
		uid, gid := st.Uid, st.Gid
		out = append(out, specs.LinuxDevice{Path: p, Type: typ, Major: int64(unix.Major(st.Rdev)), Minor: int64(unix.Minor(st.Rdev)),
			FileMode: &mode, UID: &uid, GID: &gid})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing host devices: %w", err)
	}
	return out, nil
}

package container

import (
	"encoding/binary"
	"errors"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-registry/berth/runner/seccomp"
)

// The init's config crosses the socketpair in a small binary form rather
// than as JSON: decoding a runtime spec with encoding/json in a fresh
// process first builds its reflection caches for a dozen types, about half
// a millisecond of every container start. Parent and init are the same
// binary (/proc/self/exe), so the form needs no versioning.
//
// Only the fields the init reads travel (initSpec); when the init reads
// another one, add it to initSpec, encodeConfig and decodeConfig.

// initSpec is the part of spec that the init reads.
func initSpec(spec *specs.Spec) *specs.Spec {
	out := &specs.Spec{Hostname: spec.Hostname, Domainname: spec.Domainname, Mounts: spec.Mounts}
	if p := spec.Process; p != nil {
		out.Process = &specs.Process{
			Terminal: p.Terminal, ConsoleSize: p.ConsoleSize, User: p.User, Args: p.Args, Env: p.Env,
			Cwd: p.Cwd, Capabilities: p.Capabilities, Rlimits: p.Rlimits,
			NoNewPrivileges: p.NoNewPrivileges, OOMScoreAdj: p.OOMScoreAdj,
		}
		out.Process.User.Username = ""
	}
	if r := spec.Root; r != nil {
		out.Root = &specs.Root{Path: r.Path, Readonly: r.Readonly}
	}
	if l := spec.Linux; l != nil {
		out.Linux = &specs.Linux{
			Namespaces: l.Namespaces, Devices: l.Devices, Sysctl: l.Sysctl,
			MaskedPaths: l.MaskedPaths, ReadonlyPaths: l.ReadonlyPaths, RootfsPropagation: l.RootfsPropagation,
		}
	}
	return out
}

// encodeConfig writes cfg (its Spec reduced to initSpec) in the init's
// binary form.
func encodeConfig(cfg initConfig) []byte {
	var w wireWriter
	w.bool(cfg.CgroupNS)
	w.bool(cfg.UserNS)
	w.uvarint(uint64(cfg.CgroupFiles))
	w.bool(cfg.Seccomp != nil)
	if cfg.Seccomp != nil {
		b, _ := cfg.Seccomp.MarshalBinary()
		w.str(string(b))
	}
	s := initSpec(cfg.Spec)
	w.str(s.Hostname)
	w.str(s.Domainname)
	w.uvarint(uint64(len(s.Mounts)))
	for _, m := range s.Mounts {
		w.str(m.Destination)
		w.str(m.Type)
		w.str(m.Source)
		w.strs(m.Options)
	}
	w.bool(s.Process != nil)
	if p := s.Process; p != nil {
		w.bool(p.Terminal)
		w.bool(p.ConsoleSize != nil)
		if p.ConsoleSize != nil {
			w.uvarint(uint64(p.ConsoleSize.Height))
			w.uvarint(uint64(p.ConsoleSize.Width))
		}
		w.uvarint(uint64(p.User.UID))
		w.uvarint(uint64(p.User.GID))
		w.optUint32(p.User.Umask)
		w.uvarint(uint64(len(p.User.AdditionalGids)))
		for _, g := range p.User.AdditionalGids {
			w.uvarint(uint64(g))
		}
		w.strs(p.Args)
		w.strs(p.Env)
		w.str(p.Cwd)
		w.bool(p.Capabilities != nil)
		if c := p.Capabilities; c != nil {
			for _, set := range [][]string{c.Bounding, c.Effective, c.Inheritable, c.Permitted, c.Ambient} {
				w.strs(set)
			}
		}
		w.uvarint(uint64(len(p.Rlimits)))
		for _, r := range p.Rlimits {
			w.str(r.Type)
			w.uvarint(r.Hard)
			w.uvarint(r.Soft)
		}
		w.bool(p.NoNewPrivileges)
		w.bool(p.OOMScoreAdj != nil)
		if p.OOMScoreAdj != nil {
			w.varint(int64(*p.OOMScoreAdj))
		}
	}
	w.bool(s.Root != nil)
	if s.Root != nil {
		w.str(s.Root.Path)
		w.bool(s.Root.Readonly)
	}
	w.bool(s.Linux != nil)
	if l := s.Linux; l != nil {
		w.uvarint(uint64(len(l.Namespaces)))
		for _, ns := range l.Namespaces {
			w.str(string(ns.Type))
			w.str(ns.Path)
		}
		w.uvarint(uint64(len(l.Devices)))
		for _, d := range l.Devices {
			w.str(d.Path)
			w.str(d.Type)
			w.varint(d.Major)
			w.varint(d.Minor)
			w.bool(d.FileMode != nil)
			if d.FileMode != nil {
				w.uvarint(uint64(*d.FileMode))
			}
			w.optUint32(d.UID)
			w.optUint32(d.GID)
		}
		w.uvarint(uint64(len(l.Sysctl)))
		for k, v := range l.Sysctl {
			w.str(k)
			w.str(v)
		}
		w.strs(l.MaskedPaths)
		w.strs(l.ReadonlyPaths)
		w.str(l.RootfsPropagation)
	}
	return w.b
}

// errBadConfig: the init's config did not decode.
var errBadConfig = errors.New("malformed config from the parent")

// decodeConfig reads what encodeConfig wrote.
func decodeConfig(b []byte) (initConfig, error) {
	r := wireReader{b: b}
	var cfg initConfig
	cfg.CgroupNS = r.bool()
	cfg.UserNS = r.bool()
	cfg.CgroupFiles = r.count()
	if r.bool() {
		cfg.Seccomp = &seccomp.Program{}
		if err := cfg.Seccomp.UnmarshalBinary([]byte(r.str())); err != nil {
			return initConfig{}, errBadConfig
		}
	}
	s := &specs.Spec{}
	cfg.Spec = s
	s.Hostname = r.str()
	s.Domainname = r.str()
	if n := r.count(); n > 0 {
		s.Mounts = make([]specs.Mount, n)
		for i := range s.Mounts {
			m := &s.Mounts[i]
			m.Destination, m.Type, m.Source, m.Options = r.str(), r.str(), r.str(), r.strs()
		}
	}
	if r.bool() {
		p := &specs.Process{}
		s.Process = p
		p.Terminal = r.bool()
		if r.bool() {
			p.ConsoleSize = &specs.Box{Height: uint(r.uvarint()), Width: uint(r.uvarint())}
		}
		p.User.UID = uint32(r.uvarint())
		p.User.GID = uint32(r.uvarint())
		p.User.Umask = r.optUint32()
		if n := r.count(); n > 0 {
			p.User.AdditionalGids = make([]uint32, n)
			for i := range p.User.AdditionalGids {
				p.User.AdditionalGids[i] = uint32(r.uvarint())
			}
		}
		p.Args = r.strs()
		p.Env = r.strs()
		p.Cwd = r.str()
		if r.bool() {
			c := &specs.LinuxCapabilities{}
			c.Bounding, c.Effective, c.Inheritable, c.Permitted, c.Ambient = r.strs(), r.strs(), r.strs(), r.strs(), r.strs()
			p.Capabilities = c
		}
		if n := r.count(); n > 0 {
			p.Rlimits = make([]specs.POSIXRlimit, n)
			for i := range p.Rlimits {
				p.Rlimits[i] = specs.POSIXRlimit{Type: r.str(), Hard: r.uvarint(), Soft: r.uvarint()}
			}
		}
		p.NoNewPrivileges = r.bool()
		if r.bool() {
			v := int(r.varint())
			p.OOMScoreAdj = &v
		}
	}
	if r.bool() {
		s.Root = &specs.Root{Path: r.str(), Readonly: r.bool()}
	}
	if r.bool() {
		l := &specs.Linux{}
		s.Linux = l
		if n := r.count(); n > 0 {
			l.Namespaces = make([]specs.LinuxNamespace, n)
			for i := range l.Namespaces {
				l.Namespaces[i] = specs.LinuxNamespace{Type: specs.LinuxNamespaceType(r.str()), Path: r.str()}
			}
		}
		if n := r.count(); n > 0 {
			l.Devices = make([]specs.LinuxDevice, n)
			for i := range l.Devices {
				d := &l.Devices[i]
				d.Path, d.Type, d.Major, d.Minor = r.str(), r.str(), r.varint(), r.varint()
				if r.bool() {
					m := os.FileMode(r.uvarint())
					d.FileMode = &m
				}
				d.UID, d.GID = r.optUint32(), r.optUint32()
			}
		}
		if n := r.count(); n > 0 {
			l.Sysctl = make(map[string]string, n)
			for range n {
				k := r.str()
				l.Sysctl[k] = r.str()
			}
		}
		l.MaskedPaths = r.strs()
		l.ReadonlyPaths = r.strs()
		l.RootfsPropagation = r.str()
	}
	if r.bad || len(r.b) != 0 {
		return initConfig{}, errBadConfig
	}
	return cfg, nil
}

// wireWriter appends the init's binary form: varints, and strings as a
// length and their bytes.
type wireWriter struct{ b []byte }

func (w *wireWriter) uvarint(v uint64) { w.b = binary.AppendUvarint(w.b, v) }
func (w *wireWriter) varint(v int64)   { w.b = binary.AppendVarint(w.b, v) }

func (w *wireWriter) bool(v bool) {
	if v {
		w.b = append(w.b, 1)
	} else {
		w.b = append(w.b, 0)
	}
}

func (w *wireWriter) str(s string) {
	w.uvarint(uint64(len(s)))
	w.b = append(w.b, s...)
}

// optUint32 writes whether v is set, then *v.
func (w *wireWriter) optUint32(v *uint32) {
	w.bool(v != nil)
	if v != nil {
		w.uvarint(uint64(*v))
	}
}

// strs writes a list; nil and empty read back as nil.
func (w *wireWriter) strs(ss []string) {
	w.uvarint(uint64(len(ss)))
	for _, s := range ss {
		w.str(s)
	}
}

// wireReader reads the binary form; a short or malformed input sets bad
// and yields zero values from then on.
type wireReader struct {
	b   []byte
	bad bool
}

func (r *wireReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.bad, r.b = true, nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *wireReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.bad, r.b = true, nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

// count reads a length, refusing one larger than what is left (each
// element takes a byte at least).
func (r *wireReader) count() int {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.bad, r.b = true, nil
		return 0
	}
	return int(n)
}

func (r *wireReader) bool() bool {
	if len(r.b) == 0 || r.b[0] > 1 {
		r.bad, r.b = true, nil
		return false
	}
	v := r.b[0] == 1
	r.b = r.b[1:]
	return v
}

func (r *wireReader) optUint32() *uint32 {
	if !r.bool() {
		return nil
	}
	v := uint32(r.uvarint())
	return &v
}

func (r *wireReader) str() string {
	n := r.count()
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *wireReader) strs() []string {
	n := r.count()
	if n == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = r.str()
	}
	return out
}

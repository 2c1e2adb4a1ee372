package seccomp

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// compilerVersion is part of every cache key: change it when Compile
// changes the programs it makes.
const compilerVersion = "berth-seccomp-1"

// Cache keeps compiled programs as files in Dir, each named by a hash of
// the config and architecture it was compiled from, so that starting a
// container reads its filter (tens of microseconds) rather than compiling
// it (about a millisecond for docker's default profile). Files are
// written whole (a temporary file renamed); one that does not decode is
// compiled again. Nothing removes them: there is one per distinct config.
type Cache struct {
	Dir string
}

// Compile returns Compile(s, goarch), from the cache when it holds it,
// else compiled and stored (a failure to store is not an error).
func (c Cache) Compile(s *specs.LinuxSeccomp, goarch string) (*Program, error) {
	if s == nil || c.Dir == "" {
		return Compile(s, goarch)
	}
	name := filepath.Join(c.Dir, key(s, goarch)+".bpf")
	if b, err := os.ReadFile(name); err == nil {
		var p Program
		if p.UnmarshalBinary(b) == nil {
			return &p, nil
		}
	}
	p, err := Compile(s, goarch)
	if err != nil {
		return nil, err
	}
	b, _ := p.MarshalBinary()
	if os.MkdirAll(c.Dir, 0o700) == nil {
		if f, err := os.CreateTemp(c.Dir, ".tmp-*"); err == nil {
			_, werr := f.Write(b)
			if cerr := f.Close(); werr == nil && cerr == nil && os.Rename(f.Name(), name) == nil {
				return p, nil
			}
			os.Remove(f.Name())
		}
	}
	return p, nil
}

// key hashes everything Compile reads of s, and goarch.
func key(s *specs.LinuxSeccomp, goarch string) string {
	h := sha256.New()
	str(h, compilerVersion)
	str(h, goarch)
	str(h, string(s.DefaultAction))
	optUint(h, s.DefaultErrnoRet)
	str(h, s.ListenerPath)
	num(h, uint64(len(s.Architectures)))
	for _, a := range s.Architectures {
		str(h, string(a))
	}
	num(h, uint64(len(s.Flags)))
	for _, f := range s.Flags {
		str(h, string(f))
	}
	num(h, uint64(len(s.Syscalls)))
	for _, sc := range s.Syscalls {
		num(h, uint64(len(sc.Names)))
		for _, n := range sc.Names {
			str(h, n)
		}
		str(h, string(sc.Action))
		optUint(h, sc.ErrnoRet)
		num(h, uint64(len(sc.Args)))
		for _, a := range sc.Args {
			num(h, uint64(a.Index))
			num(h, a.Value)
			num(h, a.ValueTwo)
			str(h, string(a.Op))
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

func num(h hash.Hash, v uint64) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	h.Write(b[:])
}

func str(h hash.Hash, s string) {
	num(h, uint64(len(s)))
	h.Write([]byte(s))
}

func optUint(h hash.Hash, v *uint) {
	if v == nil {
		num(h, 0)
		return
	}
	num(h, 1)
	num(h, uint64(*v))
}

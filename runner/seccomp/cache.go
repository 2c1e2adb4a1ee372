package seccomp

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
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
	var k keyBuf
	k.str(compilerVersion)
	k.str(goarch)
	k.str(string(s.DefaultAction))
	k.optUint(s.DefaultErrnoRet)
	k.str(s.ListenerPath)
	k.num(uint64(len(s.Architectures)))
	for _, a := range s.Architectures {
		k.str(string(a))
	}
	k.num(uint64(len(s.Flags)))
	for _, f := range s.Flags {
		k.str(string(f))
	}
	k.num(uint64(len(s.Syscalls)))
	for _, sc := range s.Syscalls {
		k.num(uint64(len(sc.Names)))
		for _, n := range sc.Names {
			k.str(n)
		}
		k.str(string(sc.Action))
		k.optUint(sc.ErrnoRet)
		k.num(uint64(len(sc.Args)))
		for _, a := range sc.Args {
			k.num(uint64(a.Index))
			k.num(a.Value)
			k.num(a.ValueTwo)
			k.str(string(a.Op))
		}
	}
	sum := sha256.Sum256(k.b)
	return hex.EncodeToString(sum[:])
}

// keyBuf is what key hashes: every value with its length, so that no two
// configs write the same bytes.
type keyBuf struct{ b []byte }

func (k *keyBuf) num(v uint64) { k.b = binary.AppendUvarint(k.b, v) }

func (k *keyBuf) str(s string) {
	k.num(uint64(len(s)))
	k.b = append(k.b, s...)
}

func (k *keyBuf) optUint(v *uint) {
	if v == nil {
		k.num(0)
		return
	}
	k.num(1)
	k.num(uint64(*v))
}

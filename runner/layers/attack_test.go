package layers_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/berth-registry/berth/runner/layers"
)

// etcProbe is a name the /etc attack tries to create; it must never exist.
const etcProbe = "/etc/berth-layers-attack-probe"

// attack is a hostile layer aimed at a host sentinel. refused layers must
// fail with ErrUnsafeEntry and leave nothing; confined ones unpack, and
// check says where their content went.
type attack struct {
	name    string
	entries func(h hostSentinel) []ent
	refused bool
	check   func(t *testing.T, h hostSentinel, root string)
}

// up climbs far enough from any store root to reach /.
var up = strings.Repeat("../", 32)

func attacks() []attack {
	return []attack{
		{name: "dotdot file", refused: true, entries: func(h hostSentinel) []ent {
			return []ent{reg(up+h.file[1:], "pwned", 0o644)}
		}},
		{name: "dotdot new file", refused: true, entries: func(h hostSentinel) []ent {
			return []ent{reg(up+h.dir[1:]+"/planted", "pwned", 0o644)}
		}},
		{name: "dotdot inside a path", refused: true, entries: func(h hostSentinel) []ent {
			return []ent{dir("a/", 0o755), reg("a/"+up+h.file[1:], "pwned", 0o644)}
		}},
		{name: "dotdot directory", refused: true, entries: func(h hostSentinel) []ent {
			return []ent{dir("../x/", 0o755)}
		}},
		{name: "absolute file is confined", entries: func(h hostSentinel) []ent {
			return []ent{reg(h.file, "pwned", 0o644)}
		}, check: func(t *testing.T, h hostSentinel, root string) {
			if got := readFile(t, filepath.Join(root, h.file)); got != "pwned" {
				t.Errorf("confined file = %q", got)
			}
		}},
		{name: "absolute with dotdot is confined", entries: func(h hostSentinel) []ent {
			return []ent{reg("/"+up+h.file, "pwned", 0o644)}
		}, check: func(t *testing.T, h hostSentinel, root string) {
			if got := readFile(t, filepath.Join(root, h.file)); got != "pwned" {
				t.Errorf("confined file = %q", got)
			}
		}},
		{name: "symlink to host dir then file through it", refused: true, entries: func(h hostSentinel) []ent {
			return []ent{symlink("evil", h.dir), reg("evil/sentinel", "pwned", 0o644)}
		}},
		{name: "symlink to host dir then new file through it", refused: true, entries: func(h hostSentinel) []ent {
			return []ent{symlink("evil", h.dir), reg("evil/planted", "pwned", 0o644)}
		}},
		{name: "symlink to /etc then file through it", refused: true, entries: func(h hostSentinel) []ent {
			return []ent{symlink("etc", "/etc"), reg("etc/"+filepath.Base(etcProbe), "pwned", 0o644)}
		}},
		{name: "relative symlink climbing out", refused: true, entries: func(h hostSentinel) []ent {
			return []ent{symlink("rel", up+h.dir[1:]), reg("rel/planted", "pwned", 0o644)}
		}},
		{name: "symlink chain", refused: true, entries: func(h hostSentinel) []ent {
			return []ent{symlink("b", h.dir), symlink("a", "b"), reg("a/planted", "pwned", 0o644)}
		}},
		{name: "symlink then directory through it", refused: true, entries: func(h hostSentinel) []ent {
			return []ent{symlink("evil", h.dir), dir("evil/sub/", 0o777)}
		}},
		{name: "symlink then symlink through it", refused: true, entries: func(h hostSentinel) []ent {
			return []ent{symlink("evil", h.dir), symlink("evil/planted", "/")}
		}},
		{name: "symlink replaced by a file", entries: func(h hostSentinel) []ent {
			return []ent{symlink("s", h.file), reg("s", "pwned", 0o644)}
		}, check: func(t *testing.T, h hostSentinel, root string) {
			if got := readFile(t, filepath.Join(root, "s")); got != "pwned" {
				t.Errorf("s = %q", got)
			}
		}},
		{name: "symlink replaced by a directory", entries: func(h hostSentinel) []ent {
			return []ent{symlink("d", h.dir), dir("d/", 0o755), reg("d/sentinel", "pwned", 0o644)}
		}, check: func(t *testing.T, h hostSentinel, root string) {
			if got := readFile(t, filepath.Join(root, "d/sentinel")); got != "pwned" {
				t.Errorf("d/sentinel = %q", got)
			}
		}},
		{name: "directory holding a host symlink replaced by a file", entries: func(h hostSentinel) []ent {
			return []ent{dir("d/", 0o755), symlink("d/host", h.dir), symlink("d/file", h.file), reg("d", "file now", 0o644)}
		}},
		{name: "hardlink to absolute host file", refused: true, entries: func(h hostSentinel) []ent {
			return []ent{hardlink("h", h.file)}
		}},
		{name: "hardlink to host file by dotdot", refused: true, entries: func(h hostSentinel) []ent {
			return []ent{hardlink("h", up+h.file[1:])}
		}},
		{name: "hardlink through a symlink", refused: true, entries: func(h hostSentinel) []ent {
			return []ent{symlink("evil", h.dir), hardlink("h", "evil/sentinel")}
		}},
		{name: "hardlink to a symlink to a host file is the symlink", entries: func(h hostSentinel) []ent {
			return []ent{symlink("s", h.file), hardlink("h", "s"), reg("s2", "x", 0o644)}
		}, check: func(t *testing.T, h hostSentinel, root string) {
			if st := lstat(t, filepath.Join(root, "h")); st.Mode&unix.S_IFMT != unix.S_IFLNK {
				t.Errorf("h is mode %o, want the symlink itself", st.Mode)
			}
		}},
		{name: "hardlink to a later entry", refused: true, entries: func(h hostSentinel) []ent {
			return []ent{hardlink("h", "later"), reg("later", "x", 0o644)}
		}},
		{name: "hardlink to a directory", refused: true, entries: func(h hostSentinel) []ent {
			return []ent{dir("d/", 0o755), hardlink("h", "d")}
		}},
		{name: "hardlink to itself", refused: true, entries: func(h hostSentinel) []ent {
			return []ent{reg("f", "x", 0o644), hardlink("f", "f")}
		}},
		{name: "whiteout through a symlink", refused: true, entries: func(h hostSentinel) []ent {
			return []ent{symlink("evil", h.dir), whiteout("evil/.wh.sentinel")}
		}},
		{name: "whiteout through a symlink by dotdot", refused: true, entries: func(h hostSentinel) []ent {
			return []ent{whiteout(up + h.dir[1:] + "/.wh.sentinel")}
		}},
		{name: "opaque marker through a symlink", refused: true, entries: func(h hostSentinel) []ent {
			return []ent{symlink("evil", h.dir), whiteout("evil/.wh..wh..opq")}
		}},
		{name: "whiteout of dot", refused: true, entries: func(h hostSentinel) []ent {
			return []ent{dir("d/", 0o755), whiteout("d/.wh..")}
		}},
		{name: "whiteout of nothing", refused: true, entries: func(h hostSentinel) []ent {
			return []ent{whiteout(".wh.")}
		}},
		{name: "dot as a symlink", refused: true, entries: func(h hostSentinel) []ent {
			return []ent{symlink(".", h.dir), reg("sentinel", "pwned", 0o644)}
		}},
		{name: "dot as a file", refused: true, entries: func(h hostSentinel) []ent {
			return []ent{reg(".", "x", 0o644)}
		}},
		{name: "dot as a hardlink", refused: true, entries: func(h hostSentinel) []ent {
			return []ent{reg("f", "x", 0o644), hardlink("./", "f")}
		}},
		{name: "dot as a directory is ignored", entries: func(h hostSentinel) []ent {
			return []ent{dir(".", 0o777), dir("./", 0o777), reg("f", "x", 0o644)}
		}, check: func(t *testing.T, h hostSentinel, root string) {
			if st := lstat(t, root); st.Mode != unix.S_IFDIR|0o755 {
				t.Errorf("layer root mode %o, want the store's 0755", st.Mode)
			}
		}},
		{name: "file through a file", refused: true, entries: func(h hostSentinel) []ent {
			return []ent{reg("f", "x", 0o644), reg("f/g", "x", 0o644)}
		}},
		{name: "device nodes are skipped", entries: func(h hostSentinel) []ent {
			return []ent{
				{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Devmajor: 1, Devminor: 3, Mode: 0o666, ModTime: epoch}},
				{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/sda", Devmajor: 8, Mode: 0o660, ModTime: epoch}},
				{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/wh", Mode: 0o600, ModTime: epoch}}, // 0/0: a forged whiteout
			}
		}, check: func(t *testing.T, h hostSentinel, root string) {
			for _, p := range []string{"dev/null", "dev/sda", "dev/wh"} {
				if exists(filepath.Join(root, p)) {
					t.Errorf("%s was created", p)
				}
			}
		}},
	}
}

func TestUnpackAttacks(t *testing.T) {
	if exists(etcProbe) {
		t.Fatalf("%s exists before the test", etcProbe)
	}
	for _, resolver := range []struct {
		name string
		walk bool
	}{{"openat2", false}, {"walk", true}} {
		t.Run(resolver.name, func(t *testing.T) {
			for _, a := range attacks() {
				t.Run(a.name, func(t *testing.T) {
					s := newStore(t, resolver.walk)
					h := newSentinel(t)
					tarball := buildTar(t, a.entries(h)...)
					l, err := unpackTar(t, s, tarball)
					if a.refused {
						if !errors.Is(err, layers.ErrUnsafeEntry) {
							t.Errorf("Unpack = %v, want ErrUnsafeEntry", err)
						}
						t.Log(err)
						assertNothingLeft(t, s, sha(tarball))
					} else if err != nil {
						t.Errorf("Unpack = %v, want the layer confined", err)
					} else if a.check != nil {
						a.check(t, h, l.Dir)
					}
					h.check(t)
					if exists(etcProbe) {
						os.Remove(etcProbe)
						t.Fatalf("the layer wrote %s", etcProbe)
					}
				})
			}
		})
	}
}

func TestUnpackSkipsDevicesKeepsFifos(t *testing.T) {
	s := newStore(t, false)
	l := mustUnpack(t, s,
		ent{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "null", Devmajor: 1, Devminor: 3, Mode: 0o666}},
		ent{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "fifo", Mode: 0o640, Uid: 7, Gid: 8}},
		reg("f", "x", 0o644))
	if l.Skipped != 1 || l.Entries != 3 {
		t.Errorf("Skipped %d of %d entries, want 1 of 3", l.Skipped, l.Entries)
	}
	fi, err := os.Lstat(filepath.Join(l.Dir, "fifo"))
	if err != nil || fi.Mode()&os.ModeNamedPipe == 0 || fi.Mode().Perm() != 0o640 {
		t.Fatalf("fifo: %v, %v", fi, err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 7 || st.Gid != 8 {
		t.Errorf("fifo owner %d:%d, want 7:8", st.Uid, st.Gid)
	}
}

func TestUnpackDiffIDMismatch(t *testing.T) {
	for _, c := range compressions {
		t.Run(c.name, func(t *testing.T) {
			s := newStore(t, false)
			tarball := buildTar(t, normalLayer()...)
			wrong := sha([]byte("another layer"))
			_, err := s.Unpack(context.Background(), bytes.NewReader(c.compress(t, tarball)), c.mediaType, wrong, layers.Limits{})
			if !errors.Is(err, layers.ErrDigestMismatch) {
				t.Fatalf("Unpack = %v, want ErrDigestMismatch", err)
			}
			assertNothingLeft(t, s, wrong)
			// The padding after the end-of-archive blocks is part of the
			// diff_id: changing only it must be caught.
			padded := append(append([]byte(nil), tarball...), 1)
			_, err = s.Unpack(context.Background(), bytes.NewReader(c.compress(t, padded)), c.mediaType, sha(tarball), layers.Limits{})
			if !errors.Is(err, layers.ErrDigestMismatch) {
				t.Fatalf("Unpack with altered trailing bytes = %v, want ErrDigestMismatch", err)
			}
			assertNothingLeft(t, s, sha(tarball))
		})
	}
}

func TestUnpackBlobDigestMismatch(t *testing.T) {
	s := newStore(t, false)
	tarball := buildTar(t, normalLayer()...)
	blob := gzipBytes(t, tarball)
	// The pull client wraps the blob in VerifyReader with the manifest's
	// descriptor; a blob that does not match must fail the unpack.
	r := layers.VerifyReader(bytes.NewReader(blob), sha([]byte("descriptor digest")), int64(len(blob)))
	_, err := s.Unpack(context.Background(), r, v1.MediaTypeImageLayerGzip, sha(tarball), layers.Limits{})
	if !errors.Is(err, layers.ErrDigestMismatch) {
		t.Fatalf("Unpack = %v, want ErrDigestMismatch", err)
	}
	assertNothingLeft(t, s, sha(tarball))
	r = layers.VerifyReader(bytes.NewReader(blob), sha(blob), int64(len(blob)))
	if _, err := s.Unpack(context.Background(), r, v1.MediaTypeImageLayerGzip, sha(tarball), layers.Limits{}); err != nil {
		t.Fatalf("Unpack of a matching blob: %v", err)
	}
}

func TestUnpackTruncated(t *testing.T) {
	for _, c := range compressions {
		t.Run(c.name, func(t *testing.T) {
			s := newStore(t, false)
			tarball := buildTar(t, reg("big", strings.Repeat("0123456789", 100000), 0o644))
			blob := c.compress(t, tarball)
			_, err := s.Unpack(context.Background(), bytes.NewReader(blob[:len(blob)/2]), c.mediaType, sha(tarball), layers.Limits{})
			if err == nil {
				t.Fatal("Unpack of half a blob succeeded")
			}
			assertNothingLeft(t, s, sha(tarball))
		})
	}
}

func TestUnpackBombs(t *testing.T) {
	const limit = 4 << 20
	zeros := strings.Repeat("\x00", 64<<20) // 64 MiB that compress to almost nothing
	bomb := buildTar(t, reg("zeros", zeros, 0o644))
	var many []ent
	for i := range 200 {
		many = append(many, reg("f"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+string(rune('a'+i/26)), "", 0o644))
	}
	manyTar := buildTar(t, many...)
	for _, c := range compressions {
		t.Run(c.name, func(t *testing.T) {
			s := newStore(t, false)
			blob := c.compress(t, bomb)
			if c.name != "tar" && len(blob) > limit/4 {
				t.Fatalf("the bomb compresses to %d bytes; not a bomb", len(blob))
			}
			_, err := s.Unpack(context.Background(), bytes.NewReader(blob), c.mediaType, sha(bomb), layers.Limits{MaxBytes: limit})
			if !errors.Is(err, layers.ErrTooLarge) {
				t.Fatalf("Unpack of a bomb = %v, want ErrTooLarge", err)
			}
			assertNothingLeft(t, s, sha(bomb))

			_, err = s.Unpack(context.Background(), bytes.NewReader(c.compress(t, manyTar)), c.mediaType, sha(manyTar), layers.Limits{MaxEntries: 100})
			if !errors.Is(err, layers.ErrTooLarge) {
				t.Fatalf("Unpack of 200 entries with a limit of 100 = %v, want ErrTooLarge", err)
			}
			assertNothingLeft(t, s, sha(manyTar))
		})
	}
}

func TestUnpackCancelled(t *testing.T) {
	s := newStore(t, false)
	tarball := buildTar(t, normalLayer()...)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Unpack(ctx, bytes.NewReader(tarball), v1.MediaTypeImageLayer, sha(tarball), layers.Limits{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Unpack = %v, want context.Canceled", err)
	}
	assertNothingLeft(t, s, sha(tarball))
}

// A reader error mid-stream (the network) fails the unpack and leaves
// nothing, like any other error.
func TestUnpackReaderError(t *testing.T) {
	s := newStore(t, false)
	tarball := buildTar(t, reg("a", strings.Repeat("a", 100000), 0o644), reg("b", "b", 0o644))
	r := io.MultiReader(bytes.NewReader(tarball[:60000]), errReader{})
	_, err := s.Unpack(context.Background(), r, v1.MediaTypeImageLayer, sha(tarball), layers.Limits{})
	if !errors.Is(err, errBroken) {
		t.Fatalf("Unpack = %v, want the reader's error", err)
	}
	assertNothingLeft(t, s, sha(tarball))
}

var errBroken = errors.New("connection reset")

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errBroken }

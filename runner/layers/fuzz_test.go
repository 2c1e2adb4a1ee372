package layers_test

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-registry/berth/runner/layers"
)

// scriptTar builds a tar from a script of one entry per line, "KIND NAME
// [TARGET]": f a file (TARGET is its content), d a directory, l a symlink,
// h a hardlink, p a fifo, c a character device. It lets the fuzzing engine
// reach the extractor's rules, which tar checksums hide from mutated bytes.
func scriptTar(script string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for line := range strings.SplitSeq(script, "\n") {
		kind, rest, _ := strings.Cut(line, " ")
		name, target, _ := strings.Cut(rest, " ")
		h := &tar.Header{Name: name, Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}
		switch kind {
		case "f":
			h.Typeflag, h.Size, h.Mode = tar.TypeReg, int64(len(target)), 0o644
		case "d":
			h.Typeflag = tar.TypeDir
		case "l":
			h.Typeflag, h.Linkname = tar.TypeSymlink, target
		case "h":
			h.Typeflag, h.Linkname = tar.TypeLink, target
		case "p":
			h.Typeflag = tar.TypeFifo
		case "c":
			h.Typeflag = tar.TypeChar
		default:
			continue
		}
		if tw.WriteHeader(h) != nil {
			continue
		}
		if h.Typeflag == tar.TypeReg {
			_, _ = tw.Write([]byte(target))
		}
	}
	_ = tw.Close()
	return buf.Bytes()
}

// FuzzExtract checks that extracting a layer, whatever the tar stream
// (plain, gzip or zstd) holds, creates nothing outside the extraction
// root: the root lies three directories deep in a fresh temporary
// directory, and each of those must hold nothing else afterwards.
func FuzzExtract(f *testing.F) {
	requireRoot(f)
	// Layers of the multilayer test image: whiteouts and opaque directories,
	// symlinks (absolute, relative and ../../etc/passwd), hardlinks, a fifo.
	seeds, _ := filepath.Glob(filepath.Join("testdata", "layers", "*"))
	if len(seeds) == 0 {
		f.Fatal("no seed layers in testdata/layers")
	}
	for _, name := range seeds {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, "")
	}
	for _, script := range []string{
		"d a\nf a/x hello\nl a/up ../../..\nf a/up/escaped x",
		"l evil /\nf evil/tmp/escaped x",
		"l link ..\nd link/sub\nf link/sub/x y",
		"f ../outside x", "f /abs/../../x y", "f ./ok z\nh hard ../../etc/passwd",
		"d opq\nf opq/.wh..wh..opq \nf opq/new x\nf .wh.opq ",
		"f a x\nf .wh.a \nf .wh..wh.plnk \nf .wh.. \nf a/.wh.b ",
		"l a b\nl b a\nf a/x y", "p fifo\nf fifo/x y", "c dev\nd dir\nh dir/x dev",
		"f x 1\nh y x\nl z y\nf z/escape q", "d .\nf . x", "f a\x00b c",
	} {
		f.Add(scriptTar(script), script)
	}
	f.Fuzz(func(t *testing.T, raw []byte, script string) {
		for _, stream := range [][]byte{raw, scriptTar(script)} {
			top := t.TempDir()
			root := filepath.Join(top, "p1", "p2", "root")
			if err := os.MkdirAll(root, 0o755); err != nil {
				t.Fatal(err)
			}
			_ = layers.Extract(context.Background(), bytes.NewReader(stream), root, layers.Limits{MaxBytes: 1 << 20, MaxEntries: 256})
			for dir, only := range map[string]string{top: "p1", filepath.Join(top, "p1"): "p2", filepath.Join(top, "p1", "p2"): "root"} {
				ents, err := os.ReadDir(dir)
				if err != nil || len(ents) != 1 || ents[0].Name() != only {
					var names []string
					for _, e := range ents {
						names = append(names, e.Name())
					}
					t.Fatalf("extraction wrote outside its root: %s holds %q (%v)\nscript %q", dir, names, err, script)
				}
			}
			if fi, err := os.Lstat(root); err != nil || !fi.IsDir() {
				t.Fatalf("the root is no longer a directory: %v", err)
			}
		}
	})
}

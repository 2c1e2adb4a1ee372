package containerfs

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

func TestPlan(t *testing.T) {
	for _, c := range []struct {
		src               string
		srcDir            bool
		dest              string
		exists, destDir   bool
		wantDir, wantName string
		wantErr           bool
	}{
		{"/etc/hosts", false, "/tmp", true, true, "/tmp", "hosts", false},
		{"/etc/hosts", false, "/tmp/h", false, false, "/tmp", "h", false},
		{"/etc/hosts", false, "/tmp/h", true, false, "/tmp", "h", false},
		{"/etc/hosts", false, "/tmp/new/", false, false, "", "", true},
		{"/etc/hosts/", false, "/tmp", true, true, "", "", true},
		{"/etc", true, "/tmp", true, true, "/tmp", "etc", false},
		{"/etc/.", true, "/tmp", true, true, "/tmp", "", false},
		{"/etc", true, "/tmp/e", false, false, "/tmp", "e", false},
		{"/etc/.", true, "/tmp/e", false, false, "/tmp", "e", false},
		{"/etc", true, "/tmp/file", true, false, "", "", true},
		{"/", true, "/tmp", true, true, "/tmp", "", false},
	} {
		dir, name, err := Plan(c.src, c.srcDir, c.dest, c.exists, c.destDir)
		if (err != nil) != c.wantErr || dir != c.wantDir || name != c.wantName {
			t.Errorf("Plan(%q dir=%v, %q exists=%v dir=%v) = %q, %q, %v; want %q, %q, error %v",
				c.src, c.srcDir, c.dest, c.exists, c.destDir, dir, name, err, c.wantDir, c.wantName, c.wantErr)
		}
	}
}

// hostileRoot makes a root whose /etc/evil and /etc/abs are symlinks to
// outside (a directory of the host) and returns the root and outside.
func hostileRoot(t *testing.T) (root, outside string) {
	t.Helper()
	base := t.TempDir()
	root, outside = filepath.Join(base, "root"), filepath.Join(base, "outside")
	for _, d := range []string{root + "/etc", outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(outside, "secret"), []byte("host secret"), 0o600)
	os.WriteFile(filepath.Join(root, "etc/secret"), []byte("container secret"), 0o600)
	// ../ climbing out of the root, and the absolute host path.
	if err := os.Symlink("../../../../../../../../.."+outside, filepath.Join(root, "etc/evil")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "etc/abs")); err != nil {
		t.Fatal(err)
	}
	return root, outside
}

func readTarNames(t *testing.T, b []byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		out[h.Name] = string(body) + h.Linkname
	}
}

func TestHostileSymlinksStayInside(t *testing.T) {
	root, outside := hostileRoot(t)
	r, err := OpenRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, link := range []string{"/etc/evil", "/etc/abs"} {
		// Reading through it reaches the container's own paths, never
		// the host's.
		var buf bytes.Buffer
		err := WriteTar(r, link+"/secret", "secret", false, &buf)
		if err == nil && strings.Contains(buf.String(), "host secret") {
			t.Errorf("%s/secret read the host's file", link)
		}
		// Writing through it lands inside the root.
		var in bytes.Buffer
		tw := tar.NewWriter(&in)
		tw.WriteHeader(&tar.Header{Name: "planted", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg})
		tw.Write([]byte("x"))
		tw.Close()
		err = Extract(r, link, &in, ExtractOptions{})
		if _, serr := os.Stat(filepath.Join(outside, "planted")); serr == nil {
			t.Fatalf("extracting into %s wrote to the host directory", link)
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("extract into %s: %v", link, err)
		}
	}
	// Copied out, a symlink stays a symlink.
	var buf bytes.Buffer
	if err := WriteTar(r, "/etc", "etc", false, &buf); err != nil {
		t.Fatal(err)
	}
	got := readTarNames(t, buf.Bytes())
	if got["etc/abs"] != outside || got["etc/secret"] != "container secret" {
		t.Errorf("tar of /etc: %q", got)
	}
}

func TestExtractRefusesClimbingEntries(t *testing.T) {
	root, outside := hostileRoot(t)
	r, err := OpenRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, name := range []string{"../../outside/x", "/abs/x"} {
		var in bytes.Buffer
		tw := tar.NewWriter(&in)
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: 1, Typeflag: tar.TypeReg})
		tw.Write([]byte("x"))
		tw.Close()
		if err := Extract(r, "/", &in, ExtractOptions{}); !errors.Is(err, ErrInvalid) {
			t.Errorf("entry %q: %v, want ErrInvalid", name, err)
		}
	}
	// A symlink the tar makes, then a file written through it.
	var in bytes.Buffer
	tw := tar.NewWriter(&in)
	tw.WriteHeader(&tar.Header{Name: "link", Linkname: outside, Typeflag: tar.TypeSymlink})
	tw.WriteHeader(&tar.Header{Name: "link/through", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg})
	tw.Write([]byte("x"))
	tw.Close()
	Extract(r, "/", &in, ExtractOptions{})
	ents, _ := os.ReadDir(outside)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	if strings.Join(names, ",") != "secret" {
		t.Errorf("the host directory now holds %v", names)
	}
}

func TestRoundTrip(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "d/sub"), 0o750)
	os.WriteFile(filepath.Join(src, "d/sub/f"), []byte("hello"), 0o640)
	os.Symlink("sub/f", filepath.Join(src, "d/l"))
	r, err := OpenRoot(src)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var buf bytes.Buffer
	if err := WriteTar(r, "/d", "copy", false, &buf); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	d, err := OpenRoot(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := Extract(d, "/", &buf, ExtractOptions{Owner: &[2]int{os.Getuid(), os.Getgid()}}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "copy/l")); err != nil || string(b) != "hello" {
		t.Errorf("copy/l: %q, %v", b, err)
	}
	if l, err := os.Readlink(filepath.Join(dst, "copy/l")); err != nil || l != "sub/f" {
		t.Errorf("copy/l is %q, %v; want the symlink sub/f", l, err)
	}
	if st, err := os.Stat(filepath.Join(dst, "copy/sub/f")); err != nil || st.Mode().Perm() != 0o640 {
		t.Errorf("copy/sub/f: %v, %v", st, err)
	}
}

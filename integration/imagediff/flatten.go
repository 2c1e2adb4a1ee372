package imagediff

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// File is one path of a flattened filesystem.
type File struct {
	Type     string            // "file", "dir", "symlink", "char", "block" or "fifo"
	Mode     int64             // permission bits with setuid, setgid and sticky (07777)
	UID, GID int               // numeric owner
	Size     int64             // regular files: the content's length
	Digest   string            // regular files: sha256 of the content
	Target   string            // symlinks: the link target as written
	Major    int64             // devices
	Minor    int64             // devices
	Xattrs   map[string]string // extended attributes (PAX SCHILY.xattr.*)
	// Links are the other paths of the same inode (hardlinks), sorted;
	// empty for a file with one name.
	Links []string
	// Implicit marks a directory no layer has an entry for, made because
	// a path below it exists (as an extracting runtime makes it, 0755 root).
	Implicit bool

	layer int // the layer that last wrote it
	inode int // shared by hardlinks
}

// tree is a filesystem being flattened.
type tree struct {
	files  map[string]*File
	inodes int
}

func newTree() *tree { return &tree{files: map[string]*File{}} }

// applyFile applies the layer blob at p (plain tar, gzip or zstd, told by
// its first bytes) as layer number n.
func applyFile(t *tree, p string, n int) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return t.apply(f, n)
}

// apply adds the entries of one layer tar to t, whiteouts first removing
// from the lower layers what they name.
func (t *tree) apply(r io.Reader, n int) error {
	br := bufio.NewReaderSize(r, 1<<16)
	head, _ := br.Peek(4)
	var tr *tar.Reader
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("%w: gzip: %v", ErrFormat, err)
		}
		defer zr.Close()
		tr = tar.NewReader(zr)
	case bytes.Equal(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br)
		if err != nil {
			return fmt.Errorf("%w: zstd: %v", ErrFormat, err)
		}
		defer zr.Close()
		tr = tar.NewReader(zr)
	default:
		tr = tar.NewReader(br)
	}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrFormat, err)
		}
		if err := t.add(hdr, tr, n); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	}
}

// add applies one tar entry of layer n.
func (t *tree) add(hdr *tar.Header, content io.Reader, n int) error {
	name := path.Clean("/" + hdr.Name)
	if name == "/" {
		return nil
	}
	dir, base := path.Split(name)
	dir = path.Clean(dir)
	switch {
	case base == ".wh..wh..opq":
		t.removeBelow(dir, n)
		return nil
	case strings.HasPrefix(base, ".wh."):
		target := path.Join(dir, strings.TrimPrefix(base, ".wh."))
		if f := t.files[target]; f != nil && f.layer < n {
			delete(t.files, target)
		}
		t.removeBelow(target, n)
		return nil
	}
	if err := t.parents(dir, n); err != nil {
		return err
	}
	f := &File{
		Mode: hdr.Mode & 0o7777, UID: hdr.Uid, GID: hdr.Gid,
		layer: n,
	}
	for k, v := range hdr.PAXRecords {
		if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			if f.Xattrs == nil {
				f.Xattrs = map[string]string{}
			}
			f.Xattrs[x] = v
		}
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA:
		f.Type = "file"
		h := sha256.New()
		size, err := io.Copy(h, content)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrFormat, err)
		}
		f.Size, f.Digest = size, "sha256:"+hex.EncodeToString(h.Sum(nil))
	case tar.TypeDir:
		f.Type = "dir"
	case tar.TypeSymlink:
		f.Type, f.Target = "symlink", hdr.Linkname
	case tar.TypeLink:
		target := t.files[path.Clean("/"+hdr.Linkname)]
		if target == nil || target.Type == "dir" {
			return fmt.Errorf("%w: hardlink to %q, which is not an earlier file", ErrFormat, hdr.Linkname)
		}
		link := *target // one inode: one owner, mode, content
		link.layer = n
		f = &link
	case tar.TypeChar, tar.TypeBlock:
		f.Type = map[byte]string{tar.TypeChar: "char", tar.TypeBlock: "block"}[hdr.Typeflag]
		f.Major, f.Minor = hdr.Devmajor, hdr.Devminor
	case tar.TypeFifo:
		f.Type = "fifo"
	default:
		return fmt.Errorf("%w: tar type %q", ErrFormat, hdr.Typeflag)
	}
	if f.inode == 0 {
		t.inodes++
		f.inode = t.inodes
	}
	old := t.files[name]
	if old != nil && !(old.Type == "dir" && f.Type == "dir") {
		t.removeBelow(name, n+1) // a non-directory replaces a whole tree
	}
	t.files[name] = f
	return nil
}

// parents makes the missing directories above an entry of layer n, as an
// extracting runtime does, and refuses a path through a non-directory.
func (t *tree) parents(dir string, n int) error {
	if dir == "/" {
		return nil
	}
	if err := t.parents(path.Dir(dir), n); err != nil {
		return err
	}
	switch f := t.files[dir]; {
	case f == nil:
		t.inodes++
		t.files[dir] = &File{Type: "dir", Mode: 0o755, Implicit: true, layer: n, inode: t.inodes}
	case f.Type != "dir":
		return fmt.Errorf("%w: %s is a %s, not a directory", ErrFormat, dir, f.Type)
	}
	return nil
}

// removeBelow removes what lies under dir and was written by a layer
// before n.
func (t *tree) removeBelow(dir string, n int) {
	prefix := strings.TrimSuffix(dir, "/") + "/"
	for p, f := range t.files {
		if strings.HasPrefix(p, prefix) && f.layer < n {
			delete(t.files, p)
		}
	}
}

// finish fills in the hardlink groups and returns the files.
func (t *tree) finish() map[string]*File {
	groups := map[int][]string{}
	for p, f := range t.files {
		if f.Type == "file" {
			groups[f.inode] = append(groups[f.inode], p)
		}
	}
	for _, paths := range groups {
		if len(paths) < 2 {
			continue
		}
		slices.Sort(paths)
		for _, p := range paths {
			t.files[p].Links = slices.DeleteFunc(slices.Clone(paths), func(q string) bool { return q == p })
		}
	}
	return t.files
}

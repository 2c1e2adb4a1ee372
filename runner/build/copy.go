package build

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-registry/berth/runner/build/dockerfile"
	"github.com/berth-registry/berth/runner/layers"
	"github.com/berth-registry/berth/runner/spec"
)

// copier writes a COPY or ADD into a stage's mounted rootfs. Destination
// paths are resolved inRoot: a symlink in the image (/usr/local/bin ->
// /opt/bin) is followed as the container would follow it, never out of
// the rootfs.
type copier struct {
	rootfs string
	rootfd int
	spec   *dockerfile.CopySpec
	// uid and gid own what is copied when chown is set; else the
	// context's files are root's and a stage's keep theirs.
	uid, gid int
	chown    bool
	// tmp is a scratch directory for unpacking ADD archives.
	tmp string
}

// copyInto runs the copy cs into rootfs, from src (nil for heredoc
// contents only).
func copyInto(ctx context.Context, rootfs string, src *srcRoot, cs *dockerfile.CopySpec, tmp string) error {
	rootfd, err := unix.Open(rootfs, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(rootfd)
	c := &copier{rootfs: rootfs, rootfd: rootfd, spec: cs, tmp: tmp}
	if cs.Chown != "" {
		u, err := spec.ResolveUser(rootfs, cs.Chown)
		if err != nil {
			return fmt.Errorf("--chown=%s: %w", cs.Chown, err)
		}
		c.uid, c.gid, c.chown = int(u.UID), int(u.GID), true
	}
	var matches [][2]string // source, matched path
	if src != nil {
		for _, s := range cs.Sources {
			ms, err := src.match(s)
			if err != nil {
				return err
			}
			for _, m := range ms {
				matches = append(matches, [2]string{s, m})
			}
		}
	}
	// Several sources (or a wildcard) copy into a directory.
	multi := len(matches)+len(cs.Contents) > 1 || (len(cs.Sources) > 0 && hasWildcard(strings.Join(cs.Sources, "")))
	destDir := strings.HasSuffix(cs.Dest, "/") || multi
	if multi && !strings.HasSuffix(cs.Dest, "/") {
		return fmt.Errorf("%w: when using COPY with more than one source file, the destination must be a directory and end with a /", ErrInvalid)
	}
	for _, m := range matches {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := c.copyMatch(ctx, src, m[1], destDir); err != nil {
			return err
		}
	}
	for _, ct := range cs.Contents {
		dest := cs.Dest
		if destDir || c.isDir(dest) {
			dest = path.Join(dest, ct.Name)
		}
		mode := uint32(0o644)
		if cs.Chmod != 0 {
			mode = cs.Chmod
		}
		st := unix.Stat_t{Mode: unix.S_IFREG | mode}
		data := ct.Data
		e := srcEntry{st: st, open: func() (*os.File, error) { return nil, nil }}
		if err := c.writeFile(dest, e, strings.NewReader(data), time.Now()); err != nil {
			return err
		}
	}
	return nil
}

// isDir reports whether p (absolute in the rootfs) is a directory there,
// symlinks followed inRoot.
func (c *copier) isDir(p string) bool {
	fd, err := openIn(c.rootfd, cleanRel(p), unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

// copyMatch copies one matched source path: a directory's contents into
// the destination directory, a file to the destination (or into it when
// it is a directory), an ADD archive unpacked into it.
func (c *copier) copyMatch(ctx context.Context, src *srcRoot, rel string, destDir bool) error {
	fd, err := openIn(src.fd, rel, unix.O_PATH)
	if err != nil {
		return fmt.Errorf("%w: source %q: %v", ErrNotFound, rel, err)
	}
	var st unix.Stat_t
	err = unix.Fstat(fd, &st)
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if err == nil && c.spec.Add && st.Mode&unix.S_IFMT == unix.S_IFREG {
		var archive bool
		archive, err = isArchive(fd)
		if err == nil && archive {
			err = c.unpack(ctx, fd, c.spec.Dest)
			unix.Close(fd)
			return err
		}
	}
	unix.Close(fd)
	if err != nil {
		return err
	}
	dest := c.spec.Dest
	if !isDir && (destDir || c.isDir(dest)) {
		dest = path.Join(dest, path.Base(rel))
	}
	return c.copyTree(src, rel, dest)
}

// copyTree copies the source rel of src (a directory's contents, or a
// file) to dest.
func (c *copier) copyTree(src *srcRoot, rel, dest string) error {
	links := map[[2]uint64]string{}
	return src.walk(rel, func(e srcEntry) error {
		target := path.Join(dest, e.rel)
		uid, gid := int(e.st.Uid), int(e.st.Gid)
		if src.context {
			uid, gid = 0, 0
		}
		if c.chown {
			uid, gid = c.uid, c.gid
		}
		mode := e.st.Mode &^ unix.S_IFMT
		if c.spec.Chmod != 0 {
			mode = c.spec.Chmod
		}
		mtime := time.Unix(e.st.Mtim.Sec, e.st.Mtim.Nsec)
		switch e.st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			existed := e.rel == "" && c.isDir(target)
			dfd, err := c.mkdirAll(target)
			if err != nil {
				return err
			}
			defer unix.Close(dfd)
			if e.rel == "" {
				// A directory's contents are copied into the
				// destination, which takes nothing of the source
				// directory: one that exists keeps what it has, a
				// new one is --chown's (else root's) with --chmod's
				// mode (else 0755), whatever the source.
				if existed || src.scratch {
					return nil
				}
				if c.spec.Chmod == 0 {
					return nil // as mkdirAll made it
				}
				ruid, rgid := 0, 0
				if c.chown {
					ruid, rgid = c.uid, c.gid
				}
				return setMeta(dfd, "", ruid, rgid, c.spec.Chmod, time.Time{}, false)
			}
			return setMeta(dfd, "", uid, gid, mode, mtime, false)
		case unix.S_IFREG:
			key := [2]uint64{e.st.Dev, e.st.Ino}
			if first, ok := links[key]; ok && e.st.Nlink > 1 {
				return c.hardlink(first, target)
			}
			links[key] = target
			f, err := e.open()
			if err != nil {
				return err
			}
			defer f.Close()
			st := e.st
			st.Mode = unix.S_IFREG | mode
			st.Uid, st.Gid = uint32(uid), uint32(gid)
			return c.writeFile(target, srcEntry{st: st}, f, mtime)
		case unix.S_IFLNK:
			return c.replace(target, func(pfd int, name string) error {
				if err := unix.Symlinkat(e.link, pfd, name); err != nil {
					return fmt.Errorf("build: %s: %w", target, err)
				}
				return setMeta(pfd, name, uid, gid, 0, mtime, true)
			})
		case unix.S_IFIFO:
			return c.replace(target, func(pfd int, name string) error {
				if err := unix.Mkfifoat(pfd, name, mode); err != nil {
					return fmt.Errorf("build: %s: %w", target, err)
				}
				return setMeta(pfd, name, uid, gid, mode, mtime, false)
			})
		}
		return nil
	})
}

// writeFile writes r as the regular file target with e's mode and owner
// (unless chown is set, when the copier's), mtime as given.
func (c *copier) writeFile(target string, e srcEntry, r io.Reader, mtime time.Time) error {
	return c.replace(target, func(pfd int, name string) error {
		fd, err := unix.Openat(pfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return fmt.Errorf("build: %s: %w", target, err)
		}
		f := os.NewFile(uintptr(fd), target)
		defer f.Close()
		if _, err := io.Copy(f, r); err != nil {
			return fmt.Errorf("build: writing %s: %w", target, err)
		}
		uid, gid := int(e.st.Uid), int(e.st.Gid)
		if c.chown {
			uid, gid = c.uid, c.gid
		}
		return setMeta(fd, "", uid, gid, e.st.Mode&^unix.S_IFMT, mtime, false)
	})
}

// hardlink links target to first, an earlier file of the same copy.
func (c *copier) hardlink(first, target string) error {
	ofd, oname, err := c.parent(first)
	if err != nil {
		return err
	}
	defer unix.Close(ofd)
	return c.replace(target, func(pfd int, name string) error {
		if err := unix.Linkat(ofd, oname, pfd, name, 0); err != nil {
			return fmt.Errorf("build: linking %s to %s: %w", target, first, err)
		}
		return nil
	})
}

// replace removes what is at target (its directory created as needed)
// and runs create in that directory for target's last name.
func (c *copier) replace(target string, create func(pfd int, name string) error) error {
	pfd, name, err := c.parent(target)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := removeAt(pfd, name); err != nil {
		return err
	}
	return create(pfd, name)
}

// parent opens the directory of target (created as needed) and returns
// it with target's last name.
func (c *copier) parent(target string) (int, string, error) {
	dir, name := path.Split(path.Clean(target))
	if name == "" {
		return -1, "", fmt.Errorf("%w: cannot copy over the root directory", ErrInvalid)
	}
	fd, err := c.mkdirAll(dir)
	return fd, name, err
}

// mkdirAll opens the directory p of the rootfs, resolved inRoot, making
// the missing ones (mode 0755, owned by --chown's user or root). A
// dangling symlink on the way is followed as the container would follow
// it (its target made, inside the rootfs).
func (c *copier) mkdirAll(p string) (int, error) {
	rel := cleanRel(p)
	for hops := 0; ; hops++ {
		fd, err := openIn(c.rootfd, rel, unix.O_RDONLY|unix.O_DIRECTORY)
		if err == nil {
			return fd, nil
		}
		if !errIsNotExist(err) || hops > 40 {
			return -1, fmt.Errorf("build: %s: %w", "/"+rel, err)
		}
		next, err := c.mkdirStep(rel)
		if err != nil {
			return -1, err
		}
		rel = next
	}
}

// mkdirStep makes the first missing directory of rel, or, when that
// component is a dangling symlink, returns rel with the link replaced by
// its target (for mkdirAll to go on from).
func (c *copier) mkdirStep(rel string) (string, error) {
	comps := strings.Split(rel, "/")
	parent := "."
	for i, comp := range comps {
		done := path.Join(parent, comp)
		fd, err := openIn(c.rootfd, done, unix.O_RDONLY|unix.O_DIRECTORY)
		if err == nil {
			unix.Close(fd)
			parent = done
			continue
		}
		pfd, err := openIn(c.rootfd, parent, unix.O_RDONLY|unix.O_DIRECTORY)
		if err != nil {
			return "", fmt.Errorf("build: %s: %w", "/"+parent, err)
		}
		defer unix.Close(pfd)
		var st unix.Stat_t
		if err := unix.Fstatat(pfd, comp, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			target, err := readlinkAt(pfd, comp)
			if err != nil {
				return "", err
			}
			if !path.IsAbs(target) {
				target = path.Join("/", parent, target)
			}
			return cleanRel(path.Join(append([]string{target}, comps[i+1:]...)...)), nil
		}
		if err := unix.Mkdirat(pfd, comp, 0o755); err != nil && err != unix.EEXIST {
			return "", fmt.Errorf("build: making %s: %w", "/"+done, err)
		}
		uid, gid := 0, 0
		if c.chown {
			uid, gid = c.uid, c.gid
		}
		if err := setMeta(pfd, comp, uid, gid, 0o755, time.Time{}, false); err != nil {
			return "", err
		}
		return rel, nil
	}
	return rel, nil
}

// setMeta sets the owner, mode (unless a symlink) and mtime (unless
// zero) of name in dirfd ("" is dirfd itself).
func setMeta(dirfd int, name string, uid, gid int, mode uint32, mtime time.Time, symlink bool) error {
	flags := unix.AT_SYMLINK_NOFOLLOW
	if name == "" {
		flags |= unix.AT_EMPTY_PATH
	}
	if err := unix.Fchownat(dirfd, name, uid, gid, flags); err != nil {
		return fmt.Errorf("build: chown %s: %w", name, err)
	}
	if !symlink {
		if name == "" {
			if err := unix.Fchmod(dirfd, mode); err != nil {
				return fmt.Errorf("build: chmod: %w", err)
			}
		} else if err := unix.Fchmodat(dirfd, name, mode, 0); err != nil {
			return fmt.Errorf("build: chmod %s: %w", name, err)
		}
	}
	if mtime.IsZero() {
		return nil
	}
	ts := []unix.Timespec{unix.NsecToTimespec(mtime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	if name == "" {
		return unix.UtimesNanoAt(dirfd, "", ts, unix.AT_EMPTY_PATH)
	}
	return unix.UtimesNanoAt(dirfd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// removeAt removes name in dirfd unless it is a directory; nothing there
// is no error.
func removeAt(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err == unix.EISDIR {
		return fmt.Errorf("%w: cannot replace the directory %s with a file", ErrInvalid, name)
	}
	return err
}

// bzip2Magic starts a bzip2 stream ("BZh" and the block size digit).
var bzip2Magic = []byte("BZh")

// isBzip2Tar reports whether f is a bzip2 stream holding a tar.
func isBzip2Tar(f io.Reader) bool {
	head := make([]byte, 512)
	n, _ := io.ReadFull(bzip2.NewReader(f), head)
	return n == 512 && bytes.HasPrefix(head[257:], []byte("ustar"))
}

// isArchive reports whether the file fd (O_PATH) is a tar archive ADD
// unpacks: gzip-, zstd- or bzip2-compressed, or a plain tar (its
// header's magic). xz is not read: such a file is copied as it is.
func isArchive(fd int) (bool, error) {
	f, err := reopen(fd, unix.O_RDONLY)
	if err != nil {
		return false, err
	}
	defer f.Close()
	head := make([]byte, 512)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}), bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return true, nil
	case n == 512 && bytes.HasPrefix(head[257:], []byte("ustar")):
		return true, nil
	case bytes.HasPrefix(head, bzip2Magic):
		return isBzip2Tar(io.MultiReader(bytes.NewReader(head), f)), nil
	}
	return false, nil
}

// unpack extracts the archive fd into dest: first into a scratch
// directory by the layer store's extraction rules (layers.Extract), then
// copied in as a stage's files are (owners as the archive has them).
func (c *copier) unpack(ctx context.Context, fd int, dest string) error {
	f, err := reopen(fd, unix.O_RDONLY)
	if err != nil {
		return err
	}
	defer f.Close()
	dir, err := os.MkdirTemp(c.tmp, "add-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	br := bufio.NewReader(f)
	var tr io.Reader = br
	if magic, _ := br.Peek(len(bzip2Magic)); bytes.Equal(magic, bzip2Magic) {
		tr = bzip2.NewReader(br) // the layer store reads the plain tar
	}
	if err := layers.Extract(ctx, tr, dir, layers.Limits{}); err != nil {
		return fmt.Errorf("ADD: unpacking the archive: %w", err)
	}
	r, err := openRoot(dir, nil, false)
	if err != nil {
		return err
	}
	defer r.close()
	r.scratch = true
	if !strings.HasSuffix(dest, "/") {
		dest += "/"
	}
	return c.copyTree(r, ".", dest)
}

package containerfs

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"time"

	"golang.org/x/sys/unix"
)

// WriteTar writes src, read inside r, to w as a tar (which it closes, not
// w): a file as one entry named name, a directory as name/ and what it
// holds below it, or, with name "", only what the directory holds. A
// symlink at the end of src is written as a symlink, unless follow; any
// symlink below src is written as a symlink. Sockets are left out.
func WriteTar(r *Root, src, name string, follow bool, w io.Writer) error {
	tw := tar.NewWriter(w)
	dirfd, base, err := r.split(src)
	if err != nil {
		return err
	}
	defer unix.Close(dirfd)
	if base == "" || follow {
		// The root itself, or a followed symlink: open it as it resolves.
		fd, err := r.open(src, unix.O_PATH, 0)
		if err != nil {
			return err
		}
		unix.Close(dirfd)
		dirfd, base = fd, ""
	}
	if err := writeEntry(tw, dirfd, base, name); err != nil {
		return err
	}
	return tw.Close()
}

// writeEntry writes the node base of dirfd (dirfd itself when base is "")
// as the entry name, and, for a directory, its children below name.
func writeEntry(tw *tar.Writer, dirfd int, base, name string) error {
	var st unix.Stat_t
	var err error
	if base == "" {
		err = unix.Fstat(dirfd, &st)
	} else {
		err = unix.Fstatat(dirfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	}
	if err != nil {
		return fmt.Errorf("stat %s: %w", name, err)
	}
	hdr := &tar.Header{
		Name: name, Mode: int64(st.Mode & 0o7777), Uid: int(st.Uid), Gid: int(st.Gid),
		ModTime: time.Unix(st.Mtim.Unix()).UTC(), Format: tar.FormatPAX,
	}
	var content *os.File
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
	case unix.S_IFREG:
		hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
		fd, err := openNode(dirfd, base, unix.O_RDONLY|unix.O_NOFOLLOW)
		if err != nil {
			return fmt.Errorf("open %s: %w", name, err)
		}
		content = os.NewFile(uintptr(fd), name)
		defer content.Close()
		// What was opened is what was stat'ed.
		var now unix.Stat_t
		if err := unix.Fstat(fd, &now); err != nil || now.Ino != st.Ino || now.Dev != st.Dev {
			return fmt.Errorf("%s changed while it was copied", name)
		}
	case unix.S_IFLNK:
		hdr.Typeflag = tar.TypeSymlink
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(dirfd, base, buf)
		if err != nil {
			return fmt.Errorf("readlink %s: %w", name, err)
		}
		hdr.Linkname = string(buf[:n])
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	default:
		return nil // a socket
	}
	if name != "" {
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
	}
	if content != nil {
		if _, err := io.CopyN(tw, content, st.Size); err != nil {
			return fmt.Errorf("reading %s: %w", name, err)
		}
		return nil
	}
	if hdr.Typeflag != tar.TypeDir {
		return nil
	}
	fd, err := openNode(dirfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW)
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	dir := os.NewFile(uintptr(fd), name)
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("reading %s: %w", name, err)
	}
	for _, child := range names {
		if err := writeEntry(tw, fd, child, path.Join(name, child)); err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOENT) {
				continue // removed meanwhile
			}
			return err
		}
	}
	return nil
}

// openNode opens base in dirfd (dirfd itself, reopened, when base is "")
// without following a symlink.
func openNode(dirfd int, base string, flags int) (int, error) {
	if base == "" {
		// Reopen an O_PATH descriptor through its own /proc entry.
		return unix.Open(fmt.Sprintf("/proc/self/fd/%d", dirfd), flags&^unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	}
	return unix.Openat(dirfd, base, flags|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
}

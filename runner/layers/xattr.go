package layers

import (
	"errors"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// listXattrs lists the extended attribute names of p (not following a
// symlink), sorted; none where the filesystem has no xattrs.
func listXattrs(p string) ([]string, error) {
	b, err := readGrowing(1024, func(buf []byte) (int, error) { return unix.Llistxattr(p, buf) })
	if errors.Is(err, unix.ENOTSUP) {
		return nil, nil
	}
	if err != nil {
		return nil, pathError("listxattr", p, err)
	}
	return xattrNames(b), nil
}

// flistXattrs lists the extended attribute names of fd, sorted; none where
// the filesystem has no xattrs.
func flistXattrs(fd int) ([]string, error) {
	b, err := readGrowing(1024, func(buf []byte) (int, error) { return unix.Flistxattr(fd, buf) })
	if errors.Is(err, unix.ENOTSUP) {
		return nil, nil
	}
	return xattrNames(b), err
}

// getXattr reads one extended attribute of p (not following a symlink).
func getXattr(p, name string) ([]byte, error) {
	b, err := readGrowing(256, func(buf []byte) (int, error) { return unix.Lgetxattr(p, name, buf) })
	if err != nil {
		return nil, pathError("getxattr "+name, p, err)
	}
	return b, nil
}

// fgetXattr reads the extended attribute name of fd.
func fgetXattr(fd int, name string) ([]byte, error) {
	return readGrowing(256, func(buf []byte) (int, error) { return unix.Fgetxattr(fd, name, buf) })
}

// readGrowing calls read with a buffer of size bytes, four times larger
// after each ERANGE (the value grew or did not fit), and returns what it
// read.
func readGrowing(size int, read func([]byte) (int, error)) ([]byte, error) {
	buf := make([]byte, size)
	for {
		n, err := read(buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, len(buf)*4)
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

// xattrNames splits a listxattr result (names each ended by a NUL) and
// sorts the names.
func xattrNames(b []byte) []string {
	var names []string
	for _, n := range strings.Split(string(b), "\x00") {
		if n != "" {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

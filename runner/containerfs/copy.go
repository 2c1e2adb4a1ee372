package containerfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// SplitCopyArg splits a `berth cp` argument into a container reference and
// a path in it ("" for a host path), as docker: CONTAINER:PATH, where a
// host path holding a colon is written ./a:b or /a:b.
func SplitCopyArg(arg string) (ref, p string) {
	if strings.HasPrefix(arg, "/") || strings.HasPrefix(arg, ".") {
		return "", arg
	}
	ref, p, ok := strings.Cut(arg, ":")
	if !ok || ref == "" {
		return "", arg
	}
	return ref, p
}

// CopyOut copies src of root (a container's) to dest on the host, as
// docker cp does ("-": a tar written to stdout). What lands on the host
// belongs to the invoking user, without device nodes or setuid bits.
func CopyOut(root *Root, src, dest string, follow bool, stdout io.Writer) error {
	stat := root.Lstat
	if follow || strings.HasSuffix(src, "/") || strings.HasSuffix(src, "/.") {
		stat = root.Stat
	}
	info, err := stat(src)
	if err != nil {
		return fmt.Errorf("no such file or directory in the container: %s (%w)", src, err)
	}
	if dest == "-" {
		name := filepath.Base(filepath.Clean("/" + src))
		if name == "/" {
			name = ""
		}
		return WriteTar(root, src, name, follow, stdout)
	}
	st, err := os.Stat(dest)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	dir, name, err := Plan(src, info.IsDir(), dest, exists, exists && st.IsDir())
	if err != nil {
		return err
	}
	host, err := OpenRoot(dir)
	if err != nil {
		return err
	}
	defer host.Close()
	o := ExtractOptions{Owner: &[2]int{os.Getuid(), os.Getgid()}, NoDevices: true, NoSetuid: true}
	return pipeTar(func(w io.Writer) error { return WriteTar(root, src, name, follow, w) },
		func(r io.Reader) error { return Extract(host, "/", r, o) })
}

// CopyIn copies src of the host ("-": a tar read from stdin) to dest in
// root (a container's), as docker cp does, extracting with o.
func CopyIn(root *Root, src, dest string, follow bool, o ExtractOptions, stdin io.Reader) error {
	destInfo, err := root.Stat(dest)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if src == "-" {
		if !exists || !destInfo.IsDir() {
			return fmt.Errorf("%w: the destination %s must be an existing directory in the container", ErrInvalid, dest)
		}
		return Extract(root, dest, stdin, o)
	}
	abs, err := filepath.Abs(src)
	if err != nil {
		return err
	}
	if strings.HasSuffix(src, "/.") || strings.HasSuffix(src, "/") {
		abs += "/"
	}
	host, err := OpenRoot(filepath.Dir(filepath.Clean(abs)))
	if err != nil {
		return err
	}
	defer host.Close()
	hostSrc := "/" + filepath.Base(filepath.Clean(abs))
	stat := host.Lstat
	if follow {
		stat = host.Stat
	}
	info, err := stat(hostSrc)
	if err != nil {
		return err
	}
	if strings.HasSuffix(src, "/.") {
		hostSrc += "/."
	}
	dir, name, err := Plan(hostSrc, info.IsDir(), dest, exists, exists && destInfo.IsDir())
	if err != nil {
		return err
	}
	return pipeTar(func(w io.Writer) error { return WriteTar(host, hostSrc, name, follow, w) },
		func(r io.Reader) error { return Extract(root, dir, r, o) })
}

// pipeTar runs write into read through a pipe.
func pipeTar(write func(io.Writer) error, read func(io.Reader) error) error {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := write(pw)
		pw.CloseWithError(err)
		done <- err
	}()
	rerr := read(pr)
	pr.CloseWithError(errors.New("the copy stopped"))
	werr := <-done
	if rerr != nil {
		return rerr
	}
	return werr
}

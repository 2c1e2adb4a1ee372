package build

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/moby/patternmatcher"
	"golang.org/x/sys/unix"
)

// srcRoot is a tree COPY and ADD read from: the build context, or the
// mounted filesystem of a stage or an image (COPY --from). Every path is
// resolved beneath it as if it were "/": a "..", an absolute path or a
// symlink (whatever it points to) never leads out of it.
type srcRoot struct {
	dir string
	fd  int
	// ignore excludes paths of the build context (.dockerignore); nil
	// excludes nothing.
	ignore *patternmatcher.PatternMatcher
	// context is set for the build context, whose files are copied owned
	// by root; a stage's or an image's keep their owners.
	context bool
	// scratch is set for an ADD archive unpacked: its root directory is
	// not copied onto the destination.
	scratch bool
	// hashes, when set, remembers the content hashes of the root's files
	// (the build context's) for hashSources; abs is the root's absolute
	// path, their key.
	hashes *fileHashes
	abs    string
}

// openRoot opens dir as a source root; the caller closes it.
func openRoot(dir string, ignore *patternmatcher.PatternMatcher, context bool) (*srcRoot, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("build: opening %s: %w", dir, err)
	}
	return &srcRoot{dir: dir, fd: fd, ignore: ignore, context: context}, nil
}

func (r *srcRoot) close() { unix.Close(r.fd) }

// inRoot is how every lookup below a root resolves: symlinks are followed
// as if the root were "/" (an absolute or climbing target stays inside),
// magic links and mount crossings are refused.
const inRoot = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS

// openIn opens rel beneath rootfd, resolved inRoot, following a final
// symlink unless nofollow.
func openIn(rootfd int, rel string, flags int) (int, error) {
	how := &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: inRoot}
	for range 16 {
		fd, err := unix.Openat2(rootfd, rel, how)
		if err != unix.EAGAIN {
			return fd, err
		}
	}
	return -1, unix.EAGAIN
}

// hasWildcard reports whether a source path holds glob characters.
func hasWildcard(p string) bool { return strings.ContainsAny(p, "*?[") }

// cleanRel makes a source path relative to its root: "/a/../b", "../b"
// and "b" are all "b"; the root itself is ".".
func cleanRel(p string) string {
	rel := strings.TrimPrefix(path.Clean("/"+p), "/")
	if rel == "" {
		return "."
	}
	return rel
}

// ignored reports whether the build context excludes rel.
func (r *srcRoot) ignored(rel string) bool {
	if r.ignore == nil || rel == "." {
		return false
	}
	m, err := r.ignore.MatchesOrParentMatches(rel)
	return err == nil && m
}

// match returns the paths (relative, sorted) the source src names: itself
// when it has no wildcard (it must exist: ErrNotFound names it
// otherwise), else every existing path its pattern matches, component by
// component (none is no error, as in BuildKit).
func (r *srcRoot) match(src string) ([]string, error) {
	rel := cleanRel(src)
	if !hasWildcard(rel) {
		fd, err := openIn(r.fd, rel, unix.O_PATH)
		if err != nil || r.ignored(rel) {
			if err == nil {
				unix.Close(fd)
			}
			return nil, fmt.Errorf("%w: source %q", ErrNotFound, src)
		}
		unix.Close(fd)
		return []string{rel}, nil
	}
	paths := []string{"."}
	for _, comp := range strings.Split(rel, "/") {
		var next []string
		for _, dir := range paths {
			if !hasWildcard(comp) {
				next = append(next, path.Join(dir, comp))
				continue
			}
			names, err := r.list(dir)
			if err != nil {
				continue
			}
			for _, n := range names {
				if ok, _ := path.Match(comp, n); ok {
					next = append(next, path.Join(dir, n))
				}
			}
		}
		paths = next
	}
	var out []string
	for _, p := range paths {
		fd, err := openIn(r.fd, p, unix.O_PATH)
		if err != nil || r.ignored(p) {
			if err == nil {
				unix.Close(fd)
			}
			continue
		}
		unix.Close(fd)
		out = append(out, p)
	}
	sort.Strings(out)
	return out, nil
}

// list returns the names in the directory rel (resolved inRoot), sorted.
func (r *srcRoot) list(rel string) ([]string, error) {
	fd, err := openIn(r.fd, rel, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	return readNames(fd)
}

// readNames reads and sorts the names of the directory fd, and closes it.
func readNames(fd int) ([]string, error) {
	f := os.NewFile(uintptr(fd), "dir")
	defer f.Close()
	names, err := f.Readdirnames(-1)
	sort.Strings(names)
	return names, err
}

// srcEntry is one thing a walk below a matched source visits.
type srcEntry struct {
	// rel is its path below the matched source ("" for the source
	// itself); ctxRel its path below the root.
	rel, ctxRel string
	st          unix.Stat_t
	// link is a symlink's target.
	link string
	// open opens a regular file's content.
	open func() (*os.File, error)
}

// walk visits the matched source rel (its symlink followed, inRoot) and,
// if it is a directory, everything below it (nothing followed), a
// directory before its children and children by name; excluded paths of
// the context are skipped.
func (r *srcRoot) walk(rel string, visit func(e srcEntry) error) error {
	fd, err := openIn(r.fd, rel, unix.O_PATH)
	if err != nil {
		return fmt.Errorf("%w: source %q: %v", ErrNotFound, rel, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	e := srcEntry{ctxRel: rel, st: st}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		e.open = func() (*os.File, error) { return reopen(fd, unix.O_RDONLY) }
		return visit(e)
	case unix.S_IFDIR:
		if err := visit(e); err != nil {
			return err
		}
		dfd, err := reopenFD(fd, unix.O_RDONLY|unix.O_DIRECTORY)
		if err != nil {
			return err
		}
		defer unix.Close(dfd)
		return r.walkDir(dfd, "", rel, visit)
	default:
		return fmt.Errorf("%w: %q is neither a file nor a directory", ErrInvalid, rel)
	}
}

// walkDir visits the children of the directory dfd (rel below the
// source, ctxRel below the root), never following a symlink.
func (r *srcRoot) walkDir(dfd int, rel, ctxRel string, visit func(e srcEntry) error) error {
	dup, err := unix.Openat(dfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	names, err := readNames(dup)
	if err != nil {
		return err
	}
	for _, n := range names {
		cr, cc := path.Join(rel, n), path.Join(ctxRel, n)
		var st unix.Stat_t
		if err := unix.Fstatat(dfd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("build: %s: %w", cc, err)
		}
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		excluded := r.ignored(cc)
		if excluded && (!isDir || !r.ignore.Exclusions()) {
			continue
		}
		e := srcEntry{rel: cr, ctxRel: cc, st: st}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			name := n
			e.open = func() (*os.File, error) {
				fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
				if err != nil {
					return nil, err
				}
				return os.NewFile(uintptr(fd), cc), nil
			}
		case unix.S_IFLNK:
			e.link, err = readlinkAt(dfd, n)
			if err != nil {
				return fmt.Errorf("build: %s: %w", cc, err)
			}
		case unix.S_IFDIR:
		case unix.S_IFIFO:
		default:
			continue // devices and sockets are not copied
		}
		inner := visit
		if excluded {
			// An excluded directory walked for the exceptions ("!")
			// is copied only with something it holds, as BuildKit
			// sends it: just before the first entry an exception
			// keeps.
			pending := true
			inner = func(c srcEntry) error {
				if pending {
					pending = false
					if err := visit(e); err != nil {
						return err
					}
				}
				return visit(c)
			}
		} else if err := visit(e); err != nil {
			return err
		}
		if isDir {
			cfd, err := unix.Openat(dfd, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("build: %s: %w", cc, err)
			}
			err = r.walkDir(cfd, cr, cc, inner)
			unix.Close(cfd)
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// reopen opens the O_PATH descriptor fd's file again for reading.
func reopen(fd, flags int) (*os.File, error) {
	nfd, err := reopenFD(fd, flags)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(nfd), "source"), nil
}

// reopenFD opens what the O_PATH descriptor fd names, through its
// /proc/self/fd link (no path lookup: the same inode).
func reopenFD(fd, flags int) (int, error) {
	return unix.Open(fmt.Sprintf("/proc/self/fd/%d", fd), flags|unix.O_CLOEXEC, 0)
}

// readlinkAt reads the symlink name in dirfd.
func readlinkAt(dirfd int, name string) (string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < len(buf) {
			return string(buf[:n]), nil
		}
		buf = make([]byte, 2*len(buf))
	}
}

// hashSources is the content key of a COPY's sources from r: for each
// source, each path it matches and everything below, the names, types,
// modes, owners (of a stage's or image's files; the context's are copied
// as root's), sizes, contents, link targets and hardlink groups; never
// times. Missing sources fail as the copy would.
func hashSources(r *srcRoot, sources []string) (string, error) {
	h := sha256.New()
	buf := make([]byte, 256<<10) // one copy buffer for all files
	for _, src := range sources {
		matches, err := r.match(src)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "source %q %d\n", src, len(matches))
		for _, m := range matches {
			inodes := map[[2]uint64]string{}
			err := r.walk(m, func(e srcEntry) error {
				st := e.st
				uid, gid := st.Uid, st.Gid
				if r.context {
					uid, gid = 0, 0
				}
				fmt.Fprintf(h, "%q %o %d:%d", path.Join(m, e.rel), st.Mode, uid, gid)
				switch st.Mode & unix.S_IFMT {
				case unix.S_IFLNK:
					fmt.Fprintf(h, " -> %q", e.link)
				case unix.S_IFREG:
					key := [2]uint64{st.Dev, st.Ino}
					if first, ok := inodes[key]; ok && st.Nlink > 1 {
						fmt.Fprintf(h, " link %q", first)
						break
					}
					inodes[key] = e.rel
					n, sum, err := r.fileHash(e, buf)
					if err != nil {
						return err
					}
					fmt.Fprintf(h, " %d %s", n, sum)
				}
				h.Write([]byte("\n"))
				return nil
			})
			if err != nil {
				return "", err
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// fileHash returns the length and the hex sha256 of the regular file e,
// remembered (r.hashes) or read with buf.
func (r *srcRoot) fileHash(e srcEntry, buf []byte) (int64, string, error) {
	name := filepath.Join(r.abs, e.ctxRel)
	if r.hashes != nil {
		if sum, ok := r.hashes.get(name, &e.st); ok {
			return e.st.Size, sum, nil
		}
	}
	f, err := e.open()
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	fh := sha256.New()
	n, err := io.CopyBuffer(fh, struct{ io.Reader }{f}, buf)
	if err != nil {
		return 0, "", err
	}
	sum := hex.EncodeToString(fh.Sum(nil))
	var after unix.Stat_t
	if r.hashes != nil && unix.Fstat(int(f.Fd()), &after) == nil && n == after.Size &&
		statHash(&after, "") == statHash(&e.st, "") {
		r.hashes.put(name, &after, sum)
	}
	return n, sum, nil
}

// errIsNotExist reports a missing path.
func errIsNotExist(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, os.ErrNotExist)
}

package build

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-registry/berth/runner/build/dockerfile"
)

// mountsDir holds the cache mounts, in the build directory.
const mountsDir = "mounts"

// runMounts is what a RUN step's --mount flags add to its container:
// the mounts, the secrets given as environment variables, and the mount
// points the step must not leave in its layer.
type runMounts struct {
	specs []specs.Mount
	env   []string
	stubs []string // rootfs-relative paths that did not exist, deepest first per mount
}

// mountKey is what a step's cache key holds of a mount: never a
// secret's value, nor a cache's content.
type mountKey struct {
	dockerfile.Mount        // FromImage cleared: From names it
	From             string `json:",omitempty"`
}

// mountKeys are the cache-key parts of a RUN's mounts: a bind from the
// build context hashes its source's content, one from a stage that
// stage's last key, one from an image its ID.
func (b *builder) mountKeys(ms []dockerfile.Mount) ([]mountKey, error) {
	var out []mountKey
	for _, m := range ms {
		k := mountKey{Mount: m}
		k.Mount.FromImage = nil
		if m.Type == dockerfile.MountBind {
			switch {
			case m.FromStage >= 0:
				k.From = "stage " + b.results[m.FromStage].key
			case m.FromImage != nil:
				k.From = "image " + m.FromImage.ID.String()
			default:
				if b.context == nil {
					return nil, fmt.Errorf("%w: bind mount of %q: no build context (the Dockerfile came from stdin)", ErrNotFound, m.Source)
				}
				h, err := hashSources(b.context, []string{m.Source})
				if err != nil {
					return nil, err
				}
				k.From = "context " + h
			}
		}
		out = append(out, k)
	}
	return out, nil
}

// prepareMounts makes ready, in the slot, what the mounts of step bind
// into its container, and notes which mount points do not exist yet in
// rootfs (to be removed after the step when left empty, as BuildKit
// does). What it mounts on the host is below the slot, unmounted by
// slot.remove; the cache locks it takes are released there too.
func (b *builder) prepareMounts(ctx context.Context, s *slot, rootfs string, step dockerfile.Step) (*runMounts, error) {
	rm := &runMounts{}
	ms := slices.Clone(step.Mounts)
	// Shallow targets first, so that /a is mounted before /a/b.
	slices.SortStableFunc(ms, func(a, b dockerfile.Mount) int {
		return strings.Count(path.Clean(a.Target), "/") - strings.Count(path.Clean(b.Target), "/")
	})
	for i, m := range ms {
		var sm specs.Mount
		switch m.Type {
		case dockerfile.MountTmpfs:
			o := []string{"nosuid"}
			if m.Size > 0 {
				o = append(o, "size="+strconv.FormatInt(m.Size, 10))
			}
			sm = specs.Mount{Type: "tmpfs", Source: "tmpfs", Options: o}
		case dockerfile.MountSecret:
			val, ok := b.opts.Secrets[m.SecretID]
			if !ok {
				if m.Required {
					return nil, fmt.Errorf("%w: secret %s not found (give it with --secret id=%s,src=FILE)", ErrNotFound, m.SecretID, m.SecretID)
				}
				continue
			}
			if m.Env != "" {
				rm.env = append(rm.env, m.Env+"="+string(val))
			}
			if m.Target == "" {
				continue
			}
			p, err := s.secretFile(i, val, m)
			if err != nil {
				return nil, err
			}
			sm = bindMount(p, true)
		case dockerfile.MountFile:
			p := s.path(fmt.Sprintf("mount-%d", i))
			if err := os.WriteFile(p, []byte(m.Data), 0o600); err != nil {
				return nil, fmt.Errorf("build: %w", err)
			}
			if err := os.Chmod(p, os.FileMode(m.Mode)); err != nil {
				return nil, fmt.Errorf("build: %w", err)
			}
			sm = bindMount(p, true)
		case dockerfile.MountCache:
			p, err := b.cacheMount(s, m)
			if err != nil {
				return nil, err
			}
			sm = bindMount(p, m.ReadOnly)
		case dockerfile.MountBind:
			p, err := b.bindSource(ctx, s, i, m)
			if err != nil {
				return nil, err
			}
			sm = bindMount(p, m.ReadOnly)
		default:
			return nil, fmt.Errorf("%w: mount type %q", ErrInvalid, m.Type)
		}
		sm.Destination = m.Target
		rm.specs = append(rm.specs, sm)
		rm.stubs = append(rm.stubs, missingPaths(rootfs, m.Target)...)
	}
	return rm, nil
}

func bindMount(src string, ro bool) specs.Mount {
	mode := "rw"
	if ro {
		mode = "ro"
	}
	return specs.Mount{Type: "bind", Source: src, Options: []string{"rbind", mode}}
}

// missingPaths returns target and its parents, deepest first, down to the
// first one that exists in rootfs (symlinks resolved inRoot).
func missingPaths(rootfs, target string) []string {
	rootfd, err := unix.Open(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	defer unix.Close(rootfd)
	var out []string
	for rel := cleanRel(target); rel != "."; rel = path.Dir(rel) {
		fd, err := openIn(rootfd, rel, unix.O_PATH|unix.O_NOFOLLOW)
		if err == nil {
			unix.Close(fd)
			break
		}
		if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTDIR) {
			break
		}
		out = append(out, rel)
	}
	return out
}

// removeStubs removes the mount points a step made that are still empty
// (an empty directory or file, not a symlink), as BuildKit's executor
// does, so that they are not part of the layer.
func removeStubs(rootfs string, stubs []string) {
	rootfd, err := unix.Open(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(rootfd)
	for _, rel := range stubs {
		dir, name := path.Split(rel)
		pfd, err := openIn(rootfd, cleanRel(dir), unix.O_RDONLY|unix.O_DIRECTORY)
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
			switch st.Mode & unix.S_IFMT {
			case unix.S_IFDIR:
				unix.Unlinkat(pfd, name, unix.AT_REMOVEDIR) // fails unless empty
			case unix.S_IFREG:
				if st.Size == 0 {
					unix.Unlinkat(pfd, name, 0)
				}
			}
		}
		unix.Close(pfd)
	}
}

// secretFile writes a secret's value into the slot's secrets tmpfs
// (mounted on first use: a secret never touches a disk) with the
// mount's owner and mode, and returns its path.
func (s *slot) secretFile(i int, val []byte, m dockerfile.Mount) (string, error) {
	dir := s.path("secrets")
	if !s.secrets {
		if err := os.Mkdir(dir, 0o700); err != nil {
			return "", fmt.Errorf("build: %w", err)
		}
		if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0700"); err != nil {
			return "", fmt.Errorf("build: mounting a tmpfs for secrets: %w", err)
		}
		s.secrets = true
	}
	p := filepath.Join(dir, strconv.Itoa(i))
	if err := os.WriteFile(p, val, 0o600); err != nil {
		return "", fmt.Errorf("build: %w", err)
	}
	if err := os.Chown(p, m.UID, m.GID); err != nil {
		return "", fmt.Errorf("build: %w", err)
	}
	if err := os.Chmod(p, os.FileMode(m.Mode&0o7777)); err != nil {
		return "", fmt.Errorf("build: %w", err)
	}
	return p, nil
}

// cacheMount returns the directory of a cache mount, creating the cache
// (owned and moded as the mount says) the first time, and locks it for
// the step as its sharing says: shared (many steps at once), locked (one
// at a time, the others wait), private (a step finding it in use gets
// another instance of the cache).
func (b *builder) cacheMount(s *slot, m dockerfile.Mount) (string, error) {
	sum := sha256.Sum256([]byte(m.CacheID))
	base := filepath.Join(b.dir, mountsDir, hex.EncodeToString(sum[:]))
	if err := os.MkdirAll(base, 0o700); err != nil {
		return "", fmt.Errorf("build: %w", err)
	}
	for n := 0; ; n++ {
		lock, err := os.OpenFile(filepath.Join(base, strconv.Itoa(n)+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return "", fmt.Errorf("build: cache mount %s: %w", m.CacheID, err)
		}
		how := unix.LOCK_SH
		switch m.Sharing {
		case dockerfile.SharingLocked:
			how = unix.LOCK_EX
		case dockerfile.SharingPrivate:
			how = unix.LOCK_EX | unix.LOCK_NB
		}
		if err := unix.Flock(int(lock.Fd()), how); err != nil {
			lock.Close()
			if err == unix.EWOULDBLOCK && m.Sharing == dockerfile.SharingPrivate {
				continue
			}
			return "", fmt.Errorf("build: cache mount %s: %w", m.CacheID, err)
		}
		s.closers = append(s.closers, lock)
		dir := filepath.Join(base, strconv.Itoa(n))
		if err := newCacheDir(dir, m); err != nil {
			return "", err
		}
		if m.Source == "." {
			return dir, nil
		}
		p := filepath.Join(dir, filepath.FromSlash(m.Source))
		if err := os.MkdirAll(p, 0o755); err != nil {
			return "", fmt.Errorf("build: cache mount %s: %w", m.CacheID, err)
		}
		return p, nil
	}
}

// newCacheDir makes the cache directory dir unless it exists: made
// aside, owned and moded, then renamed into place.
func newCacheDir(dir string, m dockerfile.Mount) error {
	if _, err := os.Lstat(dir); err == nil {
		return nil
	}
	tmp := dir + ".new"
	os.RemoveAll(tmp)
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return fmt.Errorf("build: cache mount %s: %w", m.CacheID, err)
	}
	if err := os.Chown(tmp, m.UID, m.GID); err != nil {
		return fmt.Errorf("build: cache mount %s: %w", m.CacheID, err)
	}
	if err := os.Chmod(tmp, os.FileMode(m.Mode&0o7777)); err != nil {
		return fmt.Errorf("build: cache mount %s: %w", m.CacheID, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("build: cache mount %s: %w", m.CacheID, err)
	}
	return nil
}

// bindSource returns a host path holding what a bind mount binds: its
// source below the build context, a stage or an image, resolved inRoot
// (nothing outside them), bound read-only into the slot; a writable bind
// gets a copy instead, thrown away with the slot, as is one from a
// context with excluded paths.
func (b *builder) bindSource(ctx context.Context, s *slot, i int, m dockerfile.Mount) (string, error) {
	root := b.context
	if m.FromStage >= 0 || m.FromImage != nil {
		dir, err := b.mountLayers(ctx, s, fmt.Sprintf("mount-%d-src", i), b.layersOf(m.FromStage, m.FromImage))
		if err != nil {
			return "", err
		}
		if root, err = openRoot(dir, nil, false); err != nil {
			return "", err
		}
		defer root.close()
	} else if root == nil {
		return "", fmt.Errorf("%w: bind mount of %q: no build context", ErrNotFound, m.Source)
	}
	if _, err := root.match(m.Source); err != nil || hasWildcard(m.Source) {
		return "", fmt.Errorf("%w: bind mount source %q", ErrNotFound, m.Source)
	}
	fd, err := openIn(root.fd, m.Source, unix.O_PATH)
	if err != nil {
		return "", fmt.Errorf("%w: bind mount source %q: %v", ErrNotFound, m.Source, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return "", err
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	target := s.path(fmt.Sprintf("mount-%d", i))
	if !m.ReadOnly || root.ignore != nil {
		// A copy: writes to it are thrown away, excluded paths are not
		// in it.
		if err := os.Mkdir(target, 0o755); err != nil {
			return "", fmt.Errorf("build: %w", err)
		}
		dfd, err := unix.Open(target, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return "", err
		}
		defer unix.Close(dfd)
		c := &copier{rootfs: target, rootfd: dfd, spec: &dockerfile.CopySpec{}}
		if isDir {
			return target, c.copyTree(root, cleanRel(m.Source), "/")
		}
		name := path.Base(cleanRel(m.Source))
		return filepath.Join(target, name), c.copyTree(root, cleanRel(m.Source), "/"+name)
	}
	if isDir {
		err = os.Mkdir(target, 0o755)
	} else {
		err = os.WriteFile(target, nil, 0o600)
	}
	if err != nil {
		return "", fmt.Errorf("build: %w", err)
	}
	if err := unix.Mount(procPath(fd), target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return "", fmt.Errorf("build: binding %q: %w", m.Source, err)
	}
	s.mounts = append(s.mounts, target)
	// Read-only on the host too: nothing below the slot can ever write
	// to the context through it.
	if err := unix.Mount("", target, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
		return "", fmt.Errorf("build: binding %q read-only: %w", m.Source, err)
	}
	return target, nil
}

func procPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// unmountBelow unmounts every mount at or below dir (deepest first),
// lazily when busy; it reports whether none is left.
func unmountBelow(dir string) bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			points = append(points, mp)
		}
	}
	f.Close()
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	for _, p := range points {
		if err := unix.Unmount(p, 0); err != nil && err != unix.EINVAL {
			if unix.Unmount(p, unix.MNT_DETACH) != nil {
				return false
			}
		}
	}
	return true
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

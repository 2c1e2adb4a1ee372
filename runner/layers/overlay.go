package layers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Mount mounts the layers as one overlayfs at target. layers are in image
// order, base first (the order of the config's rootfs.diff_ids); each must
// be in the store (it is looked up again by diff_id, Layer.Dir is not
// trusted). upper and work are the container's writable directory and
// overlayfs's work directory, on one filesystem; both empty makes a
// read-only mount, which overlayfs allows only with two layers or more. A
// writable mount may have no layers at all (an empty rootfs).
//
// A writable mount (a container's rootfs) also gets, above the image's
// layers, the store's mount-point layer: empty directories for the
// filesystems every container mounts over (/dev, /proc, /sys; see
// Mountpoints). Without it a runtime makes them in the container's upper
// directory, one copy-up and one directory written (and later deleted,
// with a discard on some disks) per container.
//
// Mount uses the new mount API, one "lowerdir+" per layer (Linux 6.8+), so
// no layer count overflows mount(2)'s one-page option string; on older
// kernels it falls back to mount(2) and says so if the layers do not fit.
// The caller unmounts (unix.Unmount) and removes upper and work.
func (s *Store) Mount(ctx context.Context, layers []Layer, upper, work, target string) error {
	return s.MountWith(ctx, layers, upper, work, target, MountOptions{})
}

// MountVolatile is Mount for a rootfs that is used once and thrown away (a
// container run with --rm): overlayfs's volatile option (Linux 5.10+;
// older kernels mount without it) skips syncing the upper directory's
// filesystem, all of it, when the mount goes away. The upper and work
// directories of a volatile mount can never be mounted again.
func (s *Store) MountVolatile(ctx context.Context, layers []Layer, upper, work, target string) error {
	return s.MountWith(ctx, layers, upper, work, target, MountOptions{Volatile: true})
}

// MountOptions are MountWith's options.
type MountOptions struct {
	// Volatile mounts as MountVolatile does.
	Volatile bool
	// UserNS, when not nil, is a user namespace (an open
	// /proc/PID/ns/user): every lower layer is then mounted idmapped
	// through it, so that a container in a user namespace with the same
	// mappings sees the layers' files owned as the image has them (its
	// root's files owned by its root) instead of by nobody. Files the
	// container writes land in upper owned by the host ids they map to.
	// A kernel that cannot do it fails the mount with ErrIDMapUnsupported.
	UserNS *os.File
	// NoMountpoints leaves the mount-point layer out of a writable mount
	// of one layer or more: a runtime then makes the mount points the
	// layers lack in upper, as a build's RUN step must (docker build's
	// layers hold the /dev, /proc and /sys its RUN steps made).
	NoMountpoints bool
}

// MountWith is Mount with options.
func (s *Store) MountWith(ctx context.Context, layers []Layer, upper, work, target string, opts MountOptions) error {
	if opts.Volatile && upper == "" {
		return fmt.Errorf("%w: a volatile mount needs an upper dir", ErrInvalid)
	}
	if len(layers) == 0 && upper == "" {
		// A writable mount of no layers (an empty rootfs, a build's
		// scratch stage) has the mount-point layer as its only lower.
		return fmt.Errorf("%w: no layers to mount", ErrInvalid)
	}
	if (upper == "") != (work == "") {
		return fmt.Errorf("%w: upper and work go together", ErrInvalid)
	}
	if upper == "" && len(layers) < 2 {
		return fmt.Errorf("%w: a read-only overlay needs two layers or more", ErrInvalid)
	}
	lowers := make([]string, 0, len(layers)+1)
	if upper != "" && (!opts.NoMountpoints || len(layers) == 0) {
		dir, err := s.mountpointLayer()
		if err != nil {
			return err
		}
		lowers = append(lowers, dir)
	}
	lowers, err := s.lowerDirs(ctx, lowers, layers)
	if err != nil {
		return err
	}
	if opts.UserNS != nil {
		err := mountOverlayFsconfig(lowers, upper, work, target, opts.Volatile, int(opts.UserNS.Fd()))
		if err != nil {
			return fmt.Errorf("layers: mounting %d layers idmapped at %s: %w", len(layers), target, err)
		}
		return nil
	}
	if err := mountOverlay(lowers, upper, work, target, opts.Volatile); err != nil {
		s.forgetOverlay()
		return fmt.Errorf("layers: mounting %d layers at %s: %w", len(layers), target, err)
	}
	return nil
}

// MountView mounts, read-only at target, the view of a container's
// rootfs: its writable layer upper (an overlayfs upper directory, with its
// whiteouts and opaque directories) over the mount-point layer and
// layers (base first, each looked up in the store again), as `berth
// export` reads it. upper is only read, never written, so a running
// container's may be used (overlayfs then warns that reading both mounts
// at once gives an undefined view of what changes meanwhile). The caller
// unmounts target.
func (s *Store) MountView(ctx context.Context, layers []Layer, upper, target string) error {
	if upper == "" {
		return fmt.Errorf("%w: no upper directory to view", ErrInvalid)
	}
	mp, err := s.mountpointLayer()
	if err != nil {
		return err
	}
	lowers, err := s.lowerDirs(ctx, []string{upper, mp}, layers)
	if err != nil {
		return err
	}
	if err := mountOverlay(lowers, "", "", target, false); err != nil {
		return fmt.Errorf("layers: mounting the view of %s at %s: %w", upper, target, err)
	}
	return nil
}

// lowerDirs appends the directories of layers (base first) to lowers in
// overlayfs's order, top first. A layer listed twice (two empty layers,
// or two steps that made the same change) is listed once, at its top
// position: overlayfs refuses a lower directory twice (ELOOP), and its
// copy below the top one can change nothing that the top one does not
// already show or hide.
func (s *Store) lowerDirs(ctx context.Context, lowers []string, layers []Layer) ([]string, error) {
	seen := map[string]bool{}
	for i := len(layers) - 1; i >= 0; i-- { // overlayfs lists the top first
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		l, err := s.Get(layers[i].DiffID)
		if err != nil {
			return nil, err
		}
		if seen[l.Dir] {
			continue
		}
		seen[l.Dir] = true
		lowers = append(lowers, l.Dir)
	}
	return lowers, nil
}

// Mountpoints are the directories of the mount-point layer that Mount puts
// above an image's layers in a writable mount.
var Mountpoints = []string{"dev", "proc", "sys"}

// mountpointsDir is the mount-point layer, in the store's root.
const mountpointsDir = "mountpoints"

// mountpointLayer returns the mount-point layer's directory, making it
// (in a temporary slot, renamed into place) if it is not there yet.
func (s *Store) mountpointLayer() (string, error) {
	dir := filepath.Join(s.root, mountpointsDir)
	if st, err := os.Lstat(dir); err == nil && st.IsDir() {
		return dir, nil
	}
	sl, err := s.reserve()
	if err != nil {
		return "", err
	}
	defer sl.release()
	if err := os.Mkdir(sl.dir, 0o755); err != nil {
		return "", err
	}
	for _, d := range Mountpoints {
		if err := os.Mkdir(filepath.Join(sl.dir, d), 0o755); err != nil {
			return "", err
		}
	}
	// 0755 whatever the umask: the container sees these modes.
	for _, d := range append([]string{""}, Mountpoints...) {
		if err := os.Chmod(filepath.Join(sl.dir, d), 0o755); err != nil {
			return "", err
		}
	}
	if err := os.Rename(sl.dir, dir); err != nil {
		if st, serr := os.Lstat(dir); serr == nil && st.IsDir() {
			return dir, nil // another process made it first
		}
		return "", fmt.Errorf("layers: making the mount-point layer: %w", err)
	}
	return dir, nil
}

// errNoLowerdirPlus says the kernel's overlayfs lacks "lowerdir+".
var errNoLowerdirPlus = errors.New("overlayfs without lowerdir+")

// mountOverlay mounts overlayfs with lowers (top first) at target,
// volatile if asked and the kernel knows the option.
func mountOverlay(lowers []string, upper, work, target string, volatile bool) error {
	err := mountOverlayFsconfig(lowers, upper, work, target, volatile, -1)
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, errNoLowerdirPlus) {
		err = mountOverlayLegacy(lowers, upper, work, target, volatile)
		if volatile && errors.Is(err, unix.EINVAL) { // before Linux 5.10
			err = mountOverlayLegacy(lowers, upper, work, target, false)
		}
	}
	return err
}

// mountOverlayFsconfig mounts through fsopen/fsconfig/fsmount/move_mount,
// adding the kernel's own messages to a failure. With userns >= 0 (a user
// namespace's descriptor) each lower layer is given as a detached idmapped
// mount of its directory.
func mountOverlayFsconfig(lowers []string, upper, work, target string, volatile bool, userns int) error {
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		if userns >= 0 {
			return fmt.Errorf("%w: fsopen: %v", ErrIDMapUnsupported, err)
		}
		return fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fsfd)
	for i, l := range lowers {
		if userns >= 0 {
			// A detached mount goes away with its last descriptor: keep
			// it until the overlay has cloned it (FsconfigCreate).
			tree, err := lowerIDMapped(fsfd, l, userns)
			if err != nil {
				return err
			}
			defer unix.Close(tree)
			continue
		}
		if err := unix.FsconfigSetString(fsfd, "lowerdir+", l); err != nil {
			log := fsLog(fsfd)
			if i == 0 && err == unix.EINVAL && strings.Contains(log, "nknown parameter") {
				return errNoLowerdirPlus
			}
			return fmt.Errorf("lowerdir %s: %w (%s)", l, err, log)
		}
	}
	if upper != "" {
		if err := unix.FsconfigSetString(fsfd, "upperdir", upper); err != nil {
			return fmt.Errorf("upperdir %s: %w%s", upper, err, fsLogSuffix(fsfd))
		}
		if err := unix.FsconfigSetString(fsfd, "workdir", work); err != nil {
			return fmt.Errorf("workdir %s: %w%s", work, err, fsLogSuffix(fsfd))
		}
		if volatile {
			if err := unix.FsconfigSetFlag(fsfd, "volatile"); err != nil {
				// volatile came with Linux 5.10, the new mount API with
				// 5.2: a kernel in between mounts without it.
				if log := fsLog(fsfd); err != unix.EINVAL || !strings.Contains(log, "nknown parameter") {
					return fmt.Errorf("volatile: %w (%s)", err, log)
				}
			}
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fmt.Errorf("creating overlay: %w%s", err, fsLogSuffix(fsfd))
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("fsmount: %w%s", err, fsLogSuffix(fsfd))
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount to %s: %w", target, err)
	}
	return nil
}

// lowerIDMapped adds dir to the overlay context fsfd as a lower layer seen
// through the user namespace userns: a detached copy of its mount
// (open_tree), idmapped (mount_setattr), given by descriptor. It returns
// that descriptor, for the caller to close once the overlay is created.
func lowerIDMapped(fsfd int, dir string, userns int) (int, error) {
	tree, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("%w: open_tree %s: %v", ErrIDMapUnsupported, dir, err)
	}
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(userns)}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, attr); err != nil {
		unix.Close(tree)
		return -1, fmt.Errorf("%w: idmapping %s: %v", ErrIDMapUnsupported, dir, err)
	}
	if err := unix.FsconfigSetFd(fsfd, "lowerdir+", tree); err != nil {
		unix.Close(tree)
		return -1, fmt.Errorf("%w: lowerdir+ by descriptor: %v%s", ErrIDMapUnsupported, err, fsLogSuffix(fsfd))
	}
	return tree, nil
}

// fsLog drains the messages the kernel left on a filesystem context.
func fsLog(fsfd int) string {
	var msgs []string
	buf := make([]byte, 1024)
	for range 16 {
		n, err := unix.Read(fsfd, buf)
		if err != nil || n <= 0 {
			break
		}
		msgs = append(msgs, strings.TrimSpace(string(buf[:n])))
	}
	return strings.Join(msgs, "; ")
}

func fsLogSuffix(fsfd int) string {
	if m := fsLog(fsfd); m != "" {
		return " (" + m + ")"
	}
	return ""
}

// mountOverlayLegacy mounts with mount(2) and a lowerdir=a:b:c option
// string, which must fit in a page and cannot carry ',' or ':' in a path.
func mountOverlayLegacy(lowers []string, upper, work, target string, volatile bool) error {
	for _, p := range append([]string{upper, work}, lowers...) {
		if strings.ContainsAny(p, ",:") {
			return fmt.Errorf("%w: path %q has ',' or ':', which mount(2) options cannot carry", ErrInvalid, p)
		}
	}
	opts := "lowerdir=" + strings.Join(lowers, ":")
	if upper != "" {
		opts += ",upperdir=" + upper + ",workdir=" + work
	}
	if volatile {
		opts += ",volatile"
	}
	if len(opts) >= os.Getpagesize() {
		return fmt.Errorf("%w: %d layers do not fit in mount(2)'s options (this kernel lacks lowerdir+, Linux 6.8+)", ErrInvalid, len(lowers))
	}
	if err := unix.Mount("overlay", target, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay: %w", err)
	}
	return nil
}

// OverlaySupported reports whether overlayfs can be mounted over this
// store's layers: nil if so, or an error wrapping ErrOverlayUnsupported
// that says why (use Flatten then). The first call probes with a real
// mount of two small layers, a whiteout and an opaque directory in the
// store's temporary area; the result is kept, and a success is also
// recorded in the store for later processes on the same kernel and
// filesystem (a failing Mount forgets it).
func (s *Store) OverlaySupported() error {
	s.overlayOnce.Do(func() {
		key := s.overlayKey()
		if key != "" {
			if b, err := os.ReadFile(filepath.Join(s.root, overlayOKFile)); err == nil && string(b) == key {
				return
			}
		}
		s.overlayErr = s.probeOverlay()
		if s.overlayErr == nil && key != "" {
			// Best effort: without the record the next process probes.
			_ = s.recordOverlay(key)
		}
	})
	return s.overlayErr
}

// overlayOKFile records, in the store's root, the kernel and filesystem
// on which the overlay probe passed.
const overlayOKFile = "overlay-ok"

// overlayKey names this kernel and the filesystem the store is on: a probe
// that passed with the same key need not run again. "" when unknown.
func (s *Store) overlayKey() string {
	var uts unix.Utsname
	var st unix.Stat_t
	var fs unix.Statfs_t
	if unix.Uname(&uts) != nil || unix.Stat(s.root, &st) != nil || unix.Statfs(s.root, &fs) != nil {
		return ""
	}
	return fmt.Sprintf("%s %s fs=%x dev=%d\n", unix.ByteSliceToString(uts.Release[:]),
		unix.ByteSliceToString(uts.Version[:]), fs.Type, st.Dev)
}

// recordOverlay writes key as the record of a passed probe.
func (s *Store) recordOverlay(key string) error {
	f, err := os.CreateTemp(s.root, "."+overlayOKFile+"-*")
	if err != nil {
		return err
	}
	_, err = f.WriteString(key)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(s.root, overlayOKFile))
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// forgetOverlay removes the record of a passed probe, after a mount failed.
func (s *Store) forgetOverlay() {
	os.Remove(filepath.Join(s.root, overlayOKFile))
}

func (s *Store) probeOverlay() (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w: %v", ErrOverlayUnsupported, err)
		}
	}()
	sl, err := s.reserve()
	if err != nil {
		return err
	}
	defer sl.release()
	d := func(name string) string { return filepath.Join(sl.dir, name) }
	for _, p := range []string{"", "l1", "l1/dir", "l2", "l2/dir", "upper", "work", "merged"} {
		if err := os.Mkdir(d(p), 0o700); err != nil {
			return err
		}
	}
	for _, p := range []string{"l1/gone", "l1/dir/hidden", "l2/dir/kept"} {
		if err := os.WriteFile(d(p), nil, 0o600); err != nil {
			return err
		}
	}
	if err := unix.Mknod(d("l2/gone"), unix.S_IFCHR, 0); err != nil {
		return fmt.Errorf("whiteout: %w", err)
	}
	if err := unix.Setxattr(d("l2/dir"), opaqueXattr, []byte("y"), 0); err != nil {
		return fmt.Errorf("opaque xattr: %w", err)
	}
	if err := mountOverlay([]string{d("l2"), d("l1")}, d("upper"), d("work"), d("merged"), false); err != nil {
		return err
	}
	defer unix.Unmount(d("merged"), unix.MNT_DETACH)
	for p, want := range map[string]bool{"gone": false, "dir/hidden": false, "dir/kept": true} {
		_, err := os.Lstat(filepath.Join(d("merged"), p))
		if (err == nil) != want {
			return fmt.Errorf("overlay probe: %s present=%v, want %v", p, err == nil, want)
		}
	}
	return nil
}

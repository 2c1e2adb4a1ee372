package container

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// mountOption is what one mount(8)-style option does to the flags.
type mountOption struct {
	clear bool
	flag  uintptr
}

var mountOptions = map[string]mountOption{
	"async":         {true, unix.MS_SYNCHRONOUS},
	"atime":         {true, unix.MS_NOATIME},
	"bind":          {false, unix.MS_BIND},
	"defaults":      {false, 0},
	"dev":           {true, unix.MS_NODEV},
	"diratime":      {true, unix.MS_NODIRATIME},
	"dirsync":       {false, unix.MS_DIRSYNC},
	"exec":          {true, unix.MS_NOEXEC},
	"mand":          {false, unix.MS_MANDLOCK},
	"noatime":       {false, unix.MS_NOATIME},
	"nodev":         {false, unix.MS_NODEV},
	"nodiratime":    {false, unix.MS_NODIRATIME},
	"noexec":        {false, unix.MS_NOEXEC},
	"nomand":        {true, unix.MS_MANDLOCK},
	"norelatime":    {true, unix.MS_RELATIME},
	"nostrictatime": {true, unix.MS_STRICTATIME},
	"nosuid":        {false, unix.MS_NOSUID},
	"rbind":         {false, unix.MS_BIND | unix.MS_REC},
	"relatime":      {false, unix.MS_RELATIME},
	"remount":       {false, unix.MS_REMOUNT},
	"ro":            {false, unix.MS_RDONLY},
	"rw":            {true, unix.MS_RDONLY},
	"strictatime":   {false, unix.MS_STRICTATIME},
	"suid":          {true, unix.MS_NOSUID},
	"sync":          {false, unix.MS_SYNCHRONOUS},
}

var propagationOptions = map[string]uintptr{
	"private":     unix.MS_PRIVATE,
	"rprivate":    unix.MS_PRIVATE | unix.MS_REC,
	"shared":      unix.MS_SHARED,
	"rshared":     unix.MS_SHARED | unix.MS_REC,
	"slave":       unix.MS_SLAVE,
	"rslave":      unix.MS_SLAVE | unix.MS_REC,
	"unbindable":  unix.MS_UNBINDABLE,
	"runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// parseMountOptions splits options into mount flags, propagation flags
// and the filesystem's data string.
func parseMountOptions(opts []string) (flags uintptr, prop []uintptr, data string) {
	var rest []string
	for _, o := range opts {
		if mo, ok := mountOptions[o]; ok {
			if mo.clear {
				flags &^= mo.flag
			} else {
				flags |= mo.flag
			}
			continue
		}
		if p, ok := propagationOptions[o]; ok {
			prop = append(prop, p)
			continue
		}
		rest = append(rest, o)
	}
	return flags, prop, strings.Join(rest, ",")
}

// lockedFlags are the flags of the mount at p that a bind remount must
// keep (in a user namespace the kernel refuses to clear them).
func lockedFlags(p string) uintptr {
	var st unix.Statfs_t
	if unix.Statfs(p, &st) != nil {
		return 0
	}
	var f uintptr
	for _, x := range []struct {
		st   int64
		flag uintptr
	}{
		{unix.ST_NOSUID, unix.MS_NOSUID}, {unix.ST_NODEV, unix.MS_NODEV}, {unix.ST_NOEXEC, unix.MS_NOEXEC},
		{unix.ST_NOATIME, unix.MS_NOATIME}, {unix.ST_NODIRATIME, unix.MS_NODIRATIME}, {unix.ST_RELATIME, unix.MS_RELATIME},
	} {
		if st.Flags&x.st != 0 {
			f |= x.flag
		}
	}
	return f
}

// openIn opens rel inside root with O_PATH, resolving symlinks as if root
// were "/" (RESOLVE_IN_ROOT), so that nothing the image holds can point a
// mount outside the rootfs. With create, missing components are made:
// directories, and the last one as a directory (dir) or an empty file.
func openIn(root, rel string, create, dir bool) (int, error) {
	rootfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(rootfd)
	return openAt(rootfd, path.Clean("/"+rel), create, dir)
}

func openAt(rootfd int, rel string, create, dir bool) (int, error) {
	how := unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(rootfd, rel, &how)
	if err == nil || !create || !errors.Is(err, unix.ENOENT) || rel == "/" {
		return fd, err
	}
	parent, err := openAt(rootfd, path.Dir(rel), true, true)
	if err != nil {
		return -1, err
	}
	defer unix.Close(parent)
	base := path.Base(rel)
	// The parent is an O_PATH descriptor: create through its /proc path.
	pp := procFD(parent)
	if dir {
		err = unix.Mkdir(pp+"/"+base, 0o755)
	} else {
		var f int
		f, err = unix.Open(pp+"/"+base, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
		if err == nil {
			unix.Close(f)
		}
	}
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, err
	}
	return unix.Openat2(rootfd, rel, &how)
}

func procFD(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// mountIn mounts m at m.Destination inside rootfs.
func mountIn(rootfs string, m specs.Mount, userns bool) error {
	flags, prop, data := parseMountOptions(m.Options)
	typ := m.Type
	if typ == "bind" || typ == "rbind" {
		flags |= unix.MS_BIND
		if typ == "rbind" {
			flags |= unix.MS_REC
		}
	}
	bind := flags&unix.MS_BIND != 0
	dir := true
	if bind {
		st, err := os.Stat(m.Source)
		if err != nil {
			return fmt.Errorf("bind mount source: %w", err)
		}
		dir = st.IsDir()
	}
	fd, err := openIn(rootfs, m.Destination, true, dir)
	if err != nil {
		return fmt.Errorf("mount point %s: %w", m.Destination, err)
	}
	defer unix.Close(fd)
	target := procFD(fd)
	switch {
	case bind:
		if err := unix.Mount(m.Source, target, "", flags&(unix.MS_BIND|unix.MS_REC), ""); err != nil {
			return fmt.Errorf("bind %s on %s: %w", m.Source, m.Destination, err)
		}
		if rest := flags &^ (unix.MS_BIND | unix.MS_REC | unix.MS_REMOUNT); rest != 0 {
			// Reopen: the descriptor still names the covered directory.
			fd2, err := openIn(rootfs, m.Destination, false, dir)
			if err != nil {
				return err
			}
			defer unix.Close(fd2)
			t2 := procFD(fd2)
			if err := unix.Mount("", t2, "", unix.MS_REMOUNT|unix.MS_BIND|rest|lockedFlags(t2), ""); err != nil {
				return fmt.Errorf("remounting %s (%v): %w", m.Destination, m.Options, err)
			}
		}
	case typ == "cgroup" || typ == "cgroup2":
		if err := mountCgroupfs(rootfs, m.Destination, target, flags); err != nil {
			return err
		}
	default:
		err := unix.Mount(m.Source, target, typ, flags, data)
		if err != nil && typ == "sysfs" && (errors.Is(err, unix.EPERM) || errors.Is(err, unix.EBUSY)) {
			// Without its own network namespace (--network host) in a
			// user namespace, sysfs cannot be mounted: bind the host's.
			if err = unix.Mount("/sys", target, "", unix.MS_BIND|unix.MS_REC, ""); err == nil && flags&unix.MS_RDONLY != 0 {
				fd2, err2 := openIn(rootfs, m.Destination, false, true)
				if err2 != nil {
					return err2
				}
				defer unix.Close(fd2)
				err = unix.Mount("", procFD(fd2), "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|lockedFlags(procFD(fd2)), "")
			}
		}
		if err != nil {
			return fmt.Errorf("mounting %s (%s) on %s: %w", m.Source, typ, m.Destination, err)
		}
	}
	if len(prop) > 0 {
		fd2, err := openIn(rootfs, m.Destination, false, dir)
		if err != nil {
			return err
		}
		defer unix.Close(fd2)
		for _, p := range prop {
			if err := unix.Mount("", procFD(fd2), "", p, ""); err != nil {
				return fmt.Errorf("propagation of %s: %w", m.Destination, err)
			}
		}
	}
	return nil
}

// mountCgroupfs mounts the container's view of the cgroup hierarchies at
// target: cgroup2 on a v2 host; on v1, a tmpfs with one directory per
// hierarchy the container joined (v1Controllers). The cgroup namespace
// makes the container's group its root.
func mountCgroupfs(rootfs, dest, target string, flags uintptr) error {
	if CgroupV2() {
		if err := unix.Mount("cgroup2", target, "cgroup2", flags, ""); err != nil {
			return fmt.Errorf("mounting cgroup2 on %s: %w", dest, err)
		}
		return nil
	}
	mounts, err := v1Mounts()
	if err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", target, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=755"); err != nil {
		return fmt.Errorf("mounting tmpfs on %s: %w", dest, err)
	}
	done := map[string]bool{}
	for _, ctrl := range v1Controllers {
		m, ok := mounts[ctrl]
		if !ok {
			continue
		}
		name := filepath.Base(m[0]) // "cpu", or "cpu,cpuacct"
		if done[name] {
			continue
		}
		done[name] = true
		fd, err := openIn(rootfs, path.Join(dest, name), true, true)
		if err != nil {
			return err
		}
		err = unix.Mount("cgroup", procFD(fd), "cgroup", flags, ctrlOptions(m[0], ctrl))
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("mounting cgroup %s on %s: %w", name, dest, err)
		}
	}
	if flags&unix.MS_RDONLY != 0 {
		fd, err := openIn(rootfs, dest, false, true)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Mount("", procFD(fd), "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=755")
	}
	return nil
}

// ctrlOptions is the controller list of the v1 hierarchy mounted at mp.
func ctrlOptions(mp, ctrl string) string {
	base := filepath.Base(mp)
	if strings.Contains(base, ctrl) {
		return base
	}
	return ctrl
}

// defaultDevices are the devices the runtime-spec requires in every
// container (char devices, mode 0666).
var defaultDevices = []specs.LinuxDevice{
	{Path: "/dev/null", Type: "c", Major: 1, Minor: 3},
	{Path: "/dev/zero", Type: "c", Major: 1, Minor: 5},
	{Path: "/dev/full", Type: "c", Major: 1, Minor: 7},
	{Path: "/dev/random", Type: "c", Major: 1, Minor: 8},
	{Path: "/dev/urandom", Type: "c", Major: 1, Minor: 9},
	{Path: "/dev/tty", Type: "c", Major: 5, Minor: 0},
}

// devLinks are the symlinks of a container's /dev.
var devLinks = [][2]string{
	{"/proc/self/fd", "/dev/fd"},
	{"/proc/self/fd/0", "/dev/stdin"},
	{"/proc/self/fd/1", "/dev/stdout"},
	{"/proc/self/fd/2", "/dev/stderr"},
	{"pts/ptmx", "/dev/ptmx"},
}

// createDevices makes the default devices and the spec's in rootfs's /dev:
// with mknod, or, in a user namespace (where mknod is refused), as bind
// mounts of the host's nodes. Then the usual links.
func createDevices(rootfs string, extra []specs.LinuxDevice, userns bool) error {
	devs := append([]specs.LinuxDevice{}, defaultDevices...)
	for _, d := range extra {
		replaced := false
		for i := range devs {
			if devs[i].Path == d.Path {
				devs[i], replaced = d, true
			}
		}
		if !replaced {
			devs = append(devs, d)
		}
	}
	for _, d := range devs {
		if err := createDevice(rootfs, d, userns); err != nil {
			return fmt.Errorf("%s: %w", d.Path, err)
		}
	}
	for _, l := range devLinks {
		dirfd, err := openIn(rootfs, path.Dir(l[1]), true, true)
		if err != nil {
			return err
		}
		err = unix.Symlink(l[0], procFD(dirfd)+"/"+path.Base(l[1]))
		unix.Close(dirfd)
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("symlink %s: %w", l[1], err)
		}
	}
	if _, err := os.Stat("/proc/kcore"); err == nil {
		if dirfd, err := openIn(rootfs, "/dev", false, true); err == nil {
			unix.Symlink("/proc/kcore", procFD(dirfd)+"/core")
			unix.Close(dirfd)
		}
	}
	return nil
}

func createDevice(rootfs string, d specs.LinuxDevice, userns bool) error {
	mode := uint32(0o666)
	if d.FileMode != nil {
		mode = uint32(d.FileMode.Perm())
	}
	var typ uint32
	switch d.Type {
	case "c", "u":
		typ = unix.S_IFCHR
	case "b":
		typ = unix.S_IFBLK
	case "p":
		typ = unix.S_IFIFO
	default:
		return fmt.Errorf("%w: device type %q", ErrInvalidSpec, d.Type)
	}
	dirfd, err := openIn(rootfs, path.Dir(d.Path), true, true)
	if err != nil {
		return err
	}
	defer unix.Close(dirfd)
	node := procFD(dirfd) + "/" + path.Base(d.Path)
	if !userns {
		unix.Unlink(node)
		err = unix.Mknod(node, typ|mode, int(unix.Mkdev(uint32(d.Major), uint32(d.Minor))))
		if err == nil {
			unix.Chmod(node, mode) // the umask is 0 in the init, but the caller's could have been kept
			if d.UID != nil || d.GID != nil {
				uid, gid := -1, -1
				if d.UID != nil {
					uid = int(*d.UID)
				}
				if d.GID != nil {
					gid = int(*d.GID)
				}
				return unix.Chown(node, uid, gid)
			}
			return nil
		}
		if !errors.Is(err, unix.EPERM) {
			return err
		}
	}
	// Bind the host's node (same path) on an empty file.
	fd, err := openIn(rootfs, d.Path, true, false)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Mount(d.Path, procFD(fd), "", unix.MS_BIND, "")
}

// pivotRoot makes rootfs the root and detaches the old one.
func pivotRoot(rootfs string) error {
	oldroot, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(oldroot)
	newroot, err := unix.Open(rootfs, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(newroot)
	if err := unix.Fchdir(newroot); err != nil {
		return err
	}
	// pivot_root(".", ".") stacks the old root on the new one; unmounting
	// "." afterwards (from the old root's fd) removes it.
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Fchdir(oldroot); err != nil {
		return err
	}
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return err
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detaching the old root: %w", err)
	}
	return unix.Chdir("/")
}

// maskPaths hides each path (after pivot_root): /dev/null bound over a
// file, an empty read-only tmpfs over a directory. Missing paths are fine.
func maskPaths(paths []string) error {
	for _, p := range paths {
		fd, err := openIn("/", p, false, false)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return fmt.Errorf("masking %s: %w", p, err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return err
		}
		t := procFD(fd)
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			err = unix.Mount("tmpfs", t, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=0")
		} else {
			err = unix.Mount("/dev/null", t, "", unix.MS_BIND, "")
		}
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("masking %s: %w", p, err)
		}
	}
	return nil
}

// readonlyPaths bind-mounts each path on itself read-only (after
// pivot_root). Missing paths are fine.
func readonlyPaths(paths []string) error {
	for _, p := range paths {
		fd, err := openIn("/", p, false, false)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read-only %s: %w", p, err)
		}
		err = unix.Mount(procFD(fd), procFD(fd), "", unix.MS_BIND|unix.MS_REC, "")
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("read-only %s: %w", p, err)
		}
		if err := remountReadonly(p); err != nil {
			return err
		}
	}
	return nil
}

// remountReadonly makes the mount at p (a container path) read-only.
func remountReadonly(p string) error {
	fd, err := openIn("/", p, false, false)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	t := procFD(fd)
	if err := unix.Mount("", t, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|lockedFlags(t), ""); err != nil {
		return fmt.Errorf("remounting %s read-only: %w", p, err)
	}
	return nil
}

// loopbackUp sets the loopback interface of the (new) network namespace up.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	return nil
}

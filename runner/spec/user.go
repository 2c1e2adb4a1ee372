package spec

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// maxEtcFile bounds what is read of the image's /etc/passwd or /etc/group.
const maxEtcFile = 8 << 20

// User is a process identity resolved in an image: what Generate puts in
// process.user, and the home directory for HOME.
type User struct {
	UID, GID       uint32
	AdditionalGids []uint32
	// Home is the user's home directory from /etc/passwd, "/" when the
	// user is not listed there.
	Home string
}

// passwdEntry is one line of /etc/passwd.
type passwdEntry struct {
	name     string
	uid, gid uint32
	home     string
}

// groupEntry is one line of /etc/group.
type groupEntry struct {
	name    string
	gid     uint32
	members []string
}

// ResolveUser resolves spec, "user[:group]" as in an image config's User or
// `berth run -u` (each part a name or a number; "" is root), against the
// image's own /etc/passwd and /etc/group under rootfs, following the
// image-spec rules: numbers are taken verbatim and need no files; a name
// must be listed, or the error wraps ErrUnknownUser or ErrUnknownGroup; the
// group defaults to the user's primary group from /etc/passwd (0 for a
// number not listed there); additional gids are the groups /etc/group
// lists the user as a member of, and are set only for a user given by
// name without a group.
//
// The files are read as the container would see them: openat2 with
// RESOLVE_IN_ROOT, so a symlink (such as /etc/passwd -> /host/etc/passwd)
// is resolved inside rootfs and never reaches the host's files; on kernels
// without openat2, any symlink on the way is refused instead.
func ResolveUser(rootfs, spec string) (User, error) {
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	if userPart == "" {
		if hasGroup {
			return User{}, fmt.Errorf("%w: user %q: empty user name", ErrInvalid, spec)
		}
		userPart = "0"
	}
	if hasGroup && groupPart == "" {
		return User{}, fmt.Errorf("%w: user %q: empty group name", ErrInvalid, spec)
	}
	if strings.ContainsAny(spec, "\n\x00") || strings.Count(spec, ":") > 1 {
		return User{}, fmt.Errorf("%w: user %q: want user[:group]", ErrInvalid, spec)
	}

	u := User{Home: "/"}
	uid, numeric, err := parseID(userPart)
	if err != nil {
		return User{}, fmt.Errorf("%w: user %q: %v", ErrInvalid, spec, err)
	}
	users, err := readPasswd(rootfs)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return User{}, err
	}
	var found *passwdEntry
	for i := range users {
		if numeric && users[i].uid == uid || !numeric && users[i].name == userPart {
			found = &users[i]
			break
		}
	}
	switch {
	case found != nil:
		u.UID, u.GID, u.Home = found.uid, found.gid, found.home
		if u.Home == "" {
			u.Home = "/"
		}
	case numeric:
		u.UID = uid
	default:
		if err != nil {
			return User{}, fmt.Errorf("%w: %q: the image has no /etc/passwd", ErrUnknownUser, userPart)
		}
		return User{}, fmt.Errorf("%w: %q is not in the image's /etc/passwd", ErrUnknownUser, userPart)
	}

	needGroups := hasGroup || (!numeric && found != nil)
	if !needGroups {
		return u, nil
	}
	gid, gnumeric, err := parseID(groupPart)
	if hasGroup && err != nil {
		return User{}, fmt.Errorf("%w: group %q: %v", ErrInvalid, groupPart, err)
	}
	if hasGroup && gnumeric {
		u.GID = gid
		return u, nil
	}
	groups, gerr := readGroup(rootfs)
	if gerr != nil && !errors.Is(gerr, fs.ErrNotExist) {
		return User{}, gerr
	}
	if hasGroup {
		for _, g := range groups {
			if g.name == groupPart {
				u.GID = g.gid
				return u, nil
			}
		}
		if gerr != nil {
			return User{}, fmt.Errorf("%w: %q: the image has no /etc/group", ErrUnknownGroup, groupPart)
		}
		return User{}, fmt.Errorf("%w: %q is not in the image's /etc/group", ErrUnknownGroup, groupPart)
	}
	// A user given by name, without a group: its memberships.
	seen := map[uint32]bool{u.GID: true}
	for _, g := range groups {
		if seen[g.gid] {
			continue
		}
		for _, m := range g.members {
			if m == found.name {
				seen[g.gid] = true
				u.AdditionalGids = append(u.AdditionalGids, g.gid)
				break
			}
		}
	}
	return u, nil
}

// parseID parses s as a uid or gid. numeric is false, with no error, when
// s is a name (does not start with a digit).
func parseID(s string) (id uint32, numeric bool, err error) {
	if s == "" || s[0] < '0' || s[0] > '9' {
		return 0, false, nil
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 1<<32-1 { // (uid_t)-1 is "no change", never an id
		return 0, true, fmt.Errorf("%q is not a valid id (0 to 4294967294)", s)
	}
	return uint32(n), true, nil
}

// readPasswd parses rootfs/etc/passwd; the error wraps fs.ErrNotExist if
// the image has none.
func readPasswd(rootfs string) ([]passwdEntry, error) {
	b, err := readInRoot(rootfs, "etc/passwd")
	if err != nil {
		return nil, err
	}
	var out []passwdEntry
	for _, f := range etcLines(b) {
		if len(f) < 4 || f[0] == "" {
			continue
		}
		uid, ok1 := atoi32(f[2])
		gid, ok2 := atoi32(f[3])
		if !ok1 || !ok2 {
			continue
		}
		e := passwdEntry{name: f[0], uid: uid, gid: gid}
		if len(f) > 5 {
			e.home = f[5]
		}
		out = append(out, e)
	}
	return out, nil
}

// readGroup parses rootfs/etc/group; the error wraps fs.ErrNotExist if the
// image has none.
func readGroup(rootfs string) ([]groupEntry, error) {
	b, err := readInRoot(rootfs, "etc/group")
	if err != nil {
		return nil, err
	}
	var out []groupEntry
	for _, f := range etcLines(b) {
		if len(f) < 3 || f[0] == "" {
			continue
		}
		gid, ok := atoi32(f[2])
		if !ok {
			continue
		}
		e := groupEntry{name: f[0], gid: gid}
		if len(f) > 3 && f[3] != "" {
			for _, m := range strings.Split(f[3], ",") {
				if m = strings.TrimSpace(m); m != "" {
					e.members = append(e.members, m)
				}
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// etcLines splits a colon-separated file into fields per line, skipping
// blank lines, comments and NIS compat entries (+name, -name).
func etcLines(b []byte) [][]string {
	var out [][]string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), maxEtcFile)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '+' || line[0] == '-' {
			continue
		}
		out = append(out, strings.Split(line, ":"))
	}
	return out
}

func atoi32(s string) (uint32, bool) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
	return uint32(n), err == nil
}

// readInRoot reads the regular file name (relative, no "..") inside
// rootfs as a process chrooted there would open it, without ever leaving
// rootfs. The error wraps fs.ErrNotExist when there is no such file.
func readInRoot(rootfs, name string) ([]byte, error) {
	root, err := unix.Open(rootfs, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: rootfs, Err: err}
	}
	defer unix.Close(root)
	const flags = unix.O_RDONLY | unix.O_NONBLOCK | unix.O_CLOEXEC | unix.O_NOCTTY
	fd, err := unix.Openat2(root, name, &unix.OpenHow{
		Flags:   flags,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	})
	if err == unix.ENOSYS || err == unix.EPERM { // no openat2 (or a seccomp filter refusing it)
		fd, err = openNoSymlinks(root, name, flags)
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: rootfs + "/" + name, Err: err}
	}
	f := os.NewFile(uintptr(fd), rootfs+"/"+name)
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: /%s in the image is not a regular file", ErrInvalid, name)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxEtcFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxEtcFile {
		return nil, fmt.Errorf("%w: /%s in the image is larger than %d bytes", ErrInvalid, name, maxEtcFile)
	}
	return b, nil
}

// openNoSymlinks opens name under dirfd component by component with
// O_NOFOLLOW: any symlink on the way fails with ELOOP (or ENOTDIR).
func openNoSymlinks(dirfd int, name string, flags int) (int, error) {
	parts := strings.Split(name, "/")
	cur := dirfd
	for i, p := range parts {
		if p == "" || p == "." || p == ".." {
			if cur != dirfd {
				unix.Close(cur)
			}
			return -1, unix.EINVAL
		}
		fl := unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
		if i == len(parts)-1 {
			fl = flags | unix.O_NOFOLLOW
		}
		fd, err := unix.Openat(cur, p, fl, 0)
		if cur != dirfd {
			unix.Close(cur)
		}
		if err != nil {
			return -1, err
		}
		cur = fd
	}
	return cur, nil
}

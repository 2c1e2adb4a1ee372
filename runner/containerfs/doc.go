// Package containerfs copies files into and out of a container's root as
// `docker cp` does, confined to it: every path inside the container is
// resolved with openat2(RESOLVE_IN_ROOT), so that a symlink in the
// container (absolute, or climbing with "..") resolves inside its root and
// never leads a read or a write onto the host; a tree is walked one name
// at a time with O_NOFOLLOW, symlinks copied as symlinks.
//
// Copies travel as tar streams (WriteTar, Extract), which is also the
// form of `berth cp -` on standard input and output. Plan decides, from
// what the source and the destination are, where the stream is unpacked
// and under which name, following docker's rules for files, directories
// and a trailing "/.".
//
// It may import the standard library and golang.org/x/sys only
// (depcheck_test.go); the caller finds the container's root (the
// container's /proc/PID/root while it runs, its mounted rootfs else).
package containerfs

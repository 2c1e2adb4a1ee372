package container

import (
	"errors"
	"fmt"
	"syscall"
)

// Errors of this package; returned errors wrap them (test with errors.Is).
var (
	// ErrInvalidSpec: the spec cannot be run (no process, no args, a
	// relative or missing rootfs, an unknown capability or mount option).
	ErrInvalidSpec = errors.New("invalid container spec")
	// ErrUnsupported: the spec asks for something this runtime does not do
	// (joining an existing namespace, a time namespace).
	ErrUnsupported = errors.New("unsupported by the berth runtime")
	// ErrNotFound: no container with that id.
	ErrNotFound = errors.New("no such container")
	// ErrExists: a container with that id or name exists already.
	ErrExists = errors.New("container exists")
	// ErrInvalidName: a container name that breaks docker's grammar
	// ([a-zA-Z0-9][a-zA-Z0-9_.-]+).
	ErrInvalidName = errors.New("invalid container name")
	// ErrRunning: the container runs, and the operation needs it stopped.
	ErrRunning = errors.New("container is running")
	// ErrNotRunning: the container does not run.
	ErrNotRunning = errors.New("container is not running")
)

// InitError is a failure of the container's init before the process was
// executed: Stage says what it was doing. Errno is the underlying errno
// when there is one (ENOENT for an executable that does not exist).
type InitError struct {
	Stage string
	Msg   string
	Errno syscall.Errno
}

func (e *InitError) Error() string { return fmt.Sprintf("container init: %s: %s", e.Stage, e.Msg) }

// Unwrap returns Errno, so that errors.Is(err, fs.ErrNotExist) works.
func (e *InitError) Unwrap() error {
	if e.Errno == 0 {
		return nil
	}
	return e.Errno
}

// ExitCode is the exit code a shell would give for this failure: 127 when
// the executable was not found, 126 when it could not be executed, 125
// for any other failure of the runtime (as docker run).
func (e *InitError) ExitCode() int {
	if e.Stage == stageExec {
		switch e.Errno {
		case syscall.ENOENT:
			return 127
		case syscall.EACCES, syscall.EPERM, syscall.ENOEXEC, syscall.EISDIR:
			return 126
		}
	}
	return 125
}

// ErrPaused: the container is paused (frozen), and the operation needs
// it running.
var ErrPaused = errors.New("container is paused")

// ErrNotPaused: unpause of a container that is not paused.
var ErrNotPaused = errors.New("container is not paused")

package spec

import "errors"

// Errors Generate returns, wrapped with %w and a message naming the value
// at fault; test with errors.Is.
var (
	// ErrInvalid: an option or an image config field is malformed: a user
	// that is not user[:group], an environment entry without a name, a bind
	// mount that is not /host:/container[:ro|rw], an unknown network mode,
	// a relative working directory, a negative limit.
	ErrInvalid = errors.New("spec: invalid option")
	// ErrNoCommand: neither the image nor the options give a command.
	ErrNoCommand = errors.New("spec: no command to run")
	// ErrUnknownUser: a user name the image's /etc/passwd does not list
	// (or the image has no /etc/passwd).
	ErrUnknownUser = errors.New("spec: unknown user")
	// ErrUnknownGroup: a group name the image's /etc/group does not list
	// (or the image has no /etc/group).
	ErrUnknownGroup = errors.New("spec: unknown group")
)

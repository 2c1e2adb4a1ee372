package view

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/berth-registry/berth/runner/container"
	"github.com/berth-registry/berth/runner/format"
)

// PsFormat returns `berth ps`' default --format, docker's columns that
// berth has, and SIZE with size.
func PsFormat(size bool) string {
	f := "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}"
	if size {
		f += "\t{{.Size}}"
	}
	return f
}

// ContainerHeaders are the column headers of ContainerRow's fields.
var ContainerHeaders = map[string]string{
	"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "RunningFor": "CREATED",
	"CreatedAt": "CREATED AT", "Status": "STATUS", "State": "STATE", "Size": "SIZE", "Names": "NAMES",
}

// commandWidth is where COMMAND is cut.
const commandWidth = 30

// ContainerRow is one line of `berth ps`, its fields as printed.
type ContainerRow struct {
	ID    string
	Image string
	// Command is the quoted command line, cut at 30 characters.
	Command string
	// RunningFor is the container's age ("5 minutes ago"), CreatedAt its
	// creation time.
	RunningFor string
	CreatedAt  string
	// Status is "Created", "Up 3 minutes" or "Exited (0) 2 seconds ago";
	// State is the bare status (created, running, exited).
	Status string
	State  string
	// Size is the writable layer and, in parentheses, it plus the image
	// ("12.3kB (virtual 80MB)"); empty unless SetSize was called.
	Size string
	// Names is "" : berth's containers are named by their IDs.
	Names string
}

// NewContainerRow returns the row of the container whose state is st.
func NewContainerRow(st container.State, now time.Time) ContainerRow {
	return ContainerRow{
		ID:         st.ID,
		Image:      st.Image,
		Command:    strconv.Quote(format.Ellipsis(strings.Join(st.Command, " "), commandWidth)),
		RunningFor: format.Ago(now, st.Created),
		CreatedAt:  st.Created.Local().Truncate(time.Second).String(),
		Status:     Status(st, now),
		State:      stateName(st),
	}
}

// SetSize fills in Size from the writable layer's size and the image's.
func (r *ContainerRow) SetSize(writable, image int64) {
	r.Size = fmt.Sprintf("%s (virtual %s)", format.Size(writable), format.Size(writable+image))
}

// Status is a container's STATUS as docker words it.
func Status(st container.State, now time.Time) string {
	switch st.Status {
	case container.StatusRunning:
		if st.Paused {
			return "Up " + format.Duration(now.Sub(st.Started)) + " (Paused)"
		}
		return "Up " + format.Duration(now.Sub(st.Started))
	case container.StatusExited:
		s := fmt.Sprintf("Exited (%d) %s", st.ExitCode, format.Ago(now, st.Finished))
		if st.OOMKilled {
			s += " (OOM killed)"
		}
		return s
	}
	return "Created"
}

// stateName is a container's bare state as docker names it: created,
// running, paused or exited.
func stateName(st container.State) string {
	if st.Status == container.StatusRunning && st.Paused {
		return "paused"
	}
	return st.Status
}

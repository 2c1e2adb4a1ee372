package view

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/berth-registry/berth/runner/container"
	"github.com/berth-registry/berth/runner/format"
)

// PsFormat returns `berth ps`' default --format: docker's columns
// (CONTAINER ID, IMAGE, COMMAND, CREATED, STATUS, PORTS, NAMES), and SIZE
// with size.
func PsFormat(size bool) string {
	f := "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
	if size {
		f += "\t{{.Size}}"
	}
	return f
}

// ContainerHeaders are the column headers of ContainerRow's fields.
var ContainerHeaders = map[string]string{
	"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "RunningFor": "CREATED",
	"CreatedAt": "CREATED AT", "Status": "STATUS", "State": "STATE", "Size": "SIZE", "Names": "NAMES",
	"Ports": "PORTS",
}

// commandWidth is where COMMAND is cut.
const commandWidth = 30

// ContainerRow is one line of `berth ps`, its fields as printed.
type ContainerRow struct {
	ID    string
	Image string
	// Command is the quoted command line, cut at 30 characters unless
	// the row is made with noTrunc.
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
	// Names is the container's name.
	Names string
	// Ports are the published ports ("" while berth publishes none).
	Ports string
}

// NewContainerRow returns the row of the container whose state is st;
// noTrunc keeps the whole command line.
func NewContainerRow(st container.State, now time.Time, noTrunc bool) ContainerRow {
	cmd := strings.Join(st.Command, " ")
	if !noTrunc {
		cmd = format.Ellipsis(cmd, commandWidth)
	}
	return ContainerRow{
		ID:         st.ID,
		Image:      st.Image,
		Command:    strconv.Quote(cmd),
		RunningFor: format.Ago(now, st.Created),
		CreatedAt:  st.Created.Local().Truncate(time.Second).String(),
		Status:     Status(st, now),
		State:      stateName(st),
		Names:      st.Name,
	}
}

// SetSize fills in Size from the writable layer's size and the image's.
func (r *ContainerRow) SetSize(writable, image int64) {
	r.Size = fmt.Sprintf("%s (virtual %s)", format.Size(writable), format.Size(writable+image))
}

// Status is a container's STATUS as docker words it: "Up 5 seconds",
// with "(healthy)", "(unhealthy)" or "(health: starting)" when it has a
// health check, "Restarting (1) 2 seconds ago", "Exited (0) ...".
func Status(st container.State, now time.Time) string {
	switch st.Status {
	case container.StatusRunning:
		if st.Paused {
			return "Up " + format.Duration(now.Sub(st.Started)) + " (Paused)"
		}
		s := "Up " + format.Duration(now.Sub(st.Started))
		switch h := healthStatus(st); h {
		case container.HealthStarting:
			s += " (health: starting)"
		case container.HealthHealthy, container.HealthUnhealthy:
			s += " (" + h + ")"
		}
		return s
	case container.StatusRestarting:
		return fmt.Sprintf("Restarting (%d) %s", st.ExitCode, format.Ago(now, st.Finished))
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
// running, paused, restarting or exited.
func stateName(st container.State) string {
	if st.Status == container.StatusRunning && st.Paused {
		return "paused"
	}
	return st.Status
}

// healthStatus is the container's health state: "none" without a health
// check, "starting" before its first result.
func healthStatus(st container.State) string {
	switch {
	case st.Healthcheck == nil || len(st.Healthcheck.Test) == 0 || st.Healthcheck.Test[0] == "NONE":
		return "none"
	case st.Health == nil || st.Health.Status == "":
		return container.HealthStarting
	}
	return st.Health.Status
}

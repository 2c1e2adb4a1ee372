package view

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berth-registry/berth/runner/container"
)

// ContainerFilter is `berth ps --filter`, parsed by ParseContainerFilters:
// values of one key are alternatives (any may match), different keys must
// all match, as docker's.
type ContainerFilter struct {
	names     []*regexp.Regexp
	ids       []string
	statuses  []string
	ancestors []string
	labels    []string
	exited    []int
	health    []string
}

// Container statuses `ps --filter status=` takes (docker's; berth's
// containers are never paused, removing or dead as ps sees them).
var filterStatuses = []string{"created", "restarting", "running", "removing", "paused", "exited", "dead"}

// Health states `ps --filter health=` takes.
var filterHealth = []string{"starting", "healthy", "unhealthy", "none"}

// ParseContainerFilters parses `ps --filter KEY=VALUE` arguments: name (a
// regular expression over the name), id (an ID prefix), status, ancestor
// (the image as named at run, or its ID or a prefix of it), label (KEY or
// KEY=VALUE, of the image's labels, which docker's containers inherit),
// exited (an exit code; exited containers only) and health (starting,
// healthy, unhealthy or none). Errors wrap ErrInvalidFilter.
func ParseContainerFilters(args []string) (ContainerFilter, error) {
	var f ContainerFilter
	for _, a := range args {
		key, value, ok := strings.Cut(a, "=")
		if !ok || value == "" {
			return ContainerFilter{}, fmt.Errorf("%w: %q: want KEY=VALUE", ErrInvalidFilter, a)
		}
		switch strings.ToLower(key) {
		case "name":
			re, err := regexp.Compile(strings.TrimPrefix(value, "/"))
			if err != nil {
				return ContainerFilter{}, fmt.Errorf("%w: %q: %v", ErrInvalidFilter, a, err)
			}
			f.names = append(f.names, re)
		case "id":
			f.ids = append(f.ids, value)
		case "status":
			if !slices.Contains(filterStatuses, value) {
				return ContainerFilter{}, fmt.Errorf("%w: %q: the statuses are %s", ErrInvalidFilter, a, strings.Join(filterStatuses, ", "))
			}
			f.statuses = append(f.statuses, value)
		case "ancestor":
			f.ancestors = append(f.ancestors, value)
		case "label":
			f.labels = append(f.labels, value)
		case "exited":
			n, err := strconv.Atoi(value)
			if err != nil {
				return ContainerFilter{}, fmt.Errorf("%w: %q: exited takes an exit code", ErrInvalidFilter, a)
			}
			f.exited = append(f.exited, n)
		case "health":
			if !slices.Contains(filterHealth, value) {
				return ContainerFilter{}, fmt.Errorf("%w: %q: the health states are %s", ErrInvalidFilter, a, strings.Join(filterHealth, ", "))
			}
			f.health = append(f.health, value)
		default:
			return ContainerFilter{}, fmt.Errorf("%w: %q: the keys are name, id, status, ancestor, label, exited and health", ErrInvalidFilter, key)
		}
	}
	return f, nil
}

// HasStatus reports whether the filter names statuses (then ps lists
// containers in any state, as with -a).
func (f ContainerFilter) HasStatus() bool { return len(f.statuses) > 0 || len(f.exited) > 0 }

// Match reports whether the container whose state is st passes the
// filter; labels are its image's labels.
func (f ContainerFilter) Match(st container.State, labels map[string]string) bool {
	any := func(n int, ok func(i int) bool) bool {
		if n == 0 {
			return true
		}
		for i := range n {
			if ok(i) {
				return true
			}
		}
		return false
	}
	imageID := strings.TrimPrefix(st.ImageID, "sha256:")
	return any(len(f.names), func(i int) bool { return f.names[i].MatchString(st.Name) }) &&
		any(len(f.ids), func(i int) bool { return strings.HasPrefix(st.ID, f.ids[i]) }) &&
		any(len(f.statuses), func(i int) bool { return f.statuses[i] == st.Status }) &&
		any(len(f.ancestors), func(i int) bool {
			a := f.ancestors[i]
			if a == st.Image || a == st.ImageID || (len(a) >= 4 && strings.HasPrefix(imageID, strings.TrimPrefix(a, "sha256:"))) {
				return true
			}
			// "busybox" matches a container of "busybox:latest", as
			// docker's ancestor filter takes an untagged name.
			return !strings.Contains(lastPathPart(a), ":") && !strings.Contains(a, "@") && st.Image == a+":latest"
		}) &&
		any(len(f.labels), func(i int) bool {
			k, v, hasValue := strings.Cut(f.labels[i], "=")
			got, ok := labels[k]
			return ok && (!hasValue || got == v)
		}) &&
		any(len(f.exited), func(i int) bool { return st.Status == container.StatusExited && st.ExitCode == f.exited[i] }) &&
		any(len(f.health), func(i int) bool { return f.health[i] == healthStatus(st) })
}

// lastPathPart is what follows the last "/" of s.
func lastPathPart(s string) string { return s[strings.LastIndex(s, "/")+1:] }

// PsOptions say which rows Inspector.Ps returns.
type PsOptions struct {
	// All lists containers in any state, not only running ones.
	All bool
	// Last (> 0) lists the Last containers created most recently, in any
	// state (docker's -n; -l is 1).
	Last int
	// Filter selects containers.
	Filter ContainerFilter
	// Size fills in the rows' Size; NoTrunc keeps whole commands.
	Size, NoTrunc bool
	// Now is the time ages are counted to.
	Now time.Time
}

// Ps returns the rows of `berth ps`, newest container first as docker
// lists them.
func (in Inspector) Ps(ctx context.Context, o PsOptions) ([]ContainerRow, error) {
	list, err := in.Containers.List()
	if err != nil {
		return nil, err
	}
	slices.Reverse(list)
	labels := map[string]map[string]string{}
	var rows []ContainerRow
	for _, c := range list {
		if o.Last > 0 && len(rows) >= o.Last {
			break
		}
		st, err := c.State()
		if err != nil {
			continue // removed meanwhile
		}
		if !o.All && o.Last == 0 && !o.Filter.HasStatus() && st.Status != container.StatusRunning && st.Status != container.StatusRestarting {
			continue
		}
		if len(o.Filter.labels) > 0 {
			if _, ok := labels[st.ImageID]; !ok {
				labels[st.ImageID] = nil
				if img, err := in.Images.Get(st.ImageID); err == nil {
					labels[st.ImageID] = img.Config.Config.Labels
				}
			}
		}
		if !o.Filter.Match(st, labels[st.ImageID]) {
			continue
		}
		row := NewContainerRow(st, o.Now, o.NoTrunc)
		if o.Size {
			rw, img, err := in.ContainerSizes(ctx, c, st)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, err
			}
			row.SetSize(rw, img)
		}
		rows = append(rows, row)
	}
	return rows, nil
}

package view

import (
	"slices"
	"strconv"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-registry/berth/runner/container"
	"github.com/berth-registry/berth/runner/format"
	"github.com/berth-registry/berth/runner/spec"
)

// Container is the document `berth inspect` prints for a container, in
// the shape of docker's container inspect, with what berth knows.
type Container struct {
	Id      string
	Created time.Time
	// Path and Args are the process's command line.
	Path  string
	Args  []string
	State ContainerState
	// Image is the ID of the image the container was made from.
	Image   string
	LogPath string
	// Name is "/" and the container's name, as docker prints it.
	Name         string
	RestartCount int
	Driver       string
	Platform     string
	HostConfig   HostConfig
	GraphDriver  GraphDriver
	// SizeRw and SizeRootFs are set by `inspect --size`: the writable
	// layer, and it plus the image.
	SizeRw     *int64 `json:",omitempty"`
	SizeRootFs *int64 `json:",omitempty"`
	Mounts     []MountPoint
	Config     Config
}

// ContainerState is the State of a container document.
type ContainerState struct {
	Status     string
	Running    bool
	Paused     bool
	Restarting bool
	OOMKilled  bool
	Dead       bool
	Pid        int
	ExitCode   int
	Error      string
	StartedAt  time.Time
	FinishedAt time.Time
	// Health is the health check's state, for a container that has one.
	Health *Health `json:",omitempty"`
}

// Health is docker's State.Health of a container document.
type Health struct {
	Status        string
	FailingStreak int
	Log           []HealthProbe
}

// HealthProbe is one result of the health check.
type HealthProbe struct {
	Start    time.Time
	End      time.Time
	ExitCode int
	Output   string
}

// RestartPolicy is docker's HostConfig.RestartPolicy.
type RestartPolicy struct {
	Name              string
	MaximumRetryCount int
}

// HostConfig is the part of docker's HostConfig berth has: the bind
// mounts, the network and the limits.
type HostConfig struct {
	Binds          []string
	NetworkMode    string
	AutoRemove     bool
	Privileged     bool
	ReadonlyRootfs bool
	Memory         int64
	MemorySwap     int64
	NanoCpus       int64
	CpuPeriod      int64
	CpuQuota       int64
	PidsLimit      *int64
	RestartPolicy  RestartPolicy
	// CapAdd and CapDrop are the capabilities the process has beyond
	// docker's defaults, and the defaults it lacks (not set when
	// privileged).
	CapAdd  []string
	CapDrop []string
	// SecurityOpt lists the confinement that differs from the default:
	// seccomp=unconfined, no-new-privileges=false.
	SecurityOpt []string
}

// GraphDriver says how the container's root filesystem is assembled:
// "overlay" with its directories, or "vfs" for a flat copy of the layers
// (where overlayfs does not work over the state directory).
type GraphDriver struct {
	Name string
	Data map[string]string
}

// MountPoint is one bind mount of the container.
type MountPoint struct {
	Type        string
	Source      string
	Destination string
	Mode        string
	RW          bool
	Propagation string
}

// ContainerSource is what a container document is made of.
type ContainerSource struct {
	// Container gives the ID and the directories.
	Container *container.Container
	State     container.State
	// Spec is the container's runtime config; nil if it cannot be read.
	Spec *specs.Spec
	// Image is the config of the container's image; nil if the image is
	// gone.
	Image *ocispec.Image
	// LowerDirs are the image's layer directories, top first (overlay's
	// lowerdir order).
	LowerDirs []string
}

// NewContainer returns the inspect document of a container.
func NewContainer(src ContainerSource) Container {
	st, c := src.State, src.Container
	doc := Container{
		Id:           c.ID,
		Created:      st.Created,
		Image:        st.ImageID,
		LogPath:      c.LogPath(),
		Name:         "/" + st.Name,
		RestartCount: st.RestartCount,
		Driver:       "overlay",
		// Docker's zero times are the zero time too (0001-01-01T00:00:00Z).
		State: ContainerState{
			Status:     stateName(st),
			Paused:     st.Paused,
			Running:    st.Status == container.StatusRunning,
			OOMKilled:  st.OOMKilled,
			Pid:        st.Pid,
			ExitCode:   st.ExitCode,
			Error:      st.Error,
			StartedAt:  st.Started,
			FinishedAt: st.Finished,
		},
		Mounts: []MountPoint{},
		Config: Config{Image: st.Image},
	}
	if st.Name == "" {
		doc.Name = "/" + format.TruncateID(c.ID) // made before names
	}
	switch st.Status {
	case container.StatusRestarting:
		doc.State.Restarting = true
	case container.StatusRunning:
		if hs := healthStatus(st); hs != "none" {
			doc.State.Health = &Health{Status: hs, Log: []HealthProbe{}}
			if h := st.Health; h != nil {
				doc.State.Health.FailingStreak = h.FailingStreak
				for _, p := range h.Log {
					doc.State.Health.Log = append(doc.State.Health.Log, HealthProbe(p))
				}
			}
		}
	}
	if h := st.Healthcheck; h != nil {
		doc.Config.Healthcheck = &Healthcheck{Test: h.Test, Interval: int64(h.Interval), Timeout: int64(h.Timeout),
			StartPeriod: int64(h.StartPeriod), Retries: h.Retries}
	}
	var imgCfg ocispec.ImageConfig
	if src.Image != nil {
		imgCfg = src.Image.Config
		doc.Platform = src.Image.OS
		doc.Config.Labels = imgCfg.Labels
		doc.Config.ExposedPorts = imgCfg.ExposedPorts
		doc.Config.Volumes = imgCfg.Volumes
		doc.Config.StopSignal = imgCfg.StopSignal
	}
	args := st.Command
	if s := src.Spec; s != nil {
		if s.Process != nil {
			args = s.Process.Args
			doc.Config.Env = s.Process.Env
			doc.Config.WorkingDir = s.Process.Cwd
			doc.Config.Tty = s.Process.Terminal
			if u := s.Process.User; u.UID != 0 || u.GID != 0 {
				doc.Config.User = strconv.FormatUint(uint64(u.UID), 10) + ":" + strconv.FormatUint(uint64(u.GID), 10)
			}
		}
		doc.Config.Hostname = s.Hostname
		if sig := s.Annotations[spec.StopSignalAnnotation]; sig != "" {
			doc.Config.StopSignal = sig
		}
		doc.HostConfig = hostConfig(s)
		for _, m := range spec.Binds(s) {
			mp := MountPoint{Type: "bind", Source: m.Source, Destination: m.Destination, RW: !m.ReadOnly, Propagation: "rprivate"}
			if m.ReadOnly {
				mp.Mode = "ro"
			}
			doc.Mounts = append(doc.Mounts, mp)
		}
	}
	doc.HostConfig.AutoRemove = st.AutoRemove
	doc.HostConfig.RestartPolicy = RestartPolicy{Name: st.RestartPolicy.Name, MaximumRetryCount: st.RestartPolicy.MaximumRetryCount}
	if doc.HostConfig.RestartPolicy.Name == "" {
		doc.HostConfig.RestartPolicy.Name = "no"
	}
	if len(args) > 0 {
		doc.Path, doc.Args = args[0], slices.Clone(args[1:])
	}
	if doc.Args == nil {
		doc.Args = []string{}
	}
	doc.Config.Entrypoint, doc.Config.Cmd = splitCommand(imgCfg.Entrypoint, args)
	if st.Flattened {
		doc.Driver = "vfs"
		doc.GraphDriver = GraphDriver{Name: "vfs", Data: map[string]string{"Dir": c.Rootfs()}}
	} else {
		doc.GraphDriver = GraphDriver{Name: "overlay", Data: map[string]string{
			"LowerDir":  strings.Join(src.LowerDirs, ":"),
			"UpperDir":  c.Upper(),
			"WorkDir":   c.Work(),
			"MergedDir": c.Rootfs(),
		}}
	}
	return doc
}

// splitCommand splits a container's command line into docker's
// Entrypoint and Cmd: the image's entrypoint when the command starts with
// it, else (an --entrypoint replaced it) the first word; the rest is Cmd.
func splitCommand(imageEntrypoint, args []string) (entrypoint, cmd []string) {
	switch {
	case len(args) == 0:
		return nil, nil
	case len(imageEntrypoint) == 0:
		return nil, slices.Clone(args)
	case len(args) >= len(imageEntrypoint) && slices.Equal(args[:len(imageEntrypoint)], imageEntrypoint):
		return slices.Clone(imageEntrypoint), slices.Clone(args[len(imageEntrypoint):])
	}
	return slices.Clone(args[:1]), slices.Clone(args[1:])
}

// hostConfig reads the binds, network and limits back from a runtime spec.
func hostConfig(s *specs.Spec) HostConfig {
	hc := HostConfig{NetworkMode: spec.NetworkHost}
	if s.Root != nil {
		hc.ReadonlyRootfs = s.Root.Readonly
	}
	for _, m := range spec.Binds(s) {
		b := m.Source + ":" + m.Destination
		if m.ReadOnly {
			b += ":ro"
		}
		hc.Binds = append(hc.Binds, b)
	}
	if s.Linux == nil {
		return hc
	}
	hc.Privileged = s.Linux.Seccomp == nil && len(s.Linux.MaskedPaths) == 0 &&
		(s.Linux.Resources == nil || len(s.Linux.Resources.Devices) == 0)
	if p := s.Process; p != nil {
		if p.Capabilities != nil && !hc.Privileged {
			defaults := spec.DefaultCapabilities()
			for _, c := range p.Capabilities.Bounding {
				if !slices.Contains(defaults, c) {
					hc.CapAdd = append(hc.CapAdd, c)
				}
			}
			for _, c := range defaults {
				if !slices.Contains(p.Capabilities.Bounding, c) {
					hc.CapDrop = append(hc.CapDrop, c)
				}
			}
		}
		if !p.NoNewPrivileges {
			hc.SecurityOpt = append(hc.SecurityOpt, "no-new-privileges=false")
		}
	}
	if s.Linux.Seccomp == nil && !hc.Privileged {
		hc.SecurityOpt = append(hc.SecurityOpt, "seccomp=unconfined")
	}
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			hc.NetworkMode = spec.NetworkNone
		}
	}
	if r := s.Linux.Resources; r != nil {
		if r.Memory != nil {
			if r.Memory.Limit != nil {
				hc.Memory = *r.Memory.Limit
			}
			if r.Memory.Swap != nil {
				hc.MemorySwap = *r.Memory.Swap
			}
		}
		if r.CPU != nil && r.CPU.Quota != nil && r.CPU.Period != nil && *r.CPU.Period > 0 {
			hc.CpuQuota, hc.CpuPeriod = *r.CPU.Quota, int64(*r.CPU.Period)
			hc.NanoCpus = *r.CPU.Quota * 1e9 / int64(*r.CPU.Period)
		}
		if r.Pids != nil && r.Pids.Limit != nil {
			limit := *r.Pids.Limit
			hc.PidsLimit = &limit
		}
	}
	return hc
}

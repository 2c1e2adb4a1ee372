package lifecycle

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-registry/berth/runner/container"
	"github.com/berth-registry/berth/runner/network"
	"github.com/berth-registry/berth/runner/spec"
)

// stateDirOf is the state directory of c (<state>/containers/<id>, see
// runner/container's layout).
func stateDirOf(c *container.Container) string { return filepath.Dir(filepath.Dir(c.Dir)) }

// OpenNetworks opens the networks of the state directory, with the
// environment's overrides (network.Open).
func OpenNetworks(stateDir string) (*network.Networks, error) {
	return network.Open(stateDir, os.Getenv)
}

// networkNames are what a container is called on its networks, as on
// docker's: its name and its id's first 12 digits.
func networkNames(st container.State) []string {
	short := st.ID
	if len(short) > 12 {
		short = short[:12]
	}
	if st.Name == "" || st.Name == short {
		return []string{short}
	}
	return []string{st.Name, short}
}

// specNetwork is the spec.Options network of a network mode: the host's
// namespace for host, else a new one (bridge networks get their eth0 when
// the container starts; container: modes join the other's at start).
func specNetwork(mode string) string {
	if mode == network.ModeHost {
		return spec.NetworkHost
	}
	return spec.NetworkNone
}

// checkSettings validates a container's network settings at create: a
// bridge network must exist, ports need one.
func checkSettings(stateDir string, s network.Settings) error {
	switch {
	case s.Mode == network.ModeNone || s.Mode == network.ModeHost:
	case strings.HasPrefix(s.Mode, network.ModeContainerPrefix):
		if strings.TrimPrefix(s.Mode, network.ModeContainerPrefix) == "" {
			return fmt.Errorf("%w: network %q: want container:NAME", spec.ErrInvalid, s.Mode)
		}
	default:
		nets, err := OpenNetworks(stateDir)
		if err != nil {
			return err
		}
		if _, err := nets.Get(s.Mode); err != nil {
			return err
		}
	}
	if len(s.Ports) > 0 && !s.Bridged() {
		return fmt.Errorf("%w: published ports need a bridge network, not --network %s", spec.ErrInvalid, s.Mode)
	}
	return nil
}

// addExposed adds the image's exposed ports to s.Ports (on free host
// ports), but those already published (-P).
func addExposed(s *network.Settings, exposed map[string]struct{}) error {
	keys := make([]string, 0, len(exposed))
	for k := range exposed {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		ports, err := network.ParseExposed(k)
		if err != nil {
			return err
		}
		for _, p := range ports {
			if !slices.ContainsFunc(s.Ports, func(q network.PortMapping) bool {
				return q.ContainerPort == p.ContainerPort && q.Proto == p.Proto
			}) {
				s.Ports = append(s.Ports, p)
			}
		}
	}
	return nil
}

// netRun is a container's network while it runs: the spec to run it with
// and the hooks that connect it, and done to call when it ended.
type netRun struct {
	spec  *specs.Spec
	hooks container.Hooks
	done  func() error
}

// prepareNetwork readies c's network (from its settings) for a run of s:
// a bridge network's attachment, or the namespace of the container it
// shares. The spec returned is s or a copy.
func prepareNetwork(c *container.Container, st container.State, s *specs.Spec) (netRun, error) {
	nr := netRun{spec: s, done: func() error { return nil }}
	set, err := network.LoadSettings(c.Dir)
	if err != nil {
		return nr, err
	}
	switch {
	case set.Bridged():
		nets, err := OpenNetworks(stateDirOf(c))
		if err != nil {
			return nr, err
		}
		names := networkNames(st)
		if s.Hostname != "" && s.Hostname != spec.DefaultHostname && !slices.Contains(names, s.Hostname) {
			names = append(names, s.Hostname)
		}
		att, err := nets.Attach(set.Mode, network.Request{ID: c.ID, Names: names, Hostname: s.Hostname,
			Lock: c.LockPath(), Dir: c.Dir, Ports: set.Ports})
		if err != nil {
			return nr, fmt.Errorf("container %s: %w", c.ID, err)
		}
		nr.spec = withMounts(s, att.Mounts(), "")
		nr.hooks.Created = att.Connect
		nr.done = att.Detach
	case strings.HasPrefix(set.Mode, network.ModeContainerPrefix):
		ref := strings.TrimPrefix(set.Mode, network.ModeContainerPrefix)
		store, err := container.OpenStore(stateDirOf(c))
		if err != nil {
			return nr, err
		}
		other, err := store.Get(ref)
		if err != nil {
			return nr, fmt.Errorf("network container:%s: %w", ref, err)
		}
		ost, err := other.State()
		if err != nil {
			return nr, err
		}
		if ost.Status != container.StatusRunning || ost.Pid == 0 {
			return nr, fmt.Errorf("network container:%s: container %s is not running", ref, other.ID)
		}
		nr.spec = withMounts(s, network.SharedMounts(other.Dir), fmt.Sprintf("/proc/%d/ns/net", ost.Pid))
	}
	return nr, nil
}

// withMounts returns a copy of s with mounts added and, with netns, the
// network namespace at that path joined.
func withMounts(s *specs.Spec, mounts []specs.Mount, netns string) *specs.Spec {
	out := *s
	out.Mounts = append(slices.Clone(s.Mounts), mounts...)
	if netns != "" && s.Linux != nil {
		lin := *s.Linux
		lin.Namespaces = slices.Clone(s.Linux.Namespaces)
		for i := range lin.Namespaces {
			if lin.Namespaces[i].Type == specs.NetworkNamespace {
				lin.Namespaces[i].Path = netns
			}
		}
		out.Linux = &lin
	}
	return &out
}

// ReclaimNetworks removes what containers of the state directory's
// networks left when their holder died (network.Networks.Reclaim): the
// cheap check berth makes where it lists containers.
func ReclaimNetworks(stateDir string) error {
	nets, err := OpenNetworks(stateDir)
	if err != nil {
		return err
	}
	return nets.Reclaim()
}

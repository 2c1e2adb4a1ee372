package spec

import (
	"fmt"
	"os"
	"path"
	"slices"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Network modes of Options.Network.
const (
	// NetworkNone gives the container a new network namespace with only
	// a loopback interface. It is the default.
	NetworkNone = "none"
	// NetworkHost shares the host's network namespace.
	NetworkHost = "host"
)

// Options are the caller's changes to what the image config says, the
// flags of `berth run` and `berth bundle`. The zero value runs the image
// as its config says, with the defaults of the package doc.
type Options struct {
	// Args, when not empty, replace the image's Cmd (the arguments given
	// after the image name).
	Args []string
	// Entrypoint, when not nil, replaces the image's Entrypoint and drops
	// its Cmd: the process runs Entrypoint followed by Args. An empty
	// non-nil slice clears the entrypoint (then Args is the command).
	Entrypoint []string
	// Env entries ("-e") are merged over the image's Env: K=V sets K; K
	// alone takes K's value from the host (LookupEnv), and changes nothing
	// if the host has no K.
	Env []string
	// LookupEnv reads the host's environment for Env entries without a
	// value; nil means os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// WorkingDir ("-w"), when set, replaces the image's WorkingDir; it must
	// be absolute. The default of both is "/".
	WorkingDir string
	// User ("-u"), when set, replaces the image's User: user[:group], names
	// or numbers, resolved by ResolveUser.
	User string
	// Hostname is the container's hostname; "" means DefaultHostname, or
	// the host's hostname with NetworkHost.
	Hostname string
	// Network is NetworkNone ("" too) or NetworkHost.
	Network string
	// UserNS runs the container in a new user namespace with the mapping
	// of the package doc.
	UserNS bool
	// Mounts are bind mounts from the host ("-v"); one whose destination
	// is that of a default mount replaces it.
	Mounts []Mount
	// Terminal gives the process a pseudo-terminal (and TERM=xterm unless
	// the environment sets TERM).
	Terminal bool
	// Memory limits the container's memory, in bytes, without swap; 0 means
	// no limit.
	Memory int64
	// CPUs limits the CPU time to this many CPUs (1.5 is one and a half);
	// 0 means no limit.
	CPUs float64
	// PidsLimit limits the number of processes; 0 means no limit.
	PidsLimit int64
	// ReadOnly mounts the rootfs read-only.
	ReadOnly bool
	// NOFILE is the soft and hard RLIMIT_NOFILE of the process; 0 means
	// DefaultRlimitNOFILE().
	NOFILE uint64
	// Security are the seccomp profile, capabilities, no_new_privs and
	// privileged mode; the zero value is the default confinement.
	Security Security
	// Warn, when not nil, receives a line for each thing Generate leaves
	// out of the image config (unsafe labels); nil drops them silently.
	Warn func(msg string)
}

// Mount is a bind mount of a host path into the container.
type Mount struct {
	// Source is the absolute host path.
	Source string
	// Destination is the absolute path in the container.
	Destination string
	// ReadOnly makes the mount read-only.
	ReadOnly bool
}

// ParseMount parses a "-v" value: /host/path:/container/path[:ro|:rw].
// Both paths must be absolute. Errors wrap ErrInvalid.
func ParseMount(s string) (Mount, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return Mount{}, fmt.Errorf("%w: mount %q: want /host:/container[:ro|rw]", ErrInvalid, s)
	}
	m := Mount{Source: parts[0], Destination: parts[1]}
	if len(parts) == 3 {
		switch parts[2] {
		case "ro":
			m.ReadOnly = true
		case "rw":
		default:
			return Mount{}, fmt.Errorf("%w: mount %q: option %q: want ro or rw", ErrInvalid, s, parts[2])
		}
	}
	if err := m.validate(); err != nil {
		return Mount{}, err
	}
	return m, nil
}

func (m Mount) validate() error {
	if !path.IsAbs(m.Source) {
		return fmt.Errorf("%w: mount source %q is not an absolute path", ErrInvalid, m.Source)
	}
	if !path.IsAbs(m.Destination) || path.Clean(m.Destination) == "/" {
		return fmt.Errorf("%w: mount destination %q is not an absolute path below /", ErrInvalid, m.Destination)
	}
	return nil
}

// unsafeLabelPrefixes are label keys that runtimes read as instructions
// (systemd unit properties for runc, crun's run.oci.* switches, CRIU
// configuration, other runtimes' knobs). Generate leaves them out of the
// annotations, as the image-spec allows, and says so through Options.Warn.
var unsafeLabelPrefixes = []string{
	"org.systemd.property.",
	"org.criu.",
	"run.oci.",
	"io.katacontainers.",
	"io.kubernetes.cri-o.",
	"io.containerd.",
}

// Generate returns the runtime config that runs the image whose config is
// cfg, with its root filesystem at rootfs (root.path; also where the
// image's /etc/passwd and /etc/group are read), changed by opts. See the
// package doc for what it holds.
//
// Errors wrap ErrInvalid, ErrNoCommand, ErrUnknownUser or ErrUnknownGroup,
// or are I/O errors reading the rootfs.
func Generate(cfg ocispec.Image, rootfs string, opts Options) (*specs.Spec, error) {
	ic := cfg.Config
	if err := checkOptions(&opts); err != nil {
		return nil, err
	}

	args, err := processArgs(ic.Entrypoint, ic.Cmd, opts)
	if err != nil {
		return nil, err
	}

	cwd := "/"
	switch {
	case opts.WorkingDir != "":
		cwd = path.Clean(opts.WorkingDir)
	case ic.WorkingDir != "":
		cwd = path.Join("/", ic.WorkingDir) // a relative WorkingDir is taken from /
	}

	userSpec := ic.User
	if opts.User != "" {
		userSpec = opts.User
	}
	user, err := ResolveUser(rootfs, userSpec)
	if err != nil {
		return nil, err
	}

	hostname := opts.Hostname
	if hostname == "" {
		hostname = DefaultHostname
		if opts.Network == NetworkHost {
			if h, err := os.Hostname(); err == nil {
				hostname = h
			}
		}
	}

	env, err := mergeEnv(ic.Env, opts)
	if err != nil {
		return nil, err
	}
	env = addDefaultEnv(env, "PATH", DefaultPath)
	env = addDefaultEnv(env, "HOSTNAME", hostname)
	env = addDefaultEnv(env, "HOME", user.Home)
	if opts.Terminal {
		env = addDefaultEnv(env, "TERM", "xterm")
	}

	nofile := opts.NOFILE
	if nofile == 0 {
		nofile = DefaultRlimitNOFILE()
	}
	caps, err := opts.Security.capabilities()
	if err != nil {
		return nil, err
	}
	noNewPrivs := true
	if opts.Security.NoNewPrivileges != nil {
		noNewPrivs = *opts.Security.NoNewPrivileges
	}
	privileged := opts.Security.Privileged
	s := &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: rootfs, Readonly: opts.ReadOnly},
		Process: &specs.Process{
			Terminal: opts.Terminal,
			User:     specs.User{UID: user.UID, GID: user.GID, AdditionalGids: user.AdditionalGids},
			Args:     args,
			Env:      env,
			Cwd:      cwd,
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  caps,
				Effective: slices.Clone(caps),
				Permitted: slices.Clone(caps),
			},
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: nofile, Soft: nofile}},
			NoNewPrivileges: noNewPrivs,
		},
		Hostname:    hostname,
		Mounts:      mounts(opts),
		Annotations: annotations(cfg, opts.Warn),
		Linux: &specs.Linux{
			Namespaces:    namespaces(opts),
			Devices:       linuxDevices(),
			Resources:     resources(opts),
			MaskedPaths:   MaskedPaths(),
			ReadonlyPaths: ReadonlyPaths(),
		},
	}
	if privileged {
		s.Linux.MaskedPaths, s.Linux.ReadonlyPaths = nil, nil
		s.Linux.Resources.Devices = nil // no device rules: every device
		s.Linux.Devices = privilegedDevices(s.Linux.Devices, opts.Security.Devices)
	}
	if s.Linux.Seccomp, err = opts.Security.seccompConfig(s); err != nil {
		return nil, err
	}
	if opts.UserNS {
		s.Linux.UIDMappings, s.Linux.GIDMappings = UserNSMappings(), UserNSMappings()
	}
	return s, nil
}

// checkOptions validates the options that are not checked where used.
func checkOptions(opts *Options) error {
	switch opts.Network {
	case "":
		opts.Network = NetworkNone
	case NetworkNone, NetworkHost:
	default:
		return fmt.Errorf("%w: network %q: want %s or %s", ErrInvalid, opts.Network, NetworkNone, NetworkHost)
	}
	if opts.WorkingDir != "" && !path.IsAbs(opts.WorkingDir) {
		return fmt.Errorf("%w: working directory %q is not absolute", ErrInvalid, opts.WorkingDir)
	}
	if h := opts.Hostname; len(h) > 64 || strings.ContainsAny(h, "/ \t\n\x00") {
		return fmt.Errorf("%w: hostname %q", ErrInvalid, h)
	}
	if opts.Memory < 0 || opts.PidsLimit < 0 || opts.CPUs < 0 {
		return fmt.Errorf("%w: negative resource limit", ErrInvalid)
	}
	if opts.CPUs > 0 && opts.CPUs*CPUPeriod < 1000 {
		return fmt.Errorf("%w: cpus %g: the smallest limit is 0.01", ErrInvalid, opts.CPUs)
	}
	for _, m := range opts.Mounts {
		if err := m.validate(); err != nil {
			return err
		}
	}
	return nil
}

// processArgs applies the image-spec rule (Entrypoint followed by Cmd) with
// the overrides of opts.
func processArgs(entrypoint, cmd []string, opts Options) ([]string, error) {
	if opts.Entrypoint != nil {
		entrypoint, cmd = opts.Entrypoint, nil
	}
	if len(opts.Args) > 0 {
		cmd = opts.Args
	}
	args := append(slices.Clone(entrypoint), cmd...)
	if len(args) == 0 {
		return nil, fmt.Errorf("%w: the image has neither Entrypoint nor Cmd, and no command was given", ErrNoCommand)
	}
	return args, nil
}

// mergeEnv applies opts.Env over the image's env, keeping the image's order
// and appending new names in the order given.
func mergeEnv(image []string, opts Options) ([]string, error) {
	lookup := opts.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	env := slices.Clone(image)
	for _, e := range opts.Env {
		name, value, hasValue := strings.Cut(e, "=")
		if name == "" || strings.ContainsAny(name, "\x00") {
			return nil, fmt.Errorf("%w: environment entry %q has no name", ErrInvalid, e)
		}
		if !hasValue {
			v, ok := lookup(name)
			if !ok {
				continue
			}
			value = v
		}
		env = setEnv(env, name, value)
	}
	return env, nil
}

// setEnv sets name=value in env, replacing every earlier entry of name.
func setEnv(env []string, name, value string) []string {
	kv := name + "=" + value
	replaced := false
	out := env[:0]
	for _, e := range env {
		if envName(e) == name {
			if replaced {
				continue
			}
			e, replaced = kv, true
		}
		out = append(out, e)
	}
	if !replaced {
		out = append(out, kv)
	}
	return out
}

// addDefaultEnv appends name=value unless env has name.
func addDefaultEnv(env []string, name, value string) []string {
	for _, e := range env {
		if envName(e) == name {
			return env
		}
	}
	return append(env, name+"="+value)
}

func envName(e string) string {
	name, _, _ := strings.Cut(e, "=")
	return name
}

// mounts returns the default mounts followed by the binds of opts; a bind
// onto the destination of a default mount replaces it.
func mounts(opts Options) []specs.Mount {
	binds := map[string]bool{}
	for _, m := range opts.Mounts {
		binds[path.Clean(m.Destination)] = true
	}
	var out []specs.Mount
	for _, m := range defaultMounts(opts.UserNS && opts.Network == NetworkHost, opts.Security.Privileged) {
		if !binds[m.Destination] {
			out = append(out, m)
		}
	}
	for _, m := range opts.Mounts {
		o := []string{"rbind", bindPropagation, "rw"}
		if m.ReadOnly {
			o[2] = "ro"
		}
		out = append(out, specs.Mount{Destination: path.Clean(m.Destination), Type: "bind", Source: m.Source, Options: o})
	}
	return out
}

// bindPropagation is the propagation of the binds of Options.Mounts; no
// default mount has it, which is how Binds tells them apart.
const bindPropagation = "rprivate"

// Binds returns the bind mounts of Options.Mounts that Generate put in s
// (the "-v" mounts), in order, without the default mounts.
func Binds(s *specs.Spec) []Mount {
	var out []Mount
	for _, m := range s.Mounts {
		if m.Type != "bind" || len(m.Options) != 3 || m.Options[0] != "rbind" || m.Options[1] != bindPropagation {
			continue
		}
		out = append(out, Mount{Source: m.Source, Destination: m.Destination, ReadOnly: m.Options[2] == "ro"})
	}
	return out
}

// namespaces returns the new namespaces of the container.
func namespaces(opts Options) []specs.LinuxNamespace {
	ns := []specs.LinuxNamespace{
		{Type: specs.PIDNamespace},
		{Type: specs.MountNamespace},
		{Type: specs.UTSNamespace},
		{Type: specs.IPCNamespace},
		{Type: specs.CgroupNamespace},
	}
	if opts.Network != NetworkHost {
		ns = append(ns, specs.LinuxNamespace{Type: specs.NetworkNamespace})
	}
	if opts.UserNS {
		ns = append(ns, specs.LinuxNamespace{Type: specs.UserNamespace})
	}
	return ns
}

// resources returns the device cgroup and the limits of opts.
func resources(opts Options) *specs.LinuxResources {
	r := &specs.LinuxResources{Devices: deviceAllowList()}
	if opts.Memory > 0 {
		limit, swap := opts.Memory, opts.Memory // memory+swap = memory: no swap
		r.Memory = &specs.LinuxMemory{Limit: &limit, Swap: &swap}
	}
	if opts.CPUs > 0 {
		quota, period := int64(opts.CPUs*CPUPeriod), uint64(CPUPeriod)
		r.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
	}
	if opts.PidsLimit > 0 {
		limit := opts.PidsLimit
		r.Pids = &specs.LinuxPids{Limit: &limit}
	}
	return r
}

// annotations returns the image-spec's implicit annotations of cfg,
// overridden by its labels (the labels take precedence), less the unsafe
// labels, which warn reports.
func annotations(cfg ocispec.Image, warn func(string)) map[string]string {
	const p = "org.opencontainers.image."
	a := map[string]string{}
	set := func(k, v string) {
		if v != "" {
			a[p+k] = v
		}
	}
	set("os", cfg.OS)
	set("architecture", cfg.Architecture)
	set("variant", cfg.Variant)
	set("os.version", cfg.OSVersion)
	set("os.features", strings.Join(cfg.OSFeatures, ","))
	set("author", cfg.Author)
	if cfg.Created != nil {
		set("created", cfg.Created.UTC().Format("2006-01-02T15:04:05.999999999Z07:00"))
	}
	set("stopSignal", cfg.Config.StopSignal)
	if len(cfg.Config.ExposedPorts) > 0 {
		ports := make([]string, 0, len(cfg.Config.ExposedPorts))
		for port := range cfg.Config.ExposedPorts {
			ports = append(ports, port)
		}
		slices.Sort(ports)
		set("exposedPorts", strings.Join(ports, ","))
	}
	keys := make([]string, 0, len(cfg.Config.Labels))
	for k := range cfg.Config.Labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
label:
	for _, k := range keys {
		for _, bad := range unsafeLabelPrefixes {
			if strings.HasPrefix(k, bad) {
				if warn != nil {
					warn(fmt.Sprintf("label %q left out of the runtime annotations: runtimes act on %s* annotations", k, bad))
				}
				continue label
			}
		}
		a[k] = cfg.Config.Labels[k]
	}
	if len(a) == 0 {
		return nil
	}
	return a
}

// privilegedDevices is the default devices and the host's, each path
// once.
func privilegedDevices(defaults, host []specs.LinuxDevice) []specs.LinuxDevice {
	out := slices.Clone(defaults)
	for _, d := range host {
		if !slices.ContainsFunc(out, func(o specs.LinuxDevice) bool { return o.Path == d.Path }) {
			out = append(out, d)
		}
	}
	return out
}

package spec_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-registry/berth/runner/spec"
)

// busyboxConfig is the config of the harness's busybox test image.
func busyboxConfig() ocispec.Image {
	return ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		Config: ocispec.ImageConfig{
			Env:        []string{"PATH=/bin", "GREETING=hello", "IMAGE_NAME=busybox"},
			Entrypoint: []string{"/bin/sh", "-c"},
			Cmd:        []string{"echo hi"},
			WorkingDir: "/app",
		},
	}
}

func generate(t *testing.T, cfg ocispec.Image, opts spec.Options) *specs.Spec {
	t.Helper()
	s, err := spec.Generate(cfg, fakeRootfs(t, testPasswd, testGroup), opts)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return s
}

func TestArgs(t *testing.T) {
	for _, tc := range []struct {
		name            string
		entrypoint, cmd []string
		optEP, optArgs  []string
		want            []string
		wantErr         error
	}{
		{name: "entrypoint and cmd", entrypoint: []string{"/bin/sh", "-c"}, cmd: []string{"echo hi"}, want: []string{"/bin/sh", "-c", "echo hi"}},
		{name: "cmd only", cmd: []string{"/bin/ls", "-l"}, want: []string{"/bin/ls", "-l"}},
		{name: "entrypoint only", entrypoint: []string{"/app/run"}, want: []string{"/app/run"}},
		{name: "args replace cmd", entrypoint: []string{"/bin/sh", "-c"}, cmd: []string{"echo hi"}, optArgs: []string{"exit 3"}, want: []string{"/bin/sh", "-c", "exit 3"}},
		{name: "args without entrypoint", cmd: []string{"/bin/ls"}, optArgs: []string{"/bin/echo", "x"}, want: []string{"/bin/echo", "x"}},
		{name: "entrypoint override drops cmd", entrypoint: []string{"/bin/sh", "-c"}, cmd: []string{"echo hi"}, optEP: []string{"/bin/echo"}, want: []string{"/bin/echo"}},
		{name: "entrypoint override with args", entrypoint: []string{"/bin/sh"}, cmd: []string{"x"}, optEP: []string{"/bin/echo"}, optArgs: []string{"a", "b"}, want: []string{"/bin/echo", "a", "b"}},
		{name: "empty entrypoint override", entrypoint: []string{"/bin/sh", "-c"}, cmd: []string{"echo hi"}, optEP: []string{}, optArgs: []string{"/bin/true"}, want: []string{"/bin/true"}},
		{name: "nothing", wantErr: spec.ErrNoCommand},
		{name: "empty override and no args", entrypoint: []string{"/bin/sh"}, cmd: []string{"x"}, optEP: []string{}, wantErr: spec.ErrNoCommand},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ocispec.Image{Config: ocispec.ImageConfig{Entrypoint: tc.entrypoint, Cmd: tc.cmd}}
			s, err := spec.Generate(cfg, t.TempDir(), spec.Options{Entrypoint: tc.optEP, Args: tc.optArgs})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Generate: %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(s.Process.Args, tc.want) {
				t.Errorf("args = %q, want %q", s.Process.Args, tc.want)
			}
		})
	}
	// The image config is not changed through shared slices.
	cfg := busyboxConfig()
	s := generate(t, cfg, spec.Options{})
	s.Process.Args[0] = "changed"
	if cfg.Config.Entrypoint[0] != "/bin/sh" {
		t.Error("Generate's args share the image config's Entrypoint array")
	}
}

func TestEnv(t *testing.T) {
	host := map[string]string{"FROM_HOST": "h", "GREETING": "from-host"}
	lookup := func(k string) (string, bool) { v, ok := host[k]; return v, ok }
	for _, tc := range []struct {
		name  string
		image []string
		opts  spec.Options
		want  []string
	}{
		{
			name:  "image env and defaults",
			image: []string{"PATH=/bin", "A=1"},
			want:  []string{"PATH=/bin", "A=1", "HOSTNAME=berth", "HOME=/root"},
		},
		{
			name:  "override keeps position, new names appended",
			image: []string{"PATH=/bin", "A=1", "B=2"},
			opts:  spec.Options{Env: []string{"A=x", "C=3", "B="}},
			want:  []string{"PATH=/bin", "A=x", "B=", "C=3", "HOSTNAME=berth", "HOME=/root"},
		},
		{
			name:  "name alone takes the host's value",
			image: []string{"GREETING=hello"},
			opts:  spec.Options{Env: []string{"GREETING", "FROM_HOST", "NOT_ON_HOST"}},
			want:  []string{"GREETING=from-host", "FROM_HOST=h", "PATH=" + spec.DefaultPath, "HOSTNAME=berth", "HOME=/root"},
		},
		{
			name:  "values with = and duplicates in the image",
			image: []string{"A=1", "A=2"},
			opts:  spec.Options{Env: []string{"A=x=y"}},
			want:  []string{"A=x=y", "PATH=" + spec.DefaultPath, "HOSTNAME=berth", "HOME=/root"},
		},
		{
			name:  "image values win over defaults",
			image: []string{"HOME=/custom", "PATH=/p", "TERM=dumb"},
			opts:  spec.Options{Terminal: true, Hostname: "box"},
			want:  []string{"HOME=/custom", "PATH=/p", "TERM=dumb", "HOSTNAME=box"},
		},
		{
			name:  "terminal",
			image: []string{"PATH=/bin"},
			opts:  spec.Options{Terminal: true, User: "app"},
			want:  []string{"PATH=/bin", "HOSTNAME=berth", "HOME=/home/app", "TERM=xterm"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.LookupEnv = lookup
			cfg := ocispec.Image{Config: ocispec.ImageConfig{Env: tc.image, Cmd: []string{"/bin/true"}}}
			s := generate(t, cfg, tc.opts)
			if !slices.Equal(s.Process.Env, tc.want) {
				t.Errorf("env = %q\nwant  %q", s.Process.Env, tc.want)
			}
		})
	}
	cfg := busyboxConfig()
	if _, err := spec.Generate(cfg, t.TempDir(), spec.Options{Env: []string{"=x"}}); !errors.Is(err, spec.ErrInvalid) {
		t.Errorf("env entry without a name: %v, want ErrInvalid", err)
	}
}

func TestCwdAndUser(t *testing.T) {
	cfg := busyboxConfig()
	s := generate(t, cfg, spec.Options{})
	if s.Process.Cwd != "/app" || s.Process.User.UID != 0 || s.Process.User.GID != 0 {
		t.Errorf("cwd %q user %+v, want /app 0:0", s.Process.Cwd, s.Process.User)
	}
	cfg.Config.WorkingDir = ""
	if s := generate(t, cfg, spec.Options{}); s.Process.Cwd != "/" {
		t.Errorf("cwd without WorkingDir = %q, want /", s.Process.Cwd)
	}
	cfg.Config.WorkingDir = "srv/app/"
	if s := generate(t, cfg, spec.Options{}); s.Process.Cwd != "/srv/app" {
		t.Errorf("cwd of a relative WorkingDir = %q, want /srv/app", s.Process.Cwd)
	}
	if s := generate(t, cfg, spec.Options{WorkingDir: "/tmp/"}); s.Process.Cwd != "/tmp" {
		t.Errorf("cwd with -w = %q, want /tmp", s.Process.Cwd)
	}
	if _, err := spec.Generate(cfg, t.TempDir(), spec.Options{WorkingDir: "tmp"}); !errors.Is(err, spec.ErrInvalid) {
		t.Errorf("relative -w: %v, want ErrInvalid", err)
	}

	cfg.Config.User = "app"
	s = generate(t, cfg, spec.Options{})
	if u := s.Process.User; u.UID != 1000 || u.GID != 1000 || !slices.Equal(u.AdditionalGids, []uint32{100, 10}) {
		t.Errorf("image User app: %+v", u)
	}
	if !slices.Contains(s.Process.Env, "HOME=/home/app") {
		t.Errorf("HOME not from passwd: %q", s.Process.Env)
	}
	s = generate(t, cfg, spec.Options{User: "65534:100"})
	if u := s.Process.User; u.UID != 65534 || u.GID != 100 || len(u.AdditionalGids) != 0 {
		t.Errorf("-u 65534:100 over image User: %+v", u)
	}
	cfg.Config.User = "ghost"
	if _, err := spec.Generate(cfg, fakeRootfs(t, testPasswd, testGroup), spec.Options{}); !errors.Is(err, spec.ErrUnknownUser) {
		t.Errorf("unknown image user: %v, want ErrUnknownUser", err)
	}
}

func TestCapabilities(t *testing.T) {
	want := []string{
		"CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
		"CAP_MKNOD", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP",
		"CAP_SETUID", "CAP_SYS_CHROOT",
	}
	s := generate(t, busyboxConfig(), spec.Options{})
	c := s.Process.Capabilities
	for name, set := range map[string][]string{"bounding": c.Bounding, "effective": c.Effective, "permitted": c.Permitted} {
		got := slices.Sorted(slices.Values(set))
		if !slices.Equal(got, want) {
			t.Errorf("%s = %q\nwant %q", name, got, want)
		}
	}
	if len(c.Inheritable) != 0 || len(c.Ambient) != 0 {
		t.Errorf("inheritable %q ambient %q, want none", c.Inheritable, c.Ambient)
	}
	if !s.Process.NoNewPrivileges {
		t.Error("noNewPrivileges is false")
	}
	want1 := spec.DefaultRlimitNOFILE()
	if r := s.Process.Rlimits; len(r) != 1 || r[0].Type != "RLIMIT_NOFILE" || r[0].Soft != want1 || r[0].Hard != want1 {
		t.Errorf("rlimits = %+v, want NOFILE %d", r, want1)
	}
	s = generate(t, busyboxConfig(), spec.Options{NOFILE: 4096})
	if r := s.Process.Rlimits; len(r) != 1 || r[0].Soft != 4096 || r[0].Hard != 4096 {
		t.Errorf("rlimits with NOFILE 4096 = %+v", r)
	}
}

func mountOf(s *specs.Spec, dest string) (specs.Mount, bool) {
	for _, m := range s.Mounts {
		if m.Destination == dest {
			return m, true
		}
	}
	return specs.Mount{}, false
}

func nsTypes(s *specs.Spec) []string {
	var out []string
	for _, n := range s.Linux.Namespaces {
		if n.Path != "" {
			continue
		}
		out = append(out, string(n.Type))
	}
	slices.Sort(out)
	return out
}

func TestDefaults(t *testing.T) {
	s := generate(t, busyboxConfig(), spec.Options{})
	wantMounts := map[string]string{
		"/proc": "proc", "/dev": "tmpfs", "/dev/pts": "devpts", "/dev/shm": "tmpfs",
		"/dev/mqueue": "mqueue", "/sys": "sysfs", "/sys/fs/cgroup": "cgroup",
	}
	if len(s.Mounts) != len(wantMounts) {
		t.Errorf("%d mounts, want %d: %+v", len(s.Mounts), len(wantMounts), s.Mounts)
	}
	for dest, typ := range wantMounts {
		m, ok := mountOf(s, dest)
		if !ok || m.Type != typ {
			t.Errorf("mount %s = %+v, want type %s", dest, m, typ)
		}
	}
	pts, _ := mountOf(s, "/dev/pts")
	for _, o := range []string{"newinstance", "ptmxmode=0666", "mode=0620", "gid=5"} {
		if !slices.Contains(pts.Options, o) {
			t.Errorf("/dev/pts lacks %s: %q", o, pts.Options)
		}
	}
	for dest, opt := range map[string]string{"/sys": "ro", "/sys/fs/cgroup": "ro", "/dev/shm": "size=65536k", "/dev": "mode=755"} {
		if m, _ := mountOf(s, dest); !slices.Contains(m.Options, opt) {
			t.Errorf("%s lacks %s: %q", dest, opt, m.Options)
		}
	}
	if got := nsTypes(s); !slices.Equal(got, []string{"cgroup", "ipc", "mount", "network", "pid", "uts"}) {
		t.Errorf("namespaces = %q", got)
	}
	if len(s.Linux.UIDMappings) != 0 {
		t.Errorf("uid mappings without UserNS: %+v", s.Linux.UIDMappings)
	}
	for _, p := range []string{"/proc/kcore", "/proc/keys", "/sys/firmware", "/sys/devices/virtual/powercap", "/proc/scsi"} {
		if !slices.Contains(s.Linux.MaskedPaths, p) {
			t.Errorf("%s not masked", p)
		}
	}
	if len(s.Linux.MaskedPaths) != 11 || len(s.Linux.ReadonlyPaths) != 5 || !slices.Contains(s.Linux.ReadonlyPaths, "/proc/sysrq-trigger") {
		t.Errorf("masked %q readonly %q", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	var devs []string
	for _, d := range s.Linux.Devices {
		devs = append(devs, d.Path)
		if d.Type != "c" || d.FileMode == nil || *d.FileMode != 0o666 {
			t.Errorf("device %+v", d)
		}
	}
	if want := []string{"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"}; !slices.Equal(devs, want) {
		t.Errorf("devices %q, want %q", devs, want)
	}
	// Device cgroup: deny everything first, then allow each default
	// device, read and write.
	rules := s.Linux.Resources.Devices
	if len(rules) == 0 || rules[0].Allow || rules[0].Access != "rwm" || rules[0].Major != nil {
		t.Fatalf("first device rule %+v, want deny all", rules)
	}
	for _, d := range s.Linux.Devices {
		ok := false
		for _, r := range rules {
			if r.Allow && r.Type == "c" && r.Major != nil && *r.Major == d.Major && r.Minor != nil && *r.Minor == d.Minor && strings.Contains(r.Access, "rw") {
				ok = true
			}
		}
		if !ok {
			t.Errorf("device %s (%d:%d) not allowed in the device cgroup", d.Path, d.Major, d.Minor)
		}
	}
	if s.Hostname != spec.DefaultHostname || s.Root.Readonly || s.Process.Terminal {
		t.Errorf("hostname %q readonly %v terminal %v", s.Hostname, s.Root.Readonly, s.Process.Terminal)
	}
	if r := s.Linux.Resources; r.Memory != nil || r.CPU != nil || r.Pids != nil {
		t.Errorf("limits without options: %+v", r)
	}
	if s.Version != specs.Version {
		t.Errorf("ociVersion %q", s.Version)
	}
}

func TestOptions(t *testing.T) {
	s := generate(t, busyboxConfig(), spec.Options{
		Network: spec.NetworkHost, Hostname: "box", ReadOnly: true, Terminal: true,
		Memory: 64 << 20, CPUs: 1.5, PidsLimit: 100,
		Mounts: []spec.Mount{{Source: "/srv/data", Destination: "/data", ReadOnly: true}, {Source: "/tmp/x", Destination: "/dev/shm/"}},
	})
	if got := nsTypes(s); slices.Contains(got, "network") {
		t.Errorf("host network still gets a network namespace: %q", got)
	}
	if s.Hostname != "box" || !s.Root.Readonly || !s.Process.Terminal {
		t.Errorf("hostname %q readonly %v terminal %v", s.Hostname, s.Root.Readonly, s.Process.Terminal)
	}
	r := s.Linux.Resources
	if r.Memory == nil || *r.Memory.Limit != 64<<20 || *r.Memory.Swap != 64<<20 {
		t.Errorf("memory = %+v", r.Memory)
	}
	if r.CPU == nil || *r.CPU.Quota != 150000 || *r.CPU.Period != 100000 {
		t.Errorf("cpu = %+v", r.CPU)
	}
	if r.Pids == nil || r.Pids.Limit == nil || *r.Pids.Limit != 100 {
		t.Errorf("pids = %+v", r.Pids)
	}
	m, ok := mountOf(s, "/data")
	if !ok || m.Type != "bind" || m.Source != "/srv/data" || !slices.Contains(m.Options, "rbind") || !slices.Contains(m.Options, "ro") {
		t.Errorf("bind mount /data = %+v", m)
	}
	n := 0
	for _, m := range s.Mounts {
		if m.Destination == "/dev/shm" {
			n++
			if m.Type != "bind" || m.Source != "/tmp/x" || !slices.Contains(m.Options, "rw") {
				t.Errorf("/dev/shm bind = %+v", m)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d mounts at /dev/shm, want the bind alone", n)
	}
	wantBinds := []spec.Mount{{Source: "/srv/data", Destination: "/data", ReadOnly: true}, {Source: "/tmp/x", Destination: "/dev/shm"}}
	if got := spec.Binds(s); !slices.Equal(got, wantBinds) {
		t.Errorf("Binds = %+v, want %+v", got, wantBinds)
	}
	// The bind of /sys a user namespace on the host network gets is a
	// default mount, not a bind of Options.Mounts.
	if got := spec.Binds(generate(t, busyboxConfig(), spec.Options{UserNS: true, Network: spec.NetworkHost})); len(got) != 0 {
		t.Errorf("Binds without -v = %+v", got)
	}

	s = generate(t, busyboxConfig(), spec.Options{UserNS: true})
	if got := nsTypes(s); !slices.Contains(got, "user") || !slices.Contains(got, "network") {
		t.Errorf("userns namespaces = %q", got)
	}
	want := []specs.LinuxIDMapping{{ContainerID: 0, HostID: spec.UserNSHostID, Size: spec.UserNSSize}}
	if !slices.Equal(s.Linux.UIDMappings, want) || !slices.Equal(s.Linux.GIDMappings, want) {
		t.Errorf("mappings uid %+v gid %+v", s.Linux.UIDMappings, s.Linux.GIDMappings)
	}
	if m, _ := mountOf(s, "/sys"); m.Type != "sysfs" {
		t.Errorf("userns with its own network: /sys = %+v, want sysfs", m)
	}
	// A user namespace in the host's network namespace cannot mount sysfs.
	s = generate(t, busyboxConfig(), spec.Options{UserNS: true, Network: "host"})
	if m, _ := mountOf(s, "/sys"); m.Type != "bind" || !slices.Contains(m.Options, "ro") {
		t.Errorf("userns with host network: /sys = %+v, want a read-only bind", m)
	}

	for name, o := range map[string]spec.Options{
		"network":       {Network: "bridge"},
		"memory":        {Memory: -1},
		"cpus":          {CPUs: 0.001},
		"pids":          {PidsLimit: -5},
		"hostname":      {Hostname: "a b"},
		"relative bind": {Mounts: []spec.Mount{{Source: "data", Destination: "/data"}}},
		"bind onto /":   {Mounts: []spec.Mount{{Source: "/data", Destination: "/"}}},
	} {
		if _, err := spec.Generate(busyboxConfig(), t.TempDir(), o); !errors.Is(err, spec.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

func TestParseMount(t *testing.T) {
	for in, want := range map[string]spec.Mount{
		"/a:/b":    {Source: "/a", Destination: "/b"},
		"/a:/b:ro": {Source: "/a", Destination: "/b", ReadOnly: true},
		"/a:/b:rw": {Source: "/a", Destination: "/b"},
	} {
		if got, err := spec.ParseMount(in); err != nil || got != want {
			t.Errorf("ParseMount(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"/a", "a:/b", "/a:b", "/a:/b:rx", "/a:/b:ro:x", "/a:/"} {
		if got, err := spec.ParseMount(in); !errors.Is(err, spec.ErrInvalid) {
			t.Errorf("ParseMount(%q) = %+v, %v; want ErrInvalid", in, got, err)
		}
	}
}

func TestAnnotations(t *testing.T) {
	created := time.Date(2023, 11, 14, 22, 13, 20, 0, time.UTC)
	cfg := busyboxConfig()
	cfg.Created = &created
	cfg.Author = "someone"
	cfg.Variant = "v2"
	cfg.Config.StopSignal = "SIGQUIT"
	cfg.Config.ExposedPorts = map[string]struct{}{"8080/tcp": {}, "53/udp": {}}
	cfg.Config.Labels = map[string]string{
		"org.opencontainers.image.author":   "label wins",
		"com.example.x":                     "y",
		"org.systemd.property.ExecStopPost": "/bin/evil",
		"run.oci.hooks.stdout":              "/etc/shadow",
	}
	var warned []string
	s := generate(t, cfg, spec.Options{Warn: func(m string) { warned = append(warned, m) }})
	want := map[string]string{
		"org.opencontainers.image.os":           "linux",
		"org.opencontainers.image.architecture": "amd64",
		"org.opencontainers.image.variant":      "v2",
		"org.opencontainers.image.author":       "label wins",
		"org.opencontainers.image.created":      "2023-11-14T22:13:20Z",
		spec.StopSignalAnnotation:               "SIGQUIT",
		"org.opencontainers.image.exposedPorts": "53/udp,8080/tcp",
		"com.example.x":                         "y",
	}
	if len(s.Annotations) != len(want) {
		t.Errorf("annotations = %v\nwant %v", s.Annotations, want)
	}
	for k, v := range want {
		if s.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, s.Annotations[k], v)
		}
	}
	if len(warned) != 2 {
		t.Errorf("warnings = %q, want 2 (the unsafe labels)", warned)
	}
}

// TestJSON: the config marshals with the field names runc reads.
func TestJSON(t *testing.T) {
	s := generate(t, busyboxConfig(), spec.Options{PidsLimit: 10})
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ociVersion", "process", "root", "hostname", "mounts", "linux", "annotations"} {
		if _, ok := m[k]; !ok {
			t.Errorf("config.json lacks %q: %s", k, b)
		}
	}
	linux := m["linux"].(map[string]any)
	if _, ok := linux["resources"].(map[string]any)["pids"].(map[string]any)["limit"]; !ok {
		t.Errorf("pids limit missing: %s", b)
	}
}

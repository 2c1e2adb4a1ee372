package commit

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
)

// changeInstructions are the Dockerfile instructions a change may hold:
// those `docker commit --change` and `docker import --change` take.
var changeInstructions = []string{"CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}

// defaultShell runs the shell form of CMD and ENTRYPOINT when the config
// names no SHELL.
var defaultShell = []string{"/bin/sh", "-c"}

// ApplyChanges applies changes, each one or more Dockerfile lines, to cfg
// in order, as `docker commit -c` does: CMD and ENTRYPOINT in their JSON
// and shell forms (an ENTRYPOINT clears the CMD unless a change before it
// set one), ENV (`ENV a=b c=d` and `ENV a b`), EXPOSE, LABEL, ONBUILD,
// STOPSIGNAL, USER, VOLUME and WORKDIR (relative to the current one).
// Variables ($VAR, ${VAR:-x}) expand from the config's environment as the
// changes build it, as in a Dockerfile. Any other instruction, or a line
// the Dockerfile parser refuses, fails with ErrInvalidChange naming the
// change; cfg may then be half changed.
func ApplyChanges(cfg *dockerspec.DockerOCIImageConfig, changes []string) error {
	cmdSet := false
	for _, ch := range changes {
		if blank(ch) {
			continue
		}
		res, err := parser.Parse(strings.NewReader(ch))
		if err != nil {
			return fmt.Errorf("%w: %q: %v", ErrInvalidChange, ch, err)
		}
		for _, node := range res.AST.Children {
			name := strings.ToUpper(node.Value)
			if !slices.Contains(changeInstructions, name) {
				return fmt.Errorf("%w: %q: %s cannot be changed here (only %s)",
					ErrInvalidChange, node.Original, name, strings.Join(changeInstructions, ", "))
			}
			cmd, err := instructions.ParseInstruction(node)
			if err != nil {
				return fmt.Errorf("%w: %q: %v", ErrInvalidChange, node.Original, err)
			}
			if err := apply(cfg, cmd, &cmdSet); err != nil {
				return fmt.Errorf("%w: %q: %v", ErrInvalidChange, node.Original, err)
			}
		}
	}
	return nil
}

// blank reports whether a change holds only empty lines and comments.
func blank(ch string) bool {
	for _, line := range strings.Split(ch, "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}

// apply applies one parsed instruction.
func apply(cfg *dockerspec.DockerOCIImageConfig, cmd any, cmdSet *bool) error {
	expand := expander(cfg.Env)
	if e, ok := cmd.(instructions.SupportsSingleWordExpansion); ok {
		if err := e.Expand(expand); err != nil {
			return err
		}
	}
	switch c := cmd.(type) {
	case *instructions.CmdCommand:
		cfg.Cmd = commandLine(cfg, c.ShellDependantCmdLine)
		*cmdSet = true
	case *instructions.EntrypointCommand:
		cfg.Entrypoint = commandLine(cfg, c.ShellDependantCmdLine)
		if !*cmdSet {
			cfg.Cmd = nil
		}
	case *instructions.EnvCommand:
		for _, kv := range c.Env {
			cfg.Env = setEnv(cfg.Env, kv.Key, kv.Value)
		}
	case *instructions.LabelCommand:
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		for _, kv := range c.Labels {
			cfg.Labels[kv.Key] = kv.Value
		}
	case *instructions.ExposeCommand:
		for _, p := range c.Ports {
			p, err := expand(p)
			if err != nil {
				return err
			}
			ports, err := exposedPorts(p)
			if err != nil {
				return err
			}
			if cfg.ExposedPorts == nil {
				cfg.ExposedPorts = map[string]struct{}{}
			}
			for _, port := range ports {
				cfg.ExposedPorts[port] = struct{}{}
			}
		}
	case *instructions.UserCommand:
		cfg.User = c.User
	case *instructions.WorkdirCommand:
		if c.Path == "" {
			return fmt.Errorf("WORKDIR needs a path")
		}
		wd := c.Path
		if !path.IsAbs(wd) {
			wd = path.Join("/", cfg.WorkingDir, wd)
		}
		cfg.WorkingDir = path.Clean(wd)
	case *instructions.VolumeCommand:
		for _, v := range c.Volumes {
			if v == "" {
				return fmt.Errorf("VOLUME with an empty path")
			}
			if c.Unset {
				delete(cfg.Volumes, v)
				continue
			}
			if cfg.Volumes == nil {
				cfg.Volumes = map[string]struct{}{}
			}
			cfg.Volumes[v] = struct{}{}
		}
	case *instructions.StopSignalCommand:
		if c.Signal == "" {
			return fmt.Errorf("STOPSIGNAL needs a signal")
		}
		cfg.StopSignal = c.Signal
	case *instructions.OnbuildCommand:
		cfg.OnBuild = append(cfg.OnBuild, c.Expression)
	default:
		return fmt.Errorf("%T is not a change", cmd)
	}
	return nil
}

// commandLine is the argument list of a CMD or ENTRYPOINT: the JSON form
// as written, the shell form run by the config's shell.
func commandLine(cfg *dockerspec.DockerOCIImageConfig, c instructions.ShellDependantCmdLine) []string {
	if !c.PrependShell || len(c.CmdLine) == 0 {
		return c.CmdLine
	}
	sh := cfg.Shell
	if len(sh) == 0 {
		sh = defaultShell
	}
	return append(slices.Clone(sh), strings.Join(c.CmdLine, " "))
}

// setEnv sets key=value in env, in place of an earlier value of key.
func setEnv(env []string, key, value string) []string {
	kv := key + "=" + value
	for i, e := range env {
		if k, _, _ := strings.Cut(e, "="); k == key {
			env[i] = kv
			return env
		}
	}
	return append(env, kv)
}

// envList is an environment as a Dockerfile's variable expansion reads it.
type envList []string

func (e envList) Get(key string) (string, bool) {
	for i := len(e) - 1; i >= 0; i-- {
		if k, v, _ := strings.Cut(e[i], "="); k == key {
			return v, true
		}
	}
	return "", false
}

func (e envList) Keys() []string {
	keys := make([]string, 0, len(e))
	for _, kv := range e {
		k, _, _ := strings.Cut(kv, "=")
		keys = append(keys, k)
	}
	return keys
}

// expander expands variables in a word from env.
func expander(env []string) instructions.SingleWordExpander {
	lex := shell.NewLex(parser.DefaultEscapeToken)
	return func(word string) (string, error) {
		out, _, err := lex.ProcessWord(word, envList(env))
		return out, err
	}
}

// exposedPorts turns an EXPOSE argument ("80", "53/udp", "8000-8002/tcp")
// into the config's "PORT/PROTO" keys.
func exposedPorts(arg string) ([]string, error) {
	ports, proto, ok := strings.Cut(arg, "/")
	if !ok {
		proto = "tcp"
	}
	proto = strings.ToLower(proto)
	if proto != "tcp" && proto != "udp" && proto != "sctp" {
		return nil, fmt.Errorf("EXPOSE %s: protocol %q is not tcp, udp or sctp", arg, proto)
	}
	lo, hi, isRange := strings.Cut(ports, "-")
	if !isRange {
		hi = lo
	}
	first, err1 := strconv.ParseUint(lo, 10, 16)
	last, err2 := strconv.ParseUint(hi, 10, 16)
	if err1 != nil || err2 != nil || first == 0 || last < first {
		return nil, fmt.Errorf("EXPOSE %s: not a port or port range", arg)
	}
	var out []string
	for p := first; p <= last; p++ {
		out = append(out, strconv.FormatUint(p, 10)+"/"+proto)
	}
	return out, nil
}

package commit

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"

	"github.com/berth-registry/berth/runner/build/dockerfile"
)

// changeInstructions are the Dockerfile instructions a change may hold:
// those `docker commit --change` and `docker import --change` take.
var changeInstructions = []string{"CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}

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
	expand := dockerfile.Expander(parser.DefaultEscapeToken, cfg.Env)
	if e, ok := cmd.(instructions.SupportsSingleWordExpansion); ok {
		if err := e.Expand(expand); err != nil {
			return err
		}
	}
	switch c := cmd.(type) {
	case *instructions.CmdCommand:
		cfg.Cmd = dockerfile.CommandLine(cfg.Shell, c.ShellDependantCmdLine)
		*cmdSet = true
	case *instructions.EntrypointCommand:
		cfg.Entrypoint = dockerfile.CommandLine(cfg.Shell, c.ShellDependantCmdLine)
		if !*cmdSet {
			cfg.Cmd = nil
		}
	case *instructions.EnvCommand:
		for _, kv := range c.Env {
			cfg.Env = dockerfile.SetEnv(cfg.Env, kv.Key, kv.Value)
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
			ports, err := dockerfile.ExposedPorts(p)
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

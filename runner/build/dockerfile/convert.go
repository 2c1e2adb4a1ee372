package dockerfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// HistoryComment is the comment of the history entries of a build, the
// one BuildKit's Dockerfile frontend writes.
const HistoryComment = "buildkit.dockerfile.v0"

// Network modes of RUN steps.
const (
	NetworkHost = "host"
	NetworkNone = "none"
)

// Options are Convert's inputs besides the Dockerfile.
type Options struct {
	// Name is the Dockerfile's name in messages; "" is "Dockerfile".
	Name string
	// BuildArgs are the --build-arg values.
	BuildArgs map[string]string
	// Target names the stage to build; "" is the last one.
	Target string
	// Network is the network of RUN steps without --network:
	// NetworkHost ("" too) or NetworkNone.
	Network string
	// Labels (--label) are set on the target's config after the
	// Dockerfile's own.
	Labels map[string]string
	// Platform is the build's platform: scratch stages get it, and the
	// TARGET* and BUILD* arguments describe it.
	Platform ocispec.Platform
}

// Image is a base image as a Resolver returns it.
type Image struct {
	// ID is its config digest.
	ID digest.Digest
	// Config is its config.
	Config dockerspec.DockerOCIImage
}

// Resolver returns the image ref names (a FROM or COPY --from image, as
// the Dockerfile writes it once expanded).
type Resolver func(ref string) (Image, error)

// Plan is a Dockerfile converted: the stages the target needs.
type Plan struct {
	// Stages are the needed stages, in Dockerfile order; the last one is
	// the target.
	Stages []*Stage
	// UnusedArgs are the build args no ARG of the needed stages (or
	// before the first FROM) declares, sorted, for docker's warning.
	UnusedArgs []string
}

// Stage is one stage of a Plan.
type Stage struct {
	// Name is the stage's name (AS), lower case, or "".
	Name string
	// Index is the stage's position in the Dockerfile, from 0.
	Index int
	// Base is the FROM argument, expanded.
	Base string
	// BaseStage is the index in Plan.Stages of the stage Base names; -1
	// for an image or scratch.
	BaseStage int
	// BaseImage is the image Base names; nil for scratch or a stage.
	BaseImage *Image
	// Steps are the filesystem-changing instructions, in order.
	Steps []Step
	// Config is the stage's image config once every instruction is
	// applied: the base's with the stage's changes and one history entry
	// per instruction that writes one (without times). Its
	// RootFS.DiffIDs are the base's; the executor appends one per Step.
	Config dockerspec.DockerOCIImage
}

// DisplayName is how progress names the stage: its name, or stage-N.
func (s *Stage) DisplayName() string {
	if s.Name != "" {
		return s.Name
	}
	return "stage-" + strconv.Itoa(s.Index)
}

// Kind is what a Step does.
type Kind int

// The kinds of Step.
const (
	// Run runs Args in a container of the stage's filesystem.
	Run Kind = iota + 1
	// Copy copies files in (COPY and ADD).
	Copy
	// Workdir creates the directory Dir (owned by User).
	Workdir
)

// Step is one filesystem-changing instruction: one layer.
type Step struct {
	Kind Kind
	// Name is the instruction as progress shows it ("RUN echo hi").
	Name string
	// Line is its line in the Dockerfile (0 for an ONBUILD trigger).
	Line int
	// Args is the process of a Run: the shell form already wrapped in
	// the stage's shell.
	Args []string
	// Env is a Run's environment: the config's and the ARGs in scope.
	Env []string
	// User is who a Run runs as, or who owns the directories a Workdir
	// creates; "" is root.
	User string
	// Dir is a Run's working directory, or the directory a Workdir
	// creates.
	Dir string
	// Network is a Run's network: NetworkHost or NetworkNone.
	Network string
	// Mounts are a Run's --mount flags (and its heredoc script), in
	// order.
	Mounts []Mount
	// Copy is what a Copy copies.
	Copy *CopySpec
	// CreatedBy is the history entry the step writes, for cache keys.
	CreatedBy string
}

// CopySpec is the what and where of a COPY or ADD.
type CopySpec struct {
	// Add is set for ADD: local archives are unpacked.
	Add bool
	// FromStage is the index in Plan.Stages of the stage --from names; -1
	// for the build context or an image.
	FromStage int
	// FromImage is the image --from names; nil for the build context or
	// a stage.
	FromImage *Image
	// Sources are the source paths as written (expanded), relative to
	// the source's root; they may hold wildcards. An ADD's URLs are left
	// out of them.
	Sources []string
	// URLs are an ADD's http(s) sources, fetched and copied as files
	// (never unpacked), after Sources.
	URLs []string
	// Checksum (ADD --checksum) is the digest the single URL's content
	// must have.
	Checksum digest.Digest
	// Contents are the files of heredocs (COPY <<EOF name).
	Contents []Content
	// Dest is the destination, absolute (relative ones are taken from
	// the working directory); a trailing "/" says it is a directory.
	Dest string
	// Chown (--chown) is the owner of what is copied, user[:group]; ""
	// is root.
	Chown string
	// Chmod (--chmod) is the octal mode of what is copied, or 0.
	Chmod uint32
}

// Content is a file given inline by a heredoc.
type Content struct {
	Name, Data string
}

// predefinedArgs are the build args every Dockerfile may use without
// declaring them: the proxy settings, passed to RUN steps, and never
// warned about.
var predefinedArgs = []string{
	"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
	"NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
}

// parsedStage is a stage as parsed, before conversion.
type parsedStage struct {
	name, base string // base expanded with the global args
	line       int
	commands   []command
}

// command is a parsed instruction and its node.
type command struct {
	cmd  instructions.Command
	node *parser.Node
}

// converter holds what the stages of one conversion share.
type converter struct {
	opts    Options
	resolve Resolver
	lex     *shell.Lex
	escape  rune
	global  EnvList // the ARGs before the first FROM, and the platform args
	used    map[string]bool
	parsed  []parsedStage
	plan    *Plan
	planned map[int]int // Dockerfile stage index -> Plan.Stages index
}

// Convert parses the Dockerfile df and converts the stages the target
// needs into a Plan. Errors wrap ErrSyntax (naming the file, the line and
// the instruction), ErrInvalid, ErrUnsupported, or the Resolver's.
func Convert(df []byte, opts Options, resolve Resolver) (*Plan, error) {
	if opts.Name == "" {
		opts.Name = "Dockerfile"
	}
	if opts.Network == "" {
		opts.Network = NetworkHost
	}
	res, err := parser.Parse(bytes.NewReader(df))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrSyntax, opts.Name, locate(err))
	}
	c := &converter{
		opts: opts, resolve: resolve, escape: res.EscapeToken, lex: shell.NewLex(res.EscapeToken),
		used: map[string]bool{}, plan: &Plan{}, planned: map[int]int{},
	}
	c.global = platformArgs(opts.Platform)
	if err := c.parse(res.AST); err != nil {
		return nil, err
	}
	target := len(c.parsed) - 1
	if opts.Target != "" {
		target = c.stageIndex(strings.ToLower(opts.Target), len(c.parsed))
		if target < 0 {
			return nil, fmt.Errorf("%w: %s: target stage %q could not be found", ErrInvalid, opts.Name, opts.Target)
		}
	}
	needed := map[int]bool{}
	if err := c.need(target, needed); err != nil {
		return nil, err
	}
	for i := range c.parsed {
		if !needed[i] {
			continue
		}
		st, err := c.convertStage(i)
		if err != nil {
			return nil, err
		}
		c.planned[i] = len(c.plan.Stages)
		c.plan.Stages = append(c.plan.Stages, st)
	}
	final := c.plan.Stages[len(c.plan.Stages)-1]
	if len(opts.Labels) > 0 {
		if final.Config.Config.Labels == nil {
			final.Config.Config.Labels = map[string]string{}
		}
		for k, v := range opts.Labels {
			final.Config.Config.Labels[k] = v
		}
	}
	for k := range opts.BuildArgs {
		if !c.used[k] && !slices.Contains(predefinedArgs, k) {
			c.plan.UnusedArgs = append(c.plan.UnusedArgs, k)
		}
	}
	sort.Strings(c.plan.UnusedArgs)
	return c.plan, nil
}

// locate renders a parser error with its line when it has one.
func locate(err error) string {
	var le *parser.LocationError
	if errors.As(err, &le) && len(le.Locations) > 0 && len(le.Locations[0]) > 0 {
		return fmt.Sprintf("line %d: %v", le.Locations[0][0].Start.Line, err)
	}
	return err.Error()
}

// syntaxError names the file, the line and the instruction of a refused
// node.
func (c *converter) syntaxError(n *parser.Node, err error) error {
	return fmt.Errorf("%w: %s:%d: %s: %v", ErrSyntax, c.opts.Name, n.StartLine, strings.TrimSpace(n.Original), err)
}

// instrError names the file, the line and the instruction of a command
// that failed to convert; err carries its class.
func (c *converter) instrError(n *parser.Node, err error) error {
	if n == nil {
		return fmt.Errorf("%s: ONBUILD trigger: %w", c.opts.Name, err)
	}
	return fmt.Errorf("%s:%d: %s: %w", c.opts.Name, n.StartLine, strings.TrimSpace(n.Original), err)
}

// parse turns the AST into stages, and the ARGs before the first FROM
// into the global scope.
func (c *converter) parse(ast *parser.Node) error {
	for _, n := range ast.Children {
		v, err := instructions.ParseInstruction(n)
		if err != nil {
			return c.syntaxError(n, err)
		}
		switch cmd := v.(type) {
		case *instructions.Stage:
			base, _, err := c.lex.ProcessWord(cmd.BaseName, c.global)
			if err != nil {
				return c.syntaxError(n, err)
			}
			if base == "" {
				return c.syntaxError(n, errors.New("base name (FROM) cannot be empty"))
			}
			c.parsed = append(c.parsed, parsedStage{name: cmd.Name, base: base, line: n.StartLine})
		case *instructions.ArgCommand:
			if len(c.parsed) == 0 {
				if err := c.globalArg(cmd); err != nil {
					return c.syntaxError(n, err)
				}
				continue
			}
			c.add(cmd, n)
		case instructions.Command:
			if len(c.parsed) == 0 {
				return c.syntaxError(n, errors.New("no build stage in current context (the first instruction must be FROM)"))
			}
			c.add(cmd, n)
		default:
			return c.syntaxError(n, fmt.Errorf("%T is not a command", v))
		}
	}
	if len(c.parsed) == 0 {
		return fmt.Errorf("%w: %s: no build stage (the file has no FROM)", ErrSyntax, c.opts.Name)
	}
	return nil
}

func (c *converter) add(cmd instructions.Command, n *parser.Node) {
	st := &c.parsed[len(c.parsed)-1]
	st.commands = append(st.commands, command{cmd: cmd, node: n})
}

// globalArg adds an ARG before the first FROM to the global scope: the
// build arg's value, else its default expanded.
func (c *converter) globalArg(cmd *instructions.ArgCommand) error {
	for _, a := range cmd.Args {
		c.used[a.Key] = true
		if v, ok := c.opts.BuildArgs[a.Key]; ok {
			c.global = EnvList(SetEnv(slices.Clone(c.global), a.Key, v))
			continue
		}
		if a.Value == nil {
			continue
		}
		v, _, err := c.lex.ProcessWord(*a.Value, c.global)
		if err != nil {
			return err
		}
		c.global = EnvList(SetEnv(slices.Clone(c.global), a.Key, v))
	}
	return nil
}

// platformArgs are the automatic platform ARGs, in the global scope.
func platformArgs(p ocispec.Platform) EnvList {
	plat := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		plat += "/" + p.Variant
	}
	var env EnvList
	for _, pre := range []string{"TARGET", "BUILD"} {
		env = append(env, pre+"PLATFORM="+plat, pre+"OS="+p.OS, pre+"ARCH="+p.Architecture, pre+"VARIANT="+p.Variant)
	}
	return env
}

// stageIndex returns the index of the stage among the first n named name
// (lower case) or numbered name; -1 if none.
func (c *converter) stageIndex(name string, n int) int {
	for i := 0; i < n && i < len(c.parsed); i++ {
		if c.parsed[i].name != "" && c.parsed[i].name == name {
			return i
		}
	}
	if i, err := strconv.Atoi(name); err == nil && i >= 0 && i < n {
		return i
	}
	return -1
}

// baseStage is the index of the earlier stage stage i's FROM names, or -1.
func (c *converter) baseStage(i int) int {
	base := strings.ToLower(c.parsed[i].base)
	for j := 0; j < i; j++ {
		if c.parsed[j].name != "" && c.parsed[j].name == base {
			return j
		}
	}
	return -1
}

// fromStage is the index of the stage a COPY --from of stage i names, or
// -1 for an image. A later stage is refused.
func (c *converter) fromStage(i int, from string) (int, error) {
	from = strings.ToLower(from)
	if j := c.stageIndex(from, i); j >= 0 {
		return j, nil
	}
	if j := c.stageIndex(from, len(c.parsed)); j >= 0 {
		return -1, fmt.Errorf("%w: cannot copy from stage %q, it needs to be defined before the current stage", ErrInvalid, from)
	}
	return -1, nil
}

// need marks stage i and the stages it uses (its base, COPY --from).
func (c *converter) need(i int, needed map[int]bool) error {
	if needed[i] {
		return nil
	}
	needed[i] = true
	if b := c.baseStage(i); b >= 0 {
		if err := c.need(b, needed); err != nil {
			return err
		}
	}
	for _, cmd := range c.parsed[i].commands {
		var froms []string
		switch x := cmd.cmd.(type) {
		case *instructions.CopyCommand:
			if x.From != "" {
				from, _, err := c.lex.ProcessWord(x.From, c.global)
				if err != nil {
					return c.syntaxError(cmd.node, err)
				}
				froms = append(froms, from)
			}
		case *instructions.RunCommand:
			for _, m := range instructions.GetMounts(x) {
				if m.From != "" {
					froms = append(froms, m.From)
				}
			}
		}
		for _, from := range froms {
			j, err := c.fromStage(i, from)
			if err != nil {
				return c.instrError(cmd.node, err)
			}
			if j >= 0 {
				if err := c.need(j, needed); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// stageState is the state of one stage while its instructions are
// converted.
type stageState struct {
	cfg    *dockerspec.DockerOCIImage
	env    EnvList                             // the config's Env and the ARGs with values, as RUN sees them
	args   []instructions.KeyValuePairOptional // the stage's ARGs, in order, with their values
	cmdSet bool                                // a CMD of this stage was seen
	steps  []Step
}

// convertStage converts parsed stage i (whose needed stages are
// converted).
func (c *converter) convertStage(i int) (*Stage, error) {
	p := c.parsed[i]
	st := &Stage{Name: p.name, Index: i, Base: p.base, BaseStage: -1}
	var cfg dockerspec.DockerOCIImage
	switch b := c.baseStage(i); {
	case b >= 0:
		st.BaseStage = c.planned[b]
		cfg = cloneConfig(c.plan.Stages[st.BaseStage].Config)
	case strings.EqualFold(p.base, "scratch"):
		cfg = dockerspec.DockerOCIImage{Image: ocispec.Image{Platform: c.opts.Platform}}
		cfg.RootFS.Type = "layers"
		cfg.Config.WorkingDir = "/"
		cfg.Config.Env = []string{"PATH=" + DefaultPath}
	default:
		img, err := c.resolve(p.base)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: FROM %s: %w", c.opts.Name, p.line, p.base, err)
		}
		st.BaseImage = &img
		cfg = cloneConfig(img.Config)
		cfg.RootFS.Type = "layers"
	}
	if _, ok := EnvList(cfg.Config.Env).Get("PATH"); !ok {
		cfg.Config.Env = append(cfg.Config.Env, "PATH="+DefaultPath)
	}
	triggers := cfg.Config.OnBuild
	cfg.Config.OnBuild = nil
	s := &stageState{cfg: &cfg, env: EnvList(slices.Clone(cfg.Config.Env))}

	cmds := make([]command, 0, len(triggers)+len(p.commands))
	for _, t := range triggers {
		res, err := parser.Parse(strings.NewReader(t))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: FROM %s: ONBUILD trigger %q: %v", ErrSyntax, c.opts.Name, p.base, t, err)
		}
		for _, n := range res.AST.Children {
			v, err := instructions.ParseInstruction(n)
			if err != nil {
				return nil, fmt.Errorf("%w: %s: FROM %s: ONBUILD trigger %q: %v", ErrSyntax, c.opts.Name, p.base, t, err)
			}
			cmd, ok := v.(instructions.Command)
			if !ok {
				return nil, fmt.Errorf("%w: %s: FROM %s: ONBUILD trigger %q is not an instruction", ErrSyntax, c.opts.Name, p.base, t)
			}
			cmds = append(cmds, command{cmd: cmd})
		}
	}
	cmds = append(cmds, p.commands...)
	for _, cmd := range cmds {
		if err := c.dispatch(i, s, cmd); err != nil {
			if errors.Is(err, ErrSyntax) || errors.Is(err, ErrInvalid) || errors.Is(err, ErrUnsupported) {
				return nil, c.instrError(cmd.node, err)
			}
			return nil, c.instrError(cmd.node, fmt.Errorf("%w: %v", ErrInvalid, err))
		}
	}
	st.Steps = s.steps
	st.Config = cfg
	return st, nil
}

// cloneConfig deep-copies a config.
func cloneConfig(cfg dockerspec.DockerOCIImage) dockerspec.DockerOCIImage {
	raw, err := json.Marshal(cfg)
	if err != nil {
		panic(err) // a config always encodes
	}
	var out dockerspec.DockerOCIImage
	if err := json.Unmarshal(raw, &out); err != nil {
		panic(err)
	}
	return out
}

// history appends a history entry. BuildKit marks the entries of RUN,
// COPY and ADD (not WORKDIR's) with " # buildkit".
func (s *stageState) history(createdBy string, layer bool) {
	if layer && !strings.HasPrefix(createdBy, "WORKDIR ") {
		createdBy += " # buildkit"
	}
	s.cfg.History = append(s.cfg.History, ocispec.History{CreatedBy: createdBy, Comment: HistoryComment, EmptyLayer: !layer})
}

// displayName is an instruction as progress shows it: its source with
// the instruction's name in upper case.
func displayName(cmd instructions.Command) string {
	src := ""
	if s, ok := cmd.(fmt.Stringer); ok {
		src = s.String()
	}
	name, rest, _ := strings.Cut(src, " ")
	return strings.TrimSpace(strings.ToUpper(name) + " " + rest)
}

// dispatch applies one instruction of stage i.
func (c *converter) dispatch(i int, s *stageState, cmd command) error {
	cfg := &s.cfg.Config
	if _, isArg := cmd.cmd.(*instructions.ArgCommand); !isArg {
		if ex, ok := cmd.cmd.(instructions.SupportsSingleWordExpansion); ok {
			err := ex.Expand(func(word string) (string, error) {
				out, _, err := c.lex.ProcessWord(word, s.env)
				return out, err
			})
			if err != nil {
				return fmt.Errorf("%w: %v", ErrSyntax, err)
			}
		}
		if ex, ok := cmd.cmd.(instructions.SupportsSingleWordExpansionRaw); ok {
			raw := shell.NewLex('\\')
			raw.SkipProcessQuotes = true
			err := ex.ExpandRaw(func(word string) (string, error) {
				out, _, err := raw.ProcessWord(word, s.env)
				return out, err
			})
			if err != nil {
				return fmt.Errorf("%w: %v", ErrSyntax, err)
			}
		}
	}
	line := 0
	if cmd.node != nil {
		line = cmd.node.StartLine
	}
	switch x := cmd.cmd.(type) {
	case *instructions.EnvCommand:
		msg := "ENV"
		for _, kv := range x.Env {
			msg += " " + kv.String()
			s.env = EnvList(SetEnv(s.env, kv.Key, kv.Value))
			cfg.Env = SetEnv(cfg.Env, kv.Key, kv.Value)
		}
		s.history(msg, false)
	case *instructions.MaintainerCommand:
		s.cfg.Author = x.Maintainer
		s.history("MAINTAINER "+x.Maintainer, false)
	case *instructions.LabelCommand:
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		msg := "LABEL"
		for _, kv := range x.Labels {
			cfg.Labels[kv.Key] = kv.Value
			msg += " " + kv.String()
		}
		s.history(msg, false)
	case *instructions.OnbuildCommand:
		cfg.OnBuild = append(cfg.OnBuild, x.Expression)
	case *instructions.CmdCommand:
		cfg.Cmd = CommandLine(cfg.Shell, x.ShellDependantCmdLine)
		cfg.ArgsEscaped = true //nolint:staticcheck // Docker's config keeps it, as BuildKit writes it
		s.cmdSet = true
		s.history(fmt.Sprintf("CMD %q", cfg.Cmd), false)
	case *instructions.EntrypointCommand:
		cfg.Entrypoint = CommandLine(cfg.Shell, x.ShellDependantCmdLine)
		if !s.cmdSet {
			cfg.Cmd = nil
		}
		s.history(fmt.Sprintf("ENTRYPOINT %q", cfg.Entrypoint), false)
	case *instructions.HealthCheckCommand:
		h := *x.Health
		cfg.Healthcheck = &h
		// BuildKit writes the %q of the config struct, whatever it prints.
		s.history(fmt.Sprintf("HEALTHCHECK %q", any(cfg.Healthcheck)), false)
	case *instructions.ExposeCommand:
		ports := map[string]struct{}{}
		for _, p := range x.Ports {
			words, err := c.lex.ProcessWords(p, s.env)
			if err != nil {
				return fmt.Errorf("%w: %v", ErrSyntax, err)
			}
			for _, w := range words {
				ps, err := ExposedPorts(w)
				if err != nil {
					return fmt.Errorf("%w: %v", ErrInvalid, err)
				}
				for _, p := range ps {
					ports[p] = struct{}{}
				}
			}
		}
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = map[string]struct{}{}
		}
		for p := range ports {
			cfg.ExposedPorts[p] = struct{}{}
		}
		s.history(fmt.Sprintf("EXPOSE %v", ports), false)
	case *instructions.UserCommand:
		cfg.User = x.User
		s.history("USER "+x.User, false)
	case *instructions.VolumeCommand:
		if cfg.Volumes == nil {
			cfg.Volumes = map[string]struct{}{}
		}
		for _, v := range x.Volumes {
			if v == "" {
				return fmt.Errorf("%w: VOLUME specified can not be an empty string", ErrInvalid)
			}
			cfg.Volumes[v] = struct{}{}
		}
		s.history(fmt.Sprintf("VOLUME %v", x.Volumes), false)
	case *instructions.StopSignalCommand:
		if err := checkSignal(x.Signal); err != nil {
			return err
		}
		cfg.StopSignal = x.Signal
		s.history("STOPSIGNAL "+x.Signal, false)
	case *instructions.ShellCommand:
		cfg.Shell = x.Shell
		s.history(fmt.Sprintf("SHELL %v", x.Shell), false)
	case *instructions.ArgCommand:
		return c.stageArg(s, x)
	case *instructions.WorkdirCommand:
		wd := x.Path
		if !path.IsAbs(wd) {
			wd = path.Join("/", cfg.WorkingDir, wd)
		}
		wd = path.Clean(wd)
		cfg.WorkingDir = wd
		layer := wd != "/"
		if layer {
			s.steps = append(s.steps, Step{Kind: Workdir, Name: displayName(x), Line: line, Dir: wd, User: cfg.User, CreatedBy: "WORKDIR " + wd})
		}
		s.history("WORKDIR "+wd, layer)
	case *instructions.RunCommand:
		return c.run(i, s, x, line)
	case *instructions.CopyCommand:
		if x.Parents {
			return fmt.Errorf("%w: COPY --parents", ErrUnsupported)
		}
		if len(x.ExcludePatterns) > 0 {
			return fmt.Errorf("%w: COPY --exclude", ErrUnsupported)
		}
		spec := &CopySpec{FromStage: -1}
		if x.From != "" {
			from, _, err := c.lex.ProcessWord(x.From, c.global)
			if err != nil {
				return fmt.Errorf("%w: %v", ErrSyntax, err)
			}
			j, err := c.fromStage(i, from)
			if err != nil {
				return err
			}
			if j >= 0 {
				spec.FromStage = c.planned[j]
			} else {
				img, err := c.resolve(from)
				if err != nil {
					return fmt.Errorf("COPY --from=%s: %w", from, err)
				}
				spec.FromImage = &img
			}
		}
		return c.copy(s, x, spec, x.SourcesAndDest, x.Chown, x.Chmod, line)
	case *instructions.AddCommand:
		if x.KeepGitDir != nil {
			return fmt.Errorf("%w: ADD --keep-git-dir (git sources)", ErrUnsupported)
		}
		if len(x.ExcludePatterns) > 0 {
			return fmt.Errorf("%w: ADD --exclude", ErrUnsupported)
		}
		spec := &CopySpec{Add: true, FromStage: -1}
		if err := addRemote(x, spec); err != nil {
			return err
		}
		return c.copy(s, x, spec, x.SourcesAndDest, x.Chown, x.Chmod, line)
	default:
		return fmt.Errorf("%w: instruction %T", ErrUnsupported, cmd.cmd)
	}
	return nil
}

// addRemote checks the remote sources of an ADD and its --checksum: a
// URL is fetched (spec.URLs), a git repository is not supported, and a
// checksum goes with a single URL.
func addRemote(x *instructions.AddCommand, spec *CopySpec) error {
	for _, src := range x.SourcePaths {
		switch {
		case isGit(src):
			return fmt.Errorf("%w: ADD of a git repository (%s)", ErrUnsupported, src)
		case isURL(src):
			spec.URLs = append(spec.URLs, src)
		}
	}
	if x.Checksum == "" {
		return nil
	}
	if len(x.SourcePaths) != 1 {
		return fmt.Errorf("%w: checksum can't be specified for multiple sources", ErrInvalid)
	}
	if len(spec.URLs) != 1 {
		return fmt.Errorf("%w: checksum requires HTTP(S) sources", ErrInvalid)
	}
	d, err := digest.Parse(x.Checksum)
	if err != nil {
		return fmt.Errorf("%w: --checksum=%s: %v", ErrInvalid, x.Checksum, err)
	}
	spec.Checksum = d
	return nil
}

// isURL reports whether an ADD source is fetched over HTTP(S).
func isURL(src string) bool {
	return (strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://")) && !isGit(src)
}

// isGit reports whether an ADD source is a git repository.
func isGit(src string) bool {
	if strings.HasPrefix(src, "git@") || strings.HasPrefix(src, "git://") {
		return true
	}
	u, _, _ := strings.Cut(src, "#")
	return (strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://")) && strings.HasSuffix(u, ".git")
}

// stageArg declares ARGs in a stage: the build arg's value, else the
// default expanded, else the global value.
func (c *converter) stageArg(s *stageState, x *instructions.ArgCommand) error {
	var msgs []string
	for _, a := range x.Args {
		c.used[a.Key] = true
		if v, ok := c.opts.BuildArgs[a.Key]; ok {
			a.Value = &v
		} else if a.Value != nil {
			v, _, err := c.lex.ProcessWord(*a.Value, s.env)
			if err != nil {
				return fmt.Errorf("%w: %v", ErrSyntax, err)
			}
			a.Value = &v
		} else if v, ok := c.global.Get(a.Key); ok {
			a.Value = &v
		}
		if a.Value != nil {
			s.env = EnvList(SetEnv(s.env, a.Key, *a.Value))
		}
		s.args = append(s.args, a)
		msg := a.Key
		if a.Value != nil {
			msg += "=" + *a.Value
		}
		msgs = append(msgs, msg)
	}
	s.history("ARG "+strings.Join(msgs, " "), false)
	return nil
}

// run converts a RUN.
func (c *converter) run(i int, s *stageState, x *instructions.RunCommand, line int) error {
	if sec := instructions.GetSecurity(x); sec != "" && sec != "sandbox" {
		return fmt.Errorf("%w: RUN --security=%s", ErrUnsupported, sec)
	}
	mounts, err := c.mounts(i, x, s.cfg.Config.WorkingDir)
	if err != nil {
		return err
	}
	network := c.opts.Network
	switch n := instructions.GetNetwork(x); n {
	case instructions.NetworkNone, instructions.NetworkHost:
		network = n
	}
	name := displayName(x)
	cmdLine := x.ShellDependantCmdLine
	if len(x.Files) > 0 {
		args, script, err := runHeredoc(x)
		if err != nil {
			return err
		}
		if script != nil {
			mounts = append(mounts, *script)
		}
		if parser.MustParseHeredoc(x.CmdLine[0]) != nil {
			name += " (" + heredocSummary(x.Files[0].Data) + ")"
		}
		cmdLine.CmdLine = args
	}
	args := CommandLine(s.cfg.Config.Shell, cmdLine)
	if len(args) == 0 {
		return fmt.Errorf("%w: RUN without a command", ErrSyntax)
	}
	env := slices.Clone([]string(s.env))
	for _, k := range predefinedArgs {
		if v, ok := c.opts.BuildArgs[k]; ok {
			if _, set := s.env.Get(k); !set {
				env = append(env, k+"="+v)
			}
		}
	}
	createdBy := "RUN " + runCommandString(args, s.args, s.env)
	s.steps = append(s.steps, Step{
		Kind: Run, Name: name, Line: line, Args: args, Env: env,
		User: s.cfg.Config.User, Dir: s.cfg.Config.WorkingDir, Network: network,
		Mounts: mounts, CreatedBy: createdBy,
	})
	s.history(createdBy, true)
	return nil
}

// runCommandString is a RUN's history entry after "RUN ": the stage's
// ARGs as "|N K=V..." (when there are any), then the command line.
func runCommandString(args []string, stageArgs []instructions.KeyValuePairOptional, env EnvList) string {
	var kv []string
	idx := map[string]int{}
	for _, a := range stageArgs {
		v, ok := env.Get(a.Key)
		if !ok {
			v = a.ValueString()
		}
		if i, ok := idx[a.Key]; ok {
			kv[i] = a.Key + "=" + v
			continue
		}
		idx[a.Key] = len(kv)
		kv = append(kv, a.Key+"="+v)
	}
	if len(kv) > 0 {
		kv = append([]string{"|" + strconv.Itoa(len(kv))}, kv...)
	}
	return strings.Join(append(kv, args...), " ")
}

// copy converts a COPY or ADD.
func (c *converter) copy(s *stageState, x instructions.Command, spec *CopySpec, sd instructions.SourcesAndDest, chown, chmod string, line int) error {
	msg := "COPY"
	if spec.Add {
		msg = "ADD"
	}
	if chown != "" {
		msg += " --chown=" + chown
	}
	if chmod != "" {
		m, err := strconv.ParseUint(chmod, 8, 32)
		if err != nil || m > 0o7777 {
			return fmt.Errorf("%w: invalid chmod parameter: '%v'. it should be octal string and between 0 and 07777", ErrInvalid, chmod)
		}
		spec.Chmod = uint32(m)
		msg += " --chmod=" + chmod
	}
	spec.Chown = chown
	for _, src := range sd.SourcePaths {
		msg += " " + src
		if !slices.Contains(spec.URLs, src) {
			spec.Sources = append(spec.Sources, src)
		}
	}
	for _, sc := range sd.SourceContents {
		msg += " <<" + sc.Path
		spec.Contents = append(spec.Contents, Content{Name: sc.Path, Data: sc.Data})
	}
	msg += " " + sd.DestPath
	spec.Dest = destPath(s.cfg.Config.WorkingDir, sd.DestPath)
	s.steps = append(s.steps, Step{Kind: Copy, Name: displayName(x), Line: line, Copy: spec, CreatedBy: msg})
	s.history(msg, true)
	return nil
}

// destPath is a COPY destination made absolute from the working directory
// wd, its trailing "/" kept ("." and "" are the working directory).
func destPath(wd, p string) string {
	if p == "." || p == "" {
		p = "./"
	}
	dir := strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/.")
	if !path.IsAbs(p) {
		p = path.Join("/", wd, p)
	}
	p = path.Clean(p)
	if dir && p != "/" {
		p += "/"
	}
	return p
}

// checkSignal refuses a STOPSIGNAL that is not a signal: a number, or a
// name with or without SIG.
func checkSignal(sig string) error {
	if n, err := strconv.Atoi(sig); err == nil {
		if n <= 0 || n > 64 {
			return fmt.Errorf("%w: invalid signal: %s", ErrInvalid, sig)
		}
		return nil
	}
	name := strings.ToUpper(sig)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if unix.SignalNum(name) == 0 && !strings.HasPrefix(name, "SIGRTM") {
		return fmt.Errorf("%w: invalid signal: %s", ErrInvalid, sig)
	}
	return nil
}

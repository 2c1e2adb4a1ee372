package dockerfile

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// DefaultShell runs the shell form of RUN, CMD and ENTRYPOINT when the
// config names no SHELL.
var DefaultShell = []string{"/bin/sh", "-c"}

// DefaultPath is the PATH a stage gets when its base sets none, as
// BuildKit gives it.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// CommandLine is the argument list of a RUN, CMD or ENTRYPOINT: the JSON
// form as written, the shell form run by shell (DefaultShell when empty).
func CommandLine(sh []string, c instructions.ShellDependantCmdLine) []string {
	if !c.PrependShell || len(c.CmdLine) == 0 {
		return c.CmdLine
	}
	if len(sh) == 0 {
		sh = DefaultShell
	}
	return append(slices.Clone(sh), strings.Join(c.CmdLine, " "))
}

// SetEnv sets key=value in env, in place of an earlier value of key.
func SetEnv(env []string, key, value string) []string {
	kv := key + "=" + value
	for i, e := range env {
		if k, _, _ := strings.Cut(e, "="); k == key {
			env[i] = kv
			return env
		}
	}
	return append(env, kv)
}

// EnvList is an environment (K=V entries) as a Dockerfile's variable
// expansion reads it (a shell.EnvGetter).
type EnvList []string

// Get returns key's value, the last one set.
func (e EnvList) Get(key string) (string, bool) {
	for i := len(e) - 1; i >= 0; i-- {
		if k, v, _ := strings.Cut(e[i], "="); k == key {
			return v, true
		}
	}
	return "", false
}

// Keys lists the variables set.
func (e EnvList) Keys() []string {
	keys := make([]string, 0, len(e))
	for _, kv := range e {
		k, _, _ := strings.Cut(kv, "=")
		keys = append(keys, k)
	}
	return keys
}

// Expander expands variables in a word from env with BuildKit's lexer and
// the escape token escape.
func Expander(escape rune, env []string) instructions.SingleWordExpander {
	lex := shell.NewLex(escape)
	return func(word string) (string, error) {
		out, _, err := lex.ProcessWord(word, EnvList(env))
		return out, err
	}
}

// ExposedPorts turns an EXPOSE argument ("80", "53/udp", "8000-8002/tcp")
// into the config's "PORT/PROTO" keys.
func ExposedPorts(arg string) ([]string, error) {
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

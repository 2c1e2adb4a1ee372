package dockerfile_test

import (
	"reflect"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/runner/build/dockerfile"
)

// lastRun is the last step of the plan's target, which must be a RUN.
func lastRun(t *testing.T, p *dockerfile.Plan) dockerfile.Step {
	t.Helper()
	st := p.Stages[len(p.Stages)-1]
	s := st.Steps[len(st.Steps)-1]
	if s.Kind != dockerfile.Run {
		t.Fatalf("last step %q is not a RUN", s.Name)
	}
	return s
}

func TestRunMounts(t *testing.T) {
	for _, c := range []struct {
		name, df string
		want     []dockerfile.Mount
	}{
		{"cache defaults", "FROM base:1\nRUN --mount=type=cache,target=/var/cache/apt true\n", []dockerfile.Mount{{
			Type: "cache", Target: "/var/cache/apt", Source: ".", FromStage: -1, CacheID: "/var/cache/apt", Sharing: "shared", Mode: 0o755,
		}}},
		{"cache with id, sharing, owner, relative target", "FROM base:1\nWORKDIR /w\nRUN --mount=type=cache,id=x,target=c,sharing=locked,uid=7,gid=8,mode=0700,ro true\n", []dockerfile.Mount{{
			Type: "cache", Target: "/w/c", Source: ".", FromStage: -1, CacheID: "x", Sharing: "locked", UID: 7, GID: 8, Mode: 0o700, ReadOnly: true,
		}}},
		{"bind from the context, read-only by default", "FROM base:1\nRUN --mount=target=/ctx true\n", []dockerfile.Mount{{
			Type: "bind", Target: "/ctx", Source: ".", FromStage: -1, ReadOnly: true,
		}}},
		{"bind rw with a source", "FROM base:1\nARG D=data\nRUN --mount=type=bind,source=/$D/../$D,target=/m,rw true\n", []dockerfile.Mount{{
			Type: "bind", Target: "/m", Source: "data", FromStage: -1,
		}}},
		{"bind from a stage", "FROM base:1 AS s\nFROM base:1\nRUN --mount=type=bind,from=s,source=/out,target=/src true\n", []dockerfile.Mount{{
			Type: "bind", Target: "/src", Source: "out", FromStage: 0, ReadOnly: true,
		}}},
		{"tmpfs with a size", "FROM base:1\nRUN --mount=type=tmpfs,target=/t,size=1m true\n", []dockerfile.Mount{{
			Type: "tmpfs", Target: "/t", Source: ".", FromStage: -1, Size: 1 << 20,
		}}},
		{"secret by id", "FROM base:1\nRUN --mount=type=secret,id=token true\n", []dockerfile.Mount{{
			Type: "secret", Target: "/run/secrets/token", SecretID: "token", FromStage: -1, Mode: 0o400, ReadOnly: true,
		}}},
		{"secret by target, required, mode", "FROM base:1\nRUN --mount=type=secret,target=/etc/tok,mode=0440,uid=1,required true\n", []dockerfile.Mount{{
			Type: "secret", Target: "/etc/tok", SecretID: "tok", Required: true, UID: 1, FromStage: -1, Mode: 0o440, ReadOnly: true,
		}}},
		{"secret as an environment variable only", "FROM base:1\nRUN --mount=type=secret,id=tok,env=TOKEN true\n", []dockerfile.Mount{{
			Type: "secret", SecretID: "tok", Env: "TOKEN", FromStage: -1, Mode: 0o400, ReadOnly: true,
		}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := convert(t, c.df, dockerfile.Options{})
			s := lastRun(t, p)
			if !reflect.DeepEqual(s.Mounts, c.want) {
				t.Errorf("mounts\n got %+v\nwant %+v", s.Mounts, c.want)
			}
			if want := []string{"/bin/sh", "-c", "true"}; !reflect.DeepEqual(s.Args, want) {
				t.Errorf("args %q, want %q", s.Args, want)
			}
		})
	}
	// A bind from an image resolves it.
	p := convert(t, "FROM base:1\nRUN --mount=from=onbuild:1,target=/o true\n", dockerfile.Options{})
	if m := lastRun(t, p).Mounts[0]; m.FromImage == nil || m.FromImage.ID != digest.FromString("onbuild:1") || m.FromStage != -1 {
		t.Errorf("bind from an image: %+v", m)
	}
	// A stage a mount names is built even when nothing else needs it.
	p = convert(t, "FROM base:1 AS unused\nFROM base:1 AS s\nFROM base:1\nRUN --mount=from=s,target=/s true\n", dockerfile.Options{})
	if len(p.Stages) != 2 || p.Stages[0].Name != "s" {
		t.Errorf("stages %d, first %q; want s and the target", len(p.Stages), p.Stages[0].Name)
	}
}

func TestRunHeredoc(t *testing.T) {
	for _, c := range []struct {
		name, df  string
		args      []string
		createdBy string
		display   string
		script    *dockerfile.Mount
	}{
		{"script", "FROM base:1\nRUN <<EOF\necho a\necho b\nEOF\n",
			[]string{"/bin/sh", "-c", "echo a\necho b\n"}, "RUN /bin/sh -c echo a\necho b\n", "RUN <<EOF (echo a...)", nil},
		{"tabs stripped", "FROM base:1\nRUN <<-EOT\n\techo t\n\tEOT\n",
			[]string{"/bin/sh", "-c", "echo t\n"}, "RUN /bin/sh -c echo t\n", "RUN <<-EOT (echo t)", nil},
		{"interpreter line", "FROM base:1\nRUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\n",
			[]string{"/bin/sh", "-c", "/dev/pipes/EOF"}, "RUN /bin/sh -c /dev/pipes/EOF", "RUN <<EOF (#!/usr/bin/env python3...)",
			&dockerfile.Mount{Type: "file", Target: "/dev/pipes/EOF", Data: "#!/usr/bin/env python3\nprint(1)\n", Mode: 0o755, FromStage: -1, ReadOnly: true}},
		{"given to a command", "FROM base:1\nRUN python3 <<EOF\nprint(1)\nEOF\n",
			[]string{"/bin/sh", "-c", "python3 <<EOF\nprint(1)\nEOF"}, "RUN /bin/sh -c python3 <<EOF\nprint(1)\nEOF", "RUN python3 <<EOF", nil},
		{"several", "FROM base:1\nRUN <<A <<B cat\nfirst\nA\nsecond\nB\n",
			[]string{"/bin/sh", "-c", "<<A <<B cat\nfirst\nA\nsecond\nB"}, "RUN /bin/sh -c <<A <<B cat\nfirst\nA\nsecond\nB", "RUN <<A <<B cat", nil},
		{"quoted, not expanded", "FROM base:1\nENV G=hi\nRUN cat <<'EOF' > /f\n$G\nEOF\n",
			[]string{"/bin/sh", "-c", "cat <<'EOF' > /f\n$G\nEOF"}, "RUN /bin/sh -c cat <<'EOF' > /f\n$G\nEOF", "RUN cat <<'EOF' > /f", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := convert(t, c.df, dockerfile.Options{})
			s := lastRun(t, p)
			if !reflect.DeepEqual(s.Args, c.args) {
				t.Errorf("args %q, want %q", s.Args, c.args)
			}
			if s.CreatedBy != c.createdBy {
				t.Errorf("created by %q, want %q", s.CreatedBy, c.createdBy)
			}
			if s.Name != c.display {
				t.Errorf("name %q, want %q", s.Name, c.display)
			}
			var script *dockerfile.Mount
			if len(s.Mounts) > 0 {
				script = &s.Mounts[0]
			}
			if !reflect.DeepEqual(script, c.script) {
				t.Errorf("script mount %+v, want %+v", script, c.script)
			}
		})
	}
}

func TestAddURL(t *testing.T) {
	sum := "sha256:" + digestHex("x")
	p := convert(t, "FROM base:1\nADD --checksum="+sum+" https://example.invalid/f.txt /d/\nADD local https://example.invalid/g /e/\n", dockerfile.Options{})
	steps := p.Stages[0].Steps
	if cs := steps[0].Copy; !reflect.DeepEqual(cs.URLs, []string{"https://example.invalid/f.txt"}) || cs.Sources != nil || cs.Checksum.String() != sum {
		t.Errorf("ADD --checksum: %+v", cs)
	}
	if cs := steps[1].Copy; !reflect.DeepEqual(cs.URLs, []string{"https://example.invalid/g"}) || !reflect.DeepEqual(cs.Sources, []string{"local"}) {
		t.Errorf("ADD of a file and a URL: %+v", cs)
	}
	if got := steps[0].CreatedBy; got != "ADD https://example.invalid/f.txt /d/" {
		t.Errorf("created by %q", got)
	}
}

func digestHex(s string) string { return digest.FromString(s).Encoded() }

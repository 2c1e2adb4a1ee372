package dockerfile_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/runner/build/dockerfile"
)

// bases are the images the tests' FROM lines name.
var bases = map[string]dockerspec.DockerOCIImage{
	"base:1": {Image: ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		Config: ocispec.ImageConfig{
			Env: []string{"PATH=/bin", "FROM_BASE=1"}, Cmd: []string{"/bin/sh"}, WorkingDir: "/srv",
		},
		RootFS:  ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromString("base layer")}},
		History: []ocispec.History{{CreatedBy: "base"}},
	}},
	"onbuild:1": {Image: ocispec.Image{
		Config: ocispec.ImageConfig{Env: []string{"PATH=/bin"}},
	}, Config: dockerspec.DockerOCIImageConfig{DockerOCIImageConfigExt: dockerspec.DockerOCIImageConfigExt{
		OnBuild: []string{"RUN echo triggered", "ENV TRIGGERED=yes"},
	}}},
}

func resolve(ref string) (dockerfile.Image, error) {
	cfg, ok := bases[ref]
	if !ok {
		return dockerfile.Image{}, fmt.Errorf("no image %s", ref)
	}
	cfg.Config.ImageConfig = cfg.Image.Config // the ocispec and docker halves are one config
	return dockerfile.Image{ID: digest.FromString(ref), Config: cfg}, nil
}

func convert(t *testing.T, df string, opts dockerfile.Options) *dockerfile.Plan {
	t.Helper()
	p, err := dockerfile.Convert([]byte(df), opts, resolve)
	if err != nil {
		t.Fatalf("Convert: %v", err)
	}
	return p
}

func createdBy(cfg dockerspec.DockerOCIImage) []string {
	var out []string
	for _, h := range cfg.History {
		s := h.CreatedBy
		if !h.EmptyLayer {
			s = "[layer] " + s
		}
		out = append(out, s)
	}
	return out
}

// TestConfig checks the config and history a Dockerfile gives, as
// docker build (BuildKit) writes them.
func TestConfig(t *testing.T) {
	p := convert(t, `FROM base:1
ENV A=1 B=$A
ARG V=x
RUN echo $A
WORKDIR app
COPY --chown=1:2 --chmod=640 a b* dir/
USER nobody
EXPOSE 80 53/udp
VOLUME /data
LABEL k=v
STOPSIGNAL SIGTERM
SHELL ["/bin/bash", "-c"]
CMD echo hi
HEALTHCHECK --interval=5s CMD true
ONBUILD RUN later
`, dockerfile.Options{Labels: map[string]string{"from": "flag"}})
	if len(p.Stages) != 1 {
		t.Fatalf("%d stages", len(p.Stages))
	}
	cfg := p.Stages[0].Config
	c := cfg.Config
	if want := []string{"PATH=/bin", "FROM_BASE=1", "A=1", "B="}; !reflect.DeepEqual(c.Env, want) {
		// ENV expands from the environment before the instruction.
		t.Errorf("Env = %q, want %q", c.Env, want)
	}
	if c.WorkingDir != "/srv/app" || c.User != "nobody" || c.StopSignal != "SIGTERM" {
		t.Errorf("WorkingDir %q User %q StopSignal %q", c.WorkingDir, c.User, c.StopSignal)
	}
	if want := []string{"/bin/bash", "-c", "echo hi"}; !reflect.DeepEqual(c.Cmd, want) || !c.ArgsEscaped {
		t.Errorf("Cmd = %q (ArgsEscaped %v), want %q", c.Cmd, c.ArgsEscaped, want)
	}
	if _, ok := c.ExposedPorts["53/udp"]; !ok || len(c.ExposedPorts) != 2 {
		t.Errorf("ExposedPorts = %v", c.ExposedPorts)
	}
	if _, ok := c.Volumes["/data"]; !ok || c.Labels["k"] != "v" || c.Labels["from"] != "flag" {
		t.Errorf("Volumes %v Labels %v", c.Volumes, c.Labels)
	}
	if c.Healthcheck == nil || c.Healthcheck.Test[0] != "CMD-SHELL" || c.Healthcheck.Interval.Seconds() != 5 {
		t.Errorf("Healthcheck = %+v", c.Healthcheck)
	}
	if !reflect.DeepEqual(c.OnBuild, []string{"RUN later"}) || !reflect.DeepEqual(c.Shell, []string{"/bin/bash", "-c"}) {
		t.Errorf("OnBuild %q Shell %q", c.OnBuild, c.Shell)
	}
	want := []string{
		"[layer] base",
		"ENV A=1 B=",
		"ARG V=x",
		"[layer] RUN |1 V=x /bin/sh -c echo $A # buildkit",
		"[layer] WORKDIR /srv/app",
		"[layer] COPY --chown=1:2 --chmod=640 a b* dir/ # buildkit",
		"USER nobody",
		"EXPOSE map[53/udp:{} 80/tcp:{}]",
		"VOLUME [/data]",
		"LABEL k=v",
		"STOPSIGNAL SIGTERM",
		"SHELL [/bin/bash -c]",
		`CMD ["/bin/bash" "-c" "echo hi"]`,
		`HEALTHCHECK &{["CMD-SHELL" "true"] "5s" "0s" "0s" "0s" '\x00'}`,
	}
	if got := createdBy(cfg); !reflect.DeepEqual(got, want) {
		t.Errorf("history:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	steps := p.Stages[0].Steps
	if len(steps) != 3 || steps[0].Kind != dockerfile.Run || steps[1].Kind != dockerfile.Workdir || steps[2].Kind != dockerfile.Copy {
		t.Fatalf("steps = %+v", steps)
	}
	run := steps[0]
	if !reflect.DeepEqual(run.Args, []string{"/bin/sh", "-c", "echo $A"}) || run.Dir != "/srv" || run.Network != dockerfile.NetworkHost {
		t.Errorf("RUN step = %+v", run)
	}
	if !reflect.DeepEqual(run.Env, []string{"PATH=/bin", "FROM_BASE=1", "A=1", "B=", "V=x"}) {
		t.Errorf("RUN env = %q (the ARG is in it, not in the config)", run.Env)
	}
	cp := steps[2].Copy
	if cp.Dest != "/srv/app/dir/" || cp.Chown != "1:2" || cp.Chmod != 0o640 || !reflect.DeepEqual(cp.Sources, []string{"a", "b*"}) {
		t.Errorf("COPY step = %+v", cp)
	}
}

// TestEntrypointCmd checks the CMD and ENTRYPOINT interplay: an
// ENTRYPOINT drops the inherited CMD, but not one set in the stage.
func TestEntrypointCmd(t *testing.T) {
	for _, c := range []struct {
		df       string
		cmd, ent []string
	}{
		{"FROM base:1\nENTRYPOINT [\"/e\"]", nil, []string{"/e"}},
		{"FROM base:1\nCMD [\"c\"]\nENTRYPOINT /e x", []string{"c"}, []string{"/bin/sh", "-c", "/e x"}},
		{"FROM base:1\nENTRYPOINT [\"/e\"]\nCMD [\"c\"]", []string{"c"}, []string{"/e"}},
		{"FROM base:1", []string{"/bin/sh"}, nil},
	} {
		cfg := convert(t, c.df, dockerfile.Options{}).Stages[0].Config.Config
		if !reflect.DeepEqual(cfg.Cmd, c.cmd) || !reflect.DeepEqual(cfg.Entrypoint, c.ent) {
			t.Errorf("%q: Cmd %q Entrypoint %q, want %q %q", c.df, cfg.Cmd, cfg.Entrypoint, c.cmd, c.ent)
		}
	}
}

// TestArgs checks ARG scoping: global ARGs expand FROM and reach a stage
// only when it declares them; build args override defaults; unused build
// args are reported.
func TestArgs(t *testing.T) {
	df := `ARG IMG=base:1
ARG G=global
FROM $IMG
RUN echo one
ARG G
ARG L=local-$G
RUN echo two
`
	p := convert(t, df, dockerfile.Options{BuildArgs: map[string]string{"L": "given", "NOPE": "x", "HTTP_PROXY": "p"}})
	st := p.Stages[0]
	if st.Base != "base:1" || st.BaseImage == nil {
		t.Fatalf("base %q", st.Base)
	}
	if env := st.Steps[0].Env; strings.Contains(strings.Join(env, " "), "G=") {
		t.Errorf("the first RUN sees the global G undeclared: %q", env)
	}
	if env := strings.Join(st.Steps[1].Env, " "); !strings.Contains(env, "G=global") || !strings.Contains(env, "L=given") || !strings.Contains(env, "HTTP_PROXY=p") {
		t.Errorf("the second RUN's env: %q", env)
	}
	if got := st.Steps[1].CreatedBy; got != "RUN |2 G=global L=given /bin/sh -c echo two" {
		t.Errorf("CreatedBy %q", got)
	}
	if !reflect.DeepEqual(p.UnusedArgs, []string{"NOPE"}) {
		t.Errorf("UnusedArgs = %q", p.UnusedArgs)
	}
	for _, e := range st.Config.Config.Env {
		if strings.HasPrefix(e, "G=") || strings.HasPrefix(e, "L=") {
			t.Errorf("an ARG leaked into the config: %q", e)
		}
	}
	p = convert(t, df, dockerfile.Options{BuildArgs: map[string]string{"L": "x"}})
	if got := p.Stages[0].Steps[1].CreatedBy; got != "RUN |2 G=global L=x /bin/sh -c echo two" {
		t.Errorf("CreatedBy %q", got)
	}
	p = convert(t, "FROM base:1\nARG L=local-$G\nRUN true", dockerfile.Options{})
	if got := p.Stages[0].Steps[0].CreatedBy; got != "RUN |1 L=local- /bin/sh -c true" {
		t.Errorf("an undeclared global is empty in a stage: %q", got)
	}
}

// TestStages checks the stages a target needs, FROM <stage>, COPY
// --from, scratch and ONBUILD triggers.
func TestStages(t *testing.T) {
	df := `FROM base:1 AS unused
RUN exit 1
FROM base:1 AS build
ENV IN_BUILD=1
RUN make
FROM build AS test
RUN make test
FROM scratch
COPY --from=build /out /out
COPY --from=1 /x /y
FROM onbuild:1 AS trig
`
	p := convert(t, df, dockerfile.Options{Target: "3"})
	var names []string
	for _, s := range p.Stages {
		names = append(names, s.DisplayName())
	}
	if !reflect.DeepEqual(names, []string{"build", "stage-3"}) {
		t.Errorf("stages for the scratch stage: %q", names)
	}
	last := p.Stages[1]
	if last.Steps[0].Copy.FromStage != 0 || last.Steps[1].Copy.FromStage != 0 || last.Config.Config.WorkingDir != "/" {
		t.Errorf("scratch stage: %+v %+v", last.Steps[0].Copy, last.Config.Config)
	}
	p = convert(t, df, dockerfile.Options{Target: "TEST"})
	if len(p.Stages) != 2 || p.Stages[1].BaseStage != 0 || !strings.Contains(strings.Join(p.Stages[1].Config.Config.Env, " "), "IN_BUILD=1") {
		t.Errorf("FROM build: %+v", p.Stages[len(p.Stages)-1])
	}
	p = convert(t, df, dockerfile.Options{})
	trig := p.Stages[len(p.Stages)-1]
	if len(trig.Steps) != 1 || trig.Steps[0].CreatedBy != "RUN /bin/sh -c echo triggered" || trig.Config.Config.OnBuild != nil {
		t.Errorf("ONBUILD triggers: steps %+v, OnBuild %q", trig.Steps, trig.Config.Config.OnBuild)
	}
	if env := strings.Join(trig.Config.Config.Env, " "); !strings.Contains(env, "TRIGGERED=yes") {
		t.Errorf("ONBUILD ENV: %q", env)
	}
	if _, err := dockerfile.Convert([]byte(df), dockerfile.Options{Target: "nope"}, resolve); !errors.Is(err, dockerfile.ErrInvalid) {
		t.Errorf("unknown target: %v", err)
	}
}

// TestErrors checks that bad Dockerfiles are refused with the file, the
// line and the instruction named.
func TestErrors(t *testing.T) {
	for _, c := range []struct {
		df, want string
		err      error
	}{
		{"FROM base:1\nRUN true\nCOPY onlyone\n", "Dockerfile:3: COPY onlyone", dockerfile.ErrSyntax},
		{"FROM base:1\nBOGUS x\n", "Dockerfile:2: BOGUS x", dockerfile.ErrSyntax},
		{"RUN true\n", "Dockerfile:1", dockerfile.ErrSyntax},
		{"FROM base:1\nSTOPSIGNAL SIGNOPE\n", "Dockerfile:2: STOPSIGNAL SIGNOPE", dockerfile.ErrInvalid},
		{"FROM base:1\nCOPY --chmod=999 a b\n", "Dockerfile:2", dockerfile.ErrInvalid},
		{"FROM base:1\nRUN --mount=type=ssh true\n", "Dockerfile:2: RUN --mount=type=ssh", dockerfile.ErrUnsupported},
		{"FROM base:1\nRUN --mount=type=tmpfs,target=/ true\n", "Dockerfile:2", dockerfile.ErrInvalid},
		{"FROM base:1 AS a\nRUN --mount=type=bind,from=later,target=/x true\nFROM base:1 AS later\nFROM a\n", "Dockerfile:2", dockerfile.ErrInvalid},
		{"FROM base:1\nRUN --mount=type=bind,target=/x,uid=1 true\n", "Dockerfile:2", dockerfile.ErrSyntax},
		{"FROM base:1\nADD --checksum=sha256:00 http://h/a /a\n", "Dockerfile:2", dockerfile.ErrInvalid},
		{"FROM base:1\nADD --checksum=sha256:" + strings.Repeat("0", 64) + " local /a\n", "checksum requires", dockerfile.ErrInvalid},
		{"FROM base:1\nADD https://h/r.git /a\n", "git repository", dockerfile.ErrUnsupported},
		{"FROM base:1\nCOPY --from=later /a /b\nFROM base:1 AS later\nFROM base:1\nCOPY --from=0 /b /c\n", "Dockerfile:2", dockerfile.ErrInvalid},
		{"FROM missing:1\n", "FROM missing:1", nil},
	} {
		_, err := dockerfile.Convert([]byte(c.df), dockerfile.Options{}, resolve)
		if err == nil || !strings.Contains(err.Error(), c.want) || (c.err != nil && !errors.Is(err, c.err)) {
			t.Errorf("%q: err %v, want %q (%v)", c.df, err, c.want, c.err)
		}
	}
}

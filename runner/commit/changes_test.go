package commit_test

import (
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/runner/commit"
)

func TestApplyChanges(t *testing.T) {
	base := func() dockerspec.DockerOCIImageConfig {
		return dockerspec.DockerOCIImageConfig{ImageConfig: ocispec.ImageConfig{
			Env:        []string{"PATH=/usr/bin:/bin", "HOME=/root"},
			Cmd:        []string{"bash"},
			WorkingDir: "/srv",
		}}
	}
	cases := []struct {
		name    string
		changes []string
		check   func(c dockerspec.DockerOCIImageConfig) bool
	}{
		{"cmd json", []string{`CMD ["cat","/new"]`}, func(c dockerspec.DockerOCIImageConfig) bool {
			return reflect.DeepEqual(c.Cmd, []string{"cat", "/new"})
		}},
		{"cmd shell", []string{`CMD echo hi there`}, func(c dockerspec.DockerOCIImageConfig) bool {
			return reflect.DeepEqual(c.Cmd, []string{"/bin/sh", "-c", "echo hi there"})
		}},
		{"lowercase instruction", []string{`cmd ["x"]`}, func(c dockerspec.DockerOCIImageConfig) bool {
			return reflect.DeepEqual(c.Cmd, []string{"x"})
		}},
		{"entrypoint clears cmd", []string{`ENTRYPOINT ["/bin/app"]`}, func(c dockerspec.DockerOCIImageConfig) bool {
			return reflect.DeepEqual(c.Entrypoint, []string{"/bin/app"}) && c.Cmd == nil
		}},
		{"cmd then entrypoint keeps cmd", []string{`CMD ["-v"]`, `ENTRYPOINT /bin/app --flag`}, func(c dockerspec.DockerOCIImageConfig) bool {
			return reflect.DeepEqual(c.Entrypoint, []string{"/bin/sh", "-c", "/bin/app --flag"}) && reflect.DeepEqual(c.Cmd, []string{"-v"})
		}},
		{"env forms and expansion", []string{`ENV a=b c="d e"`, `ENV single value with spaces`, `ENV PATH=/opt/bin:$PATH`}, func(c dockerspec.DockerOCIImageConfig) bool {
			return reflect.DeepEqual(c.Env, []string{"PATH=/opt/bin:/usr/bin:/bin", "HOME=/root", "a=b", "c=d e", "single=value with spaces"})
		}},
		{"workdir relative and absolute", []string{`WORKDIR app`, `WORKDIR $HOME/x`}, func(c dockerspec.DockerOCIImageConfig) bool {
			return c.WorkingDir == "/root/x"
		}},
		{"workdir relative", []string{`WORKDIR sub/dir`}, func(c dockerspec.DockerOCIImageConfig) bool {
			return c.WorkingDir == "/srv/sub/dir"
		}},
		{"user", []string{`USER 1000:1000`}, func(c dockerspec.DockerOCIImageConfig) bool { return c.User == "1000:1000" }},
		{"expose", []string{`EXPOSE 80 53/udp 8000-8001`}, func(c dockerspec.DockerOCIImageConfig) bool {
			return reflect.DeepEqual(c.ExposedPorts, map[string]struct{}{"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}})
		}},
		{"label", []string{`LABEL a=1 "b c"="two words"`}, func(c dockerspec.DockerOCIImageConfig) bool {
			return reflect.DeepEqual(c.Labels, map[string]string{"a": "1", "b c": "two words"})
		}},
		{"volume stopsignal onbuild", []string{`VOLUME ["/data", "/logs"]`, `STOPSIGNAL SIGINT`, `ONBUILD RUN make`}, func(c dockerspec.DockerOCIImageConfig) bool {
			return reflect.DeepEqual(c.Volumes, map[string]struct{}{"/data": {}, "/logs": {}}) && c.StopSignal == "SIGINT" &&
				reflect.DeepEqual(c.OnBuild, []string{"RUN make"})
		}},
		{"two lines in one change", []string{"ENV x=1\nUSER nobody"}, func(c dockerspec.DockerOCIImageConfig) bool {
			return c.User == "nobody" && c.Env[len(c.Env)-1] == "x=1"
		}},
		{"empty and comment", []string{"", "# nothing"}, func(c dockerspec.DockerOCIImageConfig) bool {
			return reflect.DeepEqual(c, base())
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base()
			if err := commit.ApplyChanges(&cfg, tc.changes); err != nil {
				t.Fatal(err)
			}
			if !tc.check(cfg) {
				t.Errorf("config after %q: %+v", tc.changes, cfg)
			}
		})
	}
}

func TestApplyChangesRefused(t *testing.T) {
	for _, line := range []string{
		`RUN rm -rf /`,
		`FROM debian`,
		`COPY a b`,
		`ADD a b`,
		`HEALTHCHECK CMD true`,
		`SHELL ["/bin/bash", "-c"]`,
		`ARG x`,
		`MAINTAINER me`,
		`NOSUCH thing`,
		`EXPOSE 70000`,
		`EXPOSE 80/icmp`,
		`EXPOSE http`,
		`ENV`,
		`WORKDIR`,
		`USER`,
		`ONBUILD ONBUILD CMD x`,
		`LABEL novalue`,
	} {
		cfg := dockerspec.DockerOCIImageConfig{}
		err := commit.ApplyChanges(&cfg, []string{"ENV ok=1", line})
		if !errors.Is(err, commit.ErrInvalidChange) {
			t.Errorf("%q: err = %v, want ErrInvalidChange", line, err)
			continue
		}
		if !strings.Contains(err.Error(), strconv.Quote(line)) {
			t.Errorf("%q: the message does not name the line: %v", line, err)
		}
	}
}

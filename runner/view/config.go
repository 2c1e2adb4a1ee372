package view

import (
	"encoding/json"
	"fmt"
)

// Config is a container configuration in the shape of docker's (the Config
// of `docker inspect`): the image config's "config" object for an image,
// the runtime spec and the image's config for a container. Field names are
// docker's JSON names.
type Config struct {
	Hostname     string
	Domainname   string
	User         string
	AttachStdin  bool
	AttachStdout bool
	AttachStderr bool
	ExposedPorts map[string]struct{} `json:",omitempty"`
	Tty          bool
	OpenStdin    bool
	StdinOnce    bool
	Env          []string
	Cmd          []string
	Healthcheck  *Healthcheck `json:",omitempty"`
	ArgsEscaped  bool         `json:",omitempty"`
	Image        string
	Volumes      map[string]struct{}
	WorkingDir   string
	Entrypoint   []string
	OnBuild      []string
	Labels       map[string]string
	StopSignal   string   `json:",omitempty"`
	StopTimeout  *int     `json:",omitempty"`
	Shell        []string `json:",omitempty"`
}

// Healthcheck is docker's health check of an image config; durations are
// in nanoseconds, as docker writes them.
type Healthcheck struct {
	Test          []string `json:",omitempty"`
	Interval      int64    `json:",omitempty"`
	Timeout       int64    `json:",omitempty"`
	StartPeriod   int64    `json:",omitempty"`
	StartInterval int64    `json:",omitempty"`
	Retries       int      `json:",omitempty"`
}

// rawImageConfig is the part of an image config (OCI or docker) the
// documents show beyond what ocispec.Image decodes: docker's extra config
// fields (Healthcheck, OnBuild, Shell, ...) and top-level strings.
type rawImageConfig struct {
	Config        Config `json:"config"`
	Comment       string `json:"comment"`
	DockerVersion string `json:"docker_version"`
	Author        string `json:"author"`
}

// decodeImageConfig decodes the raw image config.
func decodeImageConfig(raw []byte) (rawImageConfig, error) {
	var c rawImageConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		return rawImageConfig{}, fmt.Errorf("image config: %w", err)
	}
	return c, nil
}

// Package config holds the typed configuration of `berth serve`: its defaults, strict YAML decoding, BERTH_* environment overrides and validation.
// It may import only the standard library and gopkg.in/yaml.v3; it knows nothing of HTTP, storage or the registry.
package config

package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Config is the whole configuration of `berth serve`. Each section lives in
// its own file with its defaults and its validation; adding a section means
// adding a field here (with a yaml tag), a line in Default, a call in
// Validate, and its keys in configs/berth.yaml. Its environment variables
// follow by themselves, except for lists of sections (gc.retention,
// proxy.upstreams), which
// is set in YAML only (see YAMLOnlyKeys).
type Config struct {
	// Log configures the process logger.
	Log Log `yaml:"log"`
	// HTTP configures the listener and the HTTP server.
	HTTP HTTP `yaml:"http"`
	// Storage chooses and configures the storage backend.
	Storage Storage `yaml:"storage"`
	// Auth configures authentication and authorization.
	Auth Auth `yaml:"auth"`
	// GC configures garbage collection: periodic runs in the server and
	// the defaults of `berth gc`.
	GC GC `yaml:"gc"`
	// Proxy configures the pull-through cache of upstream registries.
	Proxy Proxy `yaml:"proxy"`
	// UI configures the web UI.
	UI UI `yaml:"ui"`
}

// Default returns the configuration used where no file, variable or flag
// says otherwise. It is valid.
func Default() Config {
	return Config{
		Log:     defaultLog(),
		HTTP:    defaultHTTP(),
		Storage: defaultStorage(),
		Auth:    defaultAuth(),
		GC:      defaultGC(),
		Proxy:   defaultProxy(),
		UI:      defaultUI(),
	}
}

// Validate reports every invalid value, as one error naming each key, or
// nil. It does no I/O (whether TLS files exist is checked when they are
// loaded).
func (c *Config) Validate() error {
	var errs []string
	report := func(key, format string, args ...any) {
		errs = append(errs, key+": "+fmt.Sprintf(format, args...))
	}
	c.Log.validate(report)
	c.HTTP.validate(report)
	c.Storage.validate(report)
	c.validateAuth(report)
	c.GC.validate(report)
	c.Proxy.validate(report)
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// reportFunc records one invalid value for Validate: the key's yaml path
// and what is wrong with it.
type reportFunc func(key, format string, args ...any)

// Load returns the effective configuration, validated. It starts from
// Default, then applies, each over the previous:
//
//  1. the YAML file at path, decoded strictly (skipped if path is "");
//  2. the BERTH_* environment variables that lookupEnv finds (see EnvVars;
//     nil looks up nothing, os.LookupEnv reads the process environment);
//  3. overrides, in order (command-line flags).
//
// Errors name the file and line, the variable or the key at fault, on one line.
func Load(path string, lookupEnv func(string) (string, bool), overrides ...func(*Config)) (*Config, error) {
	c := Default()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		if err := decode(&c, b); err != nil {
			return nil, fmt.Errorf("%s:%w", path, err)
		}
	}
	if lookupEnv != nil {
		if err := c.applyEnv(lookupEnv); err != nil {
			return nil, err
		}
	}
	for _, o := range overrides {
		o(&c)
	}
	c.Proxy.applyDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// RedactedSecret is what Redacted puts in place of a secret that is set.
const RedactedSecret = "<redacted>"

// Redacted returns a copy of c for printing: every secret key (a field
// tagged secret:"true", such as storage.s3.secretKey) that is set holds
// RedactedSecret instead of its value. An unset secret stays empty, so the copy
// still tells whether one is set.
func (c Config) Redacted() Config {
	v := reflect.ValueOf(&c).Elem()
	for _, l := range leaves() {
		if f := v.FieldByIndex(l.index); l.secret && f.String() != "" {
			f.SetString(RedactedSecret)
		}
	}
	// Lists of sections are YAML only, so not leaves: their secrets
	// are redacted in copies of the lists.
	ups := slices.Clone(c.Proxy.Upstreams)
	for i := range ups {
		if ups[i].Password != "" {
			ups[i].Password = RedactedSecret
		}
	}
	c.Proxy.Upstreams = ups
	return c
}

// WriteYAML writes c as YAML, every key present, in the layout of
// configs/berth.yaml. Durations are written as Go duration strings ("5m0s").
func (c *Config) WriteYAML(w io.Writer) error {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}

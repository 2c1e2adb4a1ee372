package config

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// EnvVar documents the environment variable that overrides one leaf key.
type EnvVar struct {
	// Name is the variable: "BERTH_" followed by the key's yaml path,
	// upper-cased, sections joined by "_": BERTH_HTTP_DRAINTIMEOUT.
	Name string
	// Key is the dotted yaml path of the key: http.drainTimeout.
	Key string
	// Type is the kind of value: string, bool, duration, integer or list.
	Type string
	// Default is the value in Default, spelled as the variable would be.
	Default string
}

// EnvVars lists the environment variable of every leaf key, in the order
// of the keys in Config. A variable that is set, even to "", overrides the
// key; values are parsed as in YAML except that durations take Go syntax
// (30s, 1h30m), booleans take strconv.ParseBool syntax (true, false, 1, 0)
// and lists are comma-separated.
func EnvVars() []EnvVar {
	def := reflect.ValueOf(Default())
	var out []EnvVar
	for _, l := range leaves() {
		out = append(out, EnvVar{
			Name:    l.env(),
			Key:     l.key(),
			Type:    typeName(l.typ),
			Default: formatValue(def.FieldByIndex(l.index)),
		})
	}
	return out
}

// UnknownEnv returns the names of the variables in environ ("NAME=value"
// entries, as from os.Environ) that start with BERTH_ but override no key,
// most likely misspelt, sorted. Callers warn about them; Load ignores them.
func UnknownEnv(environ []string) []string {
	known := make(map[string]bool)
	for _, l := range leaves() {
		known[l.env()] = true
	}
	var unknown []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, envPrefix) && !known[name] {
			unknown = append(unknown, name)
		}
	}
	slices.Sort(unknown)
	return slices.Compact(unknown)
}

// applyEnv sets every leaf key whose variable lookupEnv finds.
func (c *Config) applyEnv(lookupEnv func(string) (string, bool)) error {
	v := reflect.ValueOf(c).Elem()
	for _, l := range leaves() {
		s, ok := lookupEnv(l.env())
		if !ok {
			continue
		}
		x, err := parseValue(l.typ, s)
		if err != nil {
			return fmt.Errorf("%s=%q: want %s (overrides %s)", l.env(), s, describe(l.typ), l.key())
		}
		v.FieldByIndex(l.index).Set(x)
	}
	return nil
}

// parseValue parses an environment variable's value as a value of type t,
// one of the types that describe knows.
func parseValue(t reflect.Type, s string) (reflect.Value, error) {
	x := reflect.New(t).Elem()
	if t == durationType {
		d, err := time.ParseDuration(s)
		if err != nil {
			return x, err
		}
		x.SetInt(int64(d))
		return x, nil
	}
	switch t.Kind() {
	case reflect.String:
		x.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return x, err
		}
		x.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, t.Bits())
		if err != nil {
			return x, err
		}
		x.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(s, 10, t.Bits())
		if err != nil {
			return x, err
		}
		x.SetUint(n)
	case reflect.Slice: // of strings: describe admits no other
		var items []string
		for item := range strings.SplitSeq(s, ",") {
			if item = strings.TrimSpace(item); item != "" {
				items = append(items, item)
			}
		}
		x.Set(reflect.ValueOf(items).Convert(t))
	default:
		return x, fmt.Errorf("unsupported type %s", t)
	}
	return x, nil
}

package config

import (
	"fmt"
	"reflect"
	"strings"
	"time"
)

// The keys of the configuration are not listed anywhere by hand: they are
// found by reflection over the yaml tags of Config, so that the YAML keys,
// the environment variables and their documentation cannot drift apart.

// leaf is one leaf key of the configuration: a field that holds a value,
// not a section.
type leaf struct {
	path  []string     // yaml keys from the root: ["http", "drainTimeout"]
	index []int        // for reflect.Value.FieldByIndex from a Config
	typ   reflect.Type // the field's type, one that parseValue handles
	// secret marks a credential (struct tag secret:"true"): never printed.
	secret bool
}

// key is the dotted yaml path: "http.drainTimeout".
func (l leaf) key() string { return strings.Join(l.path, ".") }

// env is the environment variable: "BERTH_HTTP_DRAINTIMEOUT".
func (l leaf) env() string { return envPrefix + strings.ToUpper(strings.Join(l.path, "_")) }

// envPrefix starts the name of every environment variable of the configuration.
const envPrefix = "BERTH_"

var durationType = reflect.TypeFor[time.Duration]()

// isSection reports whether a field of type t holds keys rather than a value.
func isSection(t reflect.Type) bool { return t.Kind() == reflect.Struct }

// isSectionList reports whether a field of type t holds a list of sections
// (gc.retention). Such a key is set in YAML only: it has no environment
// variable, since one variable per key cannot spell a list of mappings.
func isSectionList(t reflect.Type) bool {
	return t.Kind() == reflect.Slice && isSection(t.Elem())
}

// YAMLOnlyKeys returns the dotted yaml paths of the keys that no
// environment variable overrides (lists of sections such as gc.retention),
// in the order of the keys in Config. EnvVars lists every other key.
func YAMLOnlyKeys() []string {
	var out []string
	var walk func(t reflect.Type, path []string)
	walk = func(t reflect.Type, path []string) {
		for i := range t.NumField() {
			sf := t.Field(i)
			name, ok := yamlName(sf)
			if !ok {
				continue
			}
			p := append(path[:len(path):len(path)], name)
			switch {
			case isSection(sf.Type):
				walk(sf.Type, p)
			case isSectionList(sf.Type):
				out = append(out, strings.Join(p, "."))
			}
		}
	}
	walk(reflect.TypeFor[Config](), nil)
	return out
}

// leaves lists the leaf keys of Config in declaration order, lists of
// sections excepted (see YAMLOnlyKeys). It panics on a field without a yaml
// tag or of a type that parseValue cannot handle: a programming error that
// every test of this package trips over.
func leaves() []leaf {
	var out []leaf
	var walk func(t reflect.Type, path []string, index []int)
	walk = func(t reflect.Type, path []string, index []int) {
		for i := range t.NumField() {
			sf := t.Field(i)
			name, ok := yamlName(sf)
			if !ok {
				continue
			}
			p := append(path[:len(path):len(path)], name)
			ix := append(index[:len(index):len(index)], i)
			if isSection(sf.Type) {
				walk(sf.Type, p, ix)
				continue
			}
			if isSectionList(sf.Type) {
				continue // YAML only
			}
			if describe(sf.Type) == "" {
				panic(fmt.Sprintf("config: key %s: type %s is not supported; add it to parseValue and describe", strings.Join(p, "."), sf.Type))
			}
			secret := sf.Tag.Get("secret") == "true"
			if secret && sf.Type.Kind() != reflect.String {
				panic(fmt.Sprintf("config: key %s: only strings can be secret", strings.Join(p, ".")))
			}
			out = append(out, leaf{path: p, index: ix, typ: sf.Type, secret: secret})
		}
	}
	walk(reflect.TypeFor[Config](), nil, nil)
	return out
}

// yamlName returns the key of a struct field, or false for fields that are
// not part of the configuration (unexported, or tagged yaml:"-").
func yamlName(sf reflect.StructField) (string, bool) {
	if !sf.IsExported() {
		return "", false
	}
	tag, ok := sf.Tag.Lookup("yaml")
	if !ok {
		panic(fmt.Sprintf("config: field %s has no yaml tag", sf.Name))
	}
	name, _, _ := strings.Cut(tag, ",")
	if name == "-" {
		return "", false
	}
	if name == "" {
		panic(fmt.Sprintf("config: field %s has an empty yaml key", sf.Name))
	}
	return name, true
}

// fieldByKey finds the field of section type t whose yaml key is name.
func fieldByKey(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		sf := t.Field(i)
		if n, ok := yamlName(sf); ok && n == name {
			return sf, true
		}
	}
	return reflect.StructField{}, false
}

// keysOf lists the yaml keys of section type t.
func keysOf(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		if n, ok := yamlName(t.Field(i)); ok {
			keys = append(keys, n)
		}
	}
	return keys
}

// describe says in words what a value of type t looks like, for error
// messages and listings; "" means t is not supported as a leaf.
func describe(t reflect.Type) string {
	if t == durationType {
		return "a duration such as 30s, 5m or 1h30m"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return "a list of strings (comma-separated in the environment)"
		}
	}
	return ""
}

// typeName is the short name of a leaf type for listings.
func typeName(t reflect.Type) string {
	if t == durationType {
		return "duration"
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Slice:
		return "list"
	}
	return t.Kind().String()
}

// formatValue renders a leaf value the way the environment would spell it.
func formatValue(v reflect.Value) string {
	if v.Type() == durationType {
		return time.Duration(v.Int()).String()
	}
	if v.Kind() == reflect.Slice {
		s := make([]string, v.Len())
		for i := range s {
			s[i] = v.Index(i).String()
		}
		return strings.Join(s, ",")
	}
	return fmt.Sprint(v.Interface())
}

// oneOf lists choices for an error message: "a, b or c".
func oneOf(choices []string) string {
	if len(choices) < 2 {
		return strings.Join(choices, "")
	}
	return strings.Join(choices[:len(choices)-1], ", ") + " or " + choices[len(choices)-1]
}

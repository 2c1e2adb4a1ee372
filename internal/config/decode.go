package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// decode applies the YAML document b over c. Keys absent from b, or present
// with an empty (null) value, keep the value c has. Errors start with
// "LINE: " (Load puts the file name in front) and name the key at fault.
//
// Decoding is strict: unknown keys, repeated keys, values of the wrong type,
// a document that is not a mapping and more than one document are errors.
// A first pass walks the parsed document against the Config type to report
// the first problem with its full key path ("http.adr"); the decoding itself
// is then done by yaml.v3 with KnownFields, as a second line of defence.
func decode(c *Config, b []byte) error {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file (or only comments) changes nothing
		}
		return yamlError(err)
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		if err != nil {
			return yamlError(err)
		}
		return fmt.Errorf("%d: a second YAML document; a config file holds one", next.Line)
	}
	if len(doc.Content) != 1 {
		return nil
	}
	if err := check(doc.Content[0], reflect.TypeFor[Config](), nil); err != nil {
		return err
	}

	strict := yaml.NewDecoder(bytes.NewReader(b))
	strict.KnownFields(true)
	if err := strict.Decode(c); err != nil {
		return yamlError(err)
	}
	return nil
}

// yamlError rewrites an error of yaml.v3 ("yaml: line 3: did not find
// expected key") in the "LINE: message" form of decode, on one line.
func yamlError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:\n  ")
	msg = strings.ReplaceAll(msg, "\n  ", "; ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		return errors.New(rest)
	}
	return errors.New(" " + msg)
}

// check walks node against type t (the type of the key at path) and returns
// the first unknown key, repeated key or ill-typed value.
func check(n *yaml.Node, t reflect.Type, path []string) error {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil // "key:" with no value keeps the default
	}
	if isSection(t) {
		if n.Kind != yaml.MappingNode {
			return fmt.Errorf("%d: %s: want a mapping of keys (%s), got %s",
				n.Line, keyOrTop(path), strings.Join(keysOf(t), ", "), show(n))
		}
		seen := make(map[string]int)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := append(path[:len(path):len(path)], k.Value)
			sf, ok := fieldByKey(t, k.Value)
			if !ok {
				return fmt.Errorf("%d: unknown key %q (known keys %s: %s)",
					k.Line, strings.Join(p, "."), where(path), strings.Join(keysOf(t), ", "))
			}
			if line, dup := seen[k.Value]; dup {
				return fmt.Errorf("%d: key %q repeated (first at line %d)", k.Line, strings.Join(p, "."), line)
			}
			seen[k.Value] = k.Line
			if err := check(v, sf.Type, p); err != nil {
				return err
			}
		}
		return nil
	}
	if isSectionList(t) {
		if n.Kind != yaml.SequenceNode {
			return fmt.Errorf("%d: %s: want a list of mappings of keys (%s), got %s",
				n.Line, strings.Join(path, "."), strings.Join(keysOf(t.Elem()), ", "), show(n))
		}
		last := len(path) - 1
		for i, item := range n.Content {
			p := append(path[:last:last], fmt.Sprintf("%s[%d]", path[last], i))
			if err := check(item, t.Elem(), p); err != nil {
				return err
			}
		}
		return nil
	}
	if err := n.Decode(reflect.New(t).Interface()); err != nil {
		return fmt.Errorf("%d: %s: cannot use %s: want %s", n.Line, strings.Join(path, "."), show(n), describe(t))
	}
	return nil
}

// keyOrTop names the section at path, or the top level.
func keyOrTop(path []string) string {
	if len(path) == 0 {
		return "top level"
	}
	return strings.Join(path, ".")
}

// where names the section at path for "known keys ..." messages.
func where(path []string) string {
	if len(path) == 0 {
		return "at the top level"
	}
	return "under " + strings.Join(path, ".")
}

// show describes a node as it appeared in the file.
func show(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return fmt.Sprintf("%q", n.Value)
	}
}

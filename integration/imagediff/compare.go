package imagediff

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// configFields are the fields of the config's "config" object compared
// first and in this order (docker's, with its extension fields
// Healthcheck, OnBuild and Shell); any other field present in either
// image is compared after them.
var configFields = []string{
	"Env", "Entrypoint", "Cmd", "WorkingDir", "User", "ExposedPorts", "Volumes", "Labels",
	"StopSignal", "Healthcheck", "OnBuild", "Shell", "ArgsEscaped",
}

// topFields are the compared top-level fields of the config, besides
// "config", "history" and "rootfs"; "created" is a time and left out.
var topFields = []string{"architecture", "os", "variant", "os.version", "os.features", "author"}

// Compare lists the differences of a and b, one line each, config first
// ("config Env: [...] vs [...]"), then the files by path ("/etc/foo: mode
// 0644 vs 0755"); values are a's first. Absent, null and empty values
// ([], {}, "", false) count as the same. A directory only one image has
// is one line, with the count of what lies under it. Times are never
// compared, nor are digests of anything but file contents.
func Compare(a, b *Image) []string {
	var out []string
	out = append(out, compareConfig(a, b)...)
	out = append(out, compareFiles(a, b)...)
	return out
}

func compareConfig(a, b *Image) []string {
	var out []string
	for _, k := range topFields {
		if d := diffValue(a.Config[k], b.Config[k]); d != "" {
			out = append(out, k+": "+d)
		}
	}
	ca, cb := object(a.Config["config"]), object(b.Config["config"])
	rest := map[string]bool{}
	for k := range ca {
		rest[k] = true
	}
	for k := range cb {
		rest[k] = true
	}
	for _, k := range configFields {
		delete(rest, k)
	}
	for _, k := range append(slices.Clone(configFields), slices.Sorted(maps.Keys(rest))...) {
		if d := diffValue(ca[k], cb[k]); d != "" {
			out = append(out, "config "+k+": "+d)
		}
	}
	if a.Layers != b.Layers {
		out = append(out, fmt.Sprintf("layers: %d vs %d", a.Layers, b.Layers))
	}
	ra, rb := object(a.Config["rootfs"]), object(b.Config["rootfs"])
	if d := diffValue(ra["type"], rb["type"]); d != "" {
		out = append(out, "rootfs type: "+d)
	}
	if na, nb := len(list(ra["diff_ids"])), len(list(rb["diff_ids"])); na != nb {
		out = append(out, fmt.Sprintf("rootfs diff_ids: %d vs %d", na, nb))
	}
	return append(out, compareHistory(a, b)...)
}

// compareHistory compares the history entries without their times.
func compareHistory(a, b *Image) []string {
	ha, hb := list(a.Config["history"]), list(b.Config["history"])
	var out []string
	if len(ha) != len(hb) {
		out = append(out, fmt.Sprintf("history: %d entries vs %d", len(ha), len(hb)))
	}
	for i := range max(len(ha), len(hb)) {
		var ea, eb map[string]json.RawMessage
		if i < len(ha) {
			ea = object(ha[i])
		}
		if i < len(hb) {
			eb = object(hb[i])
		}
		for _, k := range []string{"created_by", "empty_layer", "comment", "author"} {
			if d := diffValue(ea[k], eb[k]); d != "" {
				out = append(out, fmt.Sprintf("history[%d] %s: %s", i, k, d))
			}
		}
	}
	return out
}

// diffValue is "" when a and b are the same JSON value (absent and empty
// alike), else "A vs B".
func diffValue(a, b json.RawMessage) string {
	ca, cb := canonical(a), canonical(b)
	if ca == cb {
		return ""
	}
	return show(ca) + " vs " + show(cb)
}

// canonical re-encodes a JSON value with sorted keys and no spaces; empty
// values become "".
func canonical(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return string(raw)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return string(raw)
	}
	s := strings.TrimSpace(buf.String())
	switch s {
	case "null", "[]", "{}", `""`, "false":
		return ""
	}
	return s
}

func show(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func object(raw json.RawMessage) map[string]json.RawMessage {
	var m map[string]json.RawMessage
	_ = json.Unmarshal(raw, &m)
	return m
}

func list(raw json.RawMessage) []json.RawMessage {
	var l []json.RawMessage
	_ = json.Unmarshal(raw, &l)
	return l
}

// compareFiles compares the flattened filesystems path by path.
func compareFiles(a, b *Image) []string {
	paths := map[string]bool{}
	for p := range a.Files {
		paths[p] = true
	}
	for p := range b.Files {
		paths[p] = true
	}
	var out []string
	skip := "" // a directory reported as only in one image: its subtree is counted
	for _, p := range slices.Sorted(maps.Keys(paths)) {
		if skip != "" && strings.HasPrefix(p, skip) {
			continue
		}
		skip = ""
		fa, fb := a.Files[p], b.Files[p]
		switch {
		case fa == nil || fb == nil:
			img, other, f := a, b, fa
			if fa == nil {
				img, other, f = b, a, fb
			}
			line := fmt.Sprintf("%s: only in %s (%s)", p, img.Name, describe(f))
			if f.Type == "dir" {
				skip = p + "/"
				if n := countOnlyBelow(img, other, skip); n > 0 {
					line += fmt.Sprintf(", with %d entries under it", n)
				}
			}
			out = append(out, line)
		default:
			for _, d := range diffFile(fa, fb) {
				out = append(out, p+": "+d)
			}
		}
	}
	return out
}

// countOnlyBelow counts the paths under prefix in img that other lacks.
func countOnlyBelow(img, other *Image, prefix string) int {
	n := 0
	for p := range img.Files {
		if strings.HasPrefix(p, prefix) && other.Files[p] == nil {
			n++
		}
	}
	return n
}

// describe is a short account of f: "file 0644 0:0 12 bytes".
func describe(f *File) string {
	s := fmt.Sprintf("%s %04o %d:%d", f.Type, f.Mode, f.UID, f.GID)
	switch f.Type {
	case "file":
		s += fmt.Sprintf(" %d bytes", f.Size)
	case "symlink":
		s += " -> " + f.Target
	}
	return s
}

// diffFile lists how two files of one path differ.
func diffFile(a, b *File) []string {
	if a.Type != b.Type {
		return []string{"type " + describe(a) + " vs " + describe(b)}
	}
	var out []string
	if a.Mode != b.Mode {
		out = append(out, fmt.Sprintf("mode %04o vs %04o", a.Mode, b.Mode))
	}
	if a.UID != b.UID || a.GID != b.GID {
		out = append(out, fmt.Sprintf("owner %d:%d vs %d:%d", a.UID, a.GID, b.UID, b.GID))
	}
	if a.Size != b.Size {
		out = append(out, fmt.Sprintf("size %d vs %d", a.Size, b.Size))
	} else if a.Digest != b.Digest {
		out = append(out, fmt.Sprintf("content %s vs %s", short(a.Digest), short(b.Digest)))
	}
	if a.Target != b.Target {
		out = append(out, fmt.Sprintf("link target %q vs %q", a.Target, b.Target))
	}
	if a.Major != b.Major || a.Minor != b.Minor {
		out = append(out, fmt.Sprintf("device %d,%d vs %d,%d", a.Major, a.Minor, b.Major, b.Minor))
	}
	if !maps.Equal(a.Xattrs, b.Xattrs) {
		out = append(out, fmt.Sprintf("xattrs %s vs %s", showXattrs(a.Xattrs), showXattrs(b.Xattrs)))
	}
	if !slices.Equal(a.Links, b.Links) {
		out = append(out, fmt.Sprintf("hardlinked with %s vs %s", showLinks(a.Links), showLinks(b.Links)))
	}
	return out
}

func short(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

func showXattrs(x map[string]string) string {
	if len(x) == 0 {
		return "(none)"
	}
	var kv []string
	for _, k := range slices.Sorted(maps.Keys(x)) {
		kv = append(kv, fmt.Sprintf("%s=%q", k, x[k]))
	}
	return "[" + strings.Join(kv, " ") + "]"
}

func showLinks(l []string) string {
	if len(l) == 0 {
		return "(nothing)"
	}
	return "[" + strings.Join(l, " ") + "]"
}

package format

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"text/template"
	"unicode"
)

// tablePrefix starts a --format value that prints a table.
const tablePrefix = "table"

// Funcs returns the template functions of --format, docker's:
//
//	json     the value as compact JSON ({{json .Config}})
//	join     strings.Join ({{join .Args " "}})
//	split    strings.Split
//	upper    strings.ToUpper
//	lower    strings.ToLower
//	title    the first letter of each word upper-cased
//	pad      a string with spaces before and after ({{pad .ID 1 2}})
//	truncate a string cut to at most n characters
//	println  its arguments, space-separated, and a newline
func Funcs() template.FuncMap {
	return template.FuncMap{
		"json": func(v any) (string, error) {
			var b bytes.Buffer
			enc := json.NewEncoder(&b)
			enc.SetEscapeHTML(false)
			if err := enc.Encode(v); err != nil {
				return "", err
			}
			return strings.TrimSpace(b.String()), nil
		},
		"join":  strings.Join,
		"split": strings.Split,
		"upper": strings.ToUpper,
		"lower": strings.ToLower,
		"title": title,
		"pad": func(s string, before, after int) string {
			return strings.Repeat(" ", max(before, 0)) + s + strings.Repeat(" ", max(after, 0))
		},
		"truncate": func(s string, n int) string {
			r := []rune(s)
			if n >= 0 && len(r) > n {
				return string(r[:n])
			}
			return s
		},
		"println": func(v ...any) string { return fmt.Sprintln(v...) },
	}
}

// title upper-cases the first letter of each word of s (a word starts
// after anything that is not a letter, digit or underscore).
func title(s string) string {
	var b strings.Builder
	prev := ' '
	for _, r := range s {
		if !(unicode.IsLetter(prev) || unicode.IsDigit(prev) || prev == '_') {
			r = unicode.ToTitle(r)
		}
		b.WriteRune(r)
		prev = r
	}
	return b.String()
}

// Template is a parsed --format value.
type Template struct {
	tmpl  *template.Template
	table bool
}

// Parse parses a --format value as docker reads it: "" and "table" mean
// defaultTable (a command's default, itself usually a "table ..."
// format); "json" means {{json .}}, one JSON object a line; "table "
// followed by a template prints a header line and aligns the columns; any
// other value is a Go template executed once per item. A typed `\t` or
// `\n` is a tab or a newline. Errors wrap ErrTemplate.
func Parse(format, defaultTable string) (*Template, error) {
	f := format
	switch strings.TrimSpace(f) {
	case "", tablePrefix:
		f = defaultTable
	case "json":
		f = "{{json .}}"
	}
	t := &Template{}
	if rest, ok := strings.CutPrefix(f, tablePrefix); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
		t.table, f = true, rest
	}
	f = strings.Trim(f, " ")
	f = strings.NewReplacer(`\t`, "\t", `\n`, "\n").Replace(f)
	tmpl, err := template.New("").Funcs(Funcs()).Parse(f)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTemplate, err)
	}
	t.tmpl = tmpl
	return t, nil
}

// Table reports whether the format prints a table (it began with "table").
func (t *Template) Table() bool { return t.table }

// Execute writes v rendered by the template, then a newline.
func (t *Template) Execute(w io.Writer, v any) error {
	var b bytes.Buffer
	if err := t.tmpl.Execute(&b, v); err != nil {
		return err
	}
	b.WriteByte('\n')
	_, err := w.Write(b.Bytes())
	return err
}

// Printer prints rows through a Template: one line each, and for a table
// the header line first (also when there is no row) and the columns
// aligned on the tabs.
type Printer struct {
	t       *Template
	out     io.Writer
	tw      *tabwriter.Writer
	headers map[string]string
	started bool
}

// NewPrinter returns a Printer of rows to out. headers names the column
// header of each field a row has ("ID": "IMAGE ID"); a table's header
// line is the template executed over it, an unknown field giving "".
func (t *Template) NewPrinter(out io.Writer, headers map[string]string) *Printer {
	p := &Printer{t: t, out: out, headers: headers}
	if t.table {
		// docker's column layout: at least 10 wide, 3 spaces between.
		p.tw = tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)
		p.out = p.tw
	}
	return p
}

// Print writes one row.
func (p *Printer) Print(row any) error {
	p.header()
	return p.t.Execute(p.out, row)
}

// header writes the header line of a table, once.
func (p *Printer) header() {
	if p.started || !p.t.table {
		p.started = true
		return
	}
	p.started = true
	h, err := p.t.tmpl.Clone()
	if err != nil {
		return
	}
	// A header the template cannot render (a function that wants
	// another type than the header's string) is left out.
	var b bytes.Buffer
	if h.Option("missingkey=zero").Execute(&b, p.headers) == nil {
		b.WriteByte('\n')
		p.out.Write(b.Bytes())
	}
}

// Flush ends the output: a table's header if no row was printed, and the
// aligned columns.
func (p *Printer) Flush() error {
	p.header()
	if p.tw != nil {
		return p.tw.Flush()
	}
	return nil
}

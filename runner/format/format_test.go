package format_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/runner/format"
)

func TestSize(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0B", 512: "512B", 999: "999B", 1000: "1kB", 12345: "12.3kB", 1 << 20: "1.05MB",
		80_000_000: "80MB", 79_999_999: "80MB", 1_234_567_890: "1.23GB", 1 << 62: "4.61EB",
	} {
		if got := format.Size(n); got != want {
			t.Errorf("Size(%d) = %q, want %q", n, got, want)
		}
	}
	if got := format.SizePrecision(1<<20, 4); got != "1.049MB" {
		t.Errorf("SizePrecision(1MiB, 4) = %q", got)
	}
}

func TestDuration(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "Less than a second"},
		{999 * time.Millisecond, "Less than a second"},
		{time.Second, "1 second"},
		{59 * time.Second, "59 seconds"},
		{60 * time.Second, "About a minute"},
		{119 * time.Second, "About a minute"},
		{2 * time.Minute, "2 minutes"},
		{59 * time.Minute, "59 minutes"},
		{60 * time.Minute, "About an hour"},
		{90 * time.Minute, "2 hours"},
		{47 * time.Hour, "47 hours"},
		{48 * time.Hour, "2 days"},
		{13 * 24 * time.Hour, "13 days"},
		{14 * 24 * time.Hour, "2 weeks"},
		{59 * 24 * time.Hour, "8 weeks"},
		{60 * 24 * time.Hour, "2 months"},
		{729 * 24 * time.Hour, "24 months"},
		{730 * 24 * time.Hour, "2 years"},
	} {
		if got := format.Duration(tc.d); got != tc.want {
			t.Errorf("Duration(%s) = %q, want %q", tc.d, got, tc.want)
		}
	}
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := format.Ago(now, now.Add(-3*time.Hour)); got != "3 hours ago" {
		t.Errorf("Ago = %q", got)
	}
	if got := format.Ago(now, time.Time{}); got != "N/A" {
		t.Errorf("Ago(zero) = %q", got)
	}
}

func TestEllipsisAndTruncateID(t *testing.T) {
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"short", 45, "short"},
		{"abcdef", 6, "abcdef"},
		{"abcdefg", 6, "abcde…"},
		{"héllo wörld", 5, "héll…"},
		{"x", 0, ""},
	} {
		if got := format.Ellipsis(tc.s, tc.n); got != tc.want {
			t.Errorf("Ellipsis(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
	}
	if got := format.TruncateID("sha256:0123456789abcdef0123"); got != "0123456789ab" {
		t.Errorf("TruncateID = %q", got)
	}
	if got := format.TruncateID("abc"); got != "abc" {
		t.Errorf("TruncateID(abc) = %q", got)
	}
}

type row struct {
	Name string
	Tags []string
	Size int64
}

func TestTemplateFuncs(t *testing.T) {
	r := row{Name: "hello world-x", Tags: []string{"a", "b"}, Size: 3}
	for format_, want := range map[string]string{
		`{{.Name}}`:                      "hello world-x\n",
		`{{json .}}`:                     `{"Name":"hello world-x","Tags":["a","b"],"Size":3}` + "\n",
		`json`:                           `{"Name":"hello world-x","Tags":["a","b"],"Size":3}` + "\n",
		`{{json .Tags}}`:                 `["a","b"]` + "\n",
		`{{join .Tags ","}}`:             "a,b\n",
		`{{split .Name " "}}`:            "[hello world-x]\n",
		`{{upper .Name}}|{{lower "AB"}}`: "HELLO WORLD-X|ab\n",
		`{{title .Name}}`:                "Hello World-X\n",
		`{{pad .Name 1 2}}|`:             " hello world-x  |\n",
		`{{truncate .Name 5}}`:           "hello\n",
		`{{println .Size}}`:              "3\n\n",
		`{{.Name}}\t{{.Size}}`:           "hello world-x\t3\n",
		`{{json "<missing>"}}`:           `"<missing>"` + "\n",
	} {
		tmpl, err := format.Parse(format_, "unused")
		if err != nil {
			t.Errorf("Parse(%q): %v", format_, err)
			continue
		}
		var b bytes.Buffer
		if err := tmpl.Execute(&b, r); err != nil {
			t.Errorf("Execute(%q): %v", format_, err)
			continue
		}
		if b.String() != want {
			t.Errorf("%s: %q, want %q", format_, b.String(), want)
		}
	}
	if _, err := format.Parse("{{nosuchfunc .}}", ""); !errors.Is(err, format.ErrTemplate) {
		t.Errorf("unknown function: %v, want ErrTemplate", err)
	}
	if _, err := format.Parse("{{.Name", ""); !errors.Is(err, format.ErrTemplate) {
		t.Errorf("unclosed action: %v, want ErrTemplate", err)
	}
	tmpl, _ := format.Parse("{{.Nope}}", "")
	if err := tmpl.Execute(&bytes.Buffer{}, r); err == nil {
		t.Error("an unknown field executed without error")
	}
}

func TestPrinter(t *testing.T) {
	headers := map[string]string{"Name": "NAME", "Size": "SIZE"}
	rows := []row{{Name: "a", Size: 1}, {Name: "a-much-longer-name", Size: 22}}
	print := func(f string, rows []row) string {
		t.Helper()
		tmpl, err := format.Parse(f, `table {{.Name}}\t{{.Size}}`)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		p := tmpl.NewPrinter(&b, headers)
		for _, r := range rows {
			if err := p.Print(r); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.Flush(); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	want := "NAME                 SIZE\n" +
		"a                    1\n" +
		"a-much-longer-name   22\n"
	for _, f := range []string{"", "table", `table {{.Name}}\t{{.Size}}`} {
		if got := print(f, rows); got != want {
			t.Errorf("format %q:\n%s\nwant\n%s", f, got, want)
		}
	}
	if got := print("", nil); got != "NAME      SIZE\n" {
		t.Errorf("empty table: %q, want the header alone", got)
	}
	if got := print(`{{.Name}}:{{.Size}}`, rows); got != "a:1\na-much-longer-name:22\n" {
		t.Errorf("plain format: %q", got)
	}
	if got := print(`table {{.Name}}\t{{.Unknown}}`, nil); strings.TrimSpace(got) != "NAME" {
		t.Errorf("header of an unknown field: %q", got)
	}
}

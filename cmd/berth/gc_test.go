package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/gc"
	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/storage/filesystem"
	"github.com/berth-registry/berth/storage/store"
)

// gcRoot fills a filesystem root with two images of repository app sharing
// a layer (tags a and b), deletes image a, starts an upload that nobody
// finishes, and makes everything two hours old. A collection with the
// default grace (1h) then finds 3 unreferenced blobs (image a's manifest,
// config and layer) among 7, and 2 unreferenced layer links among 5.
func gcRoot(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	root := t.TempDir()
	d, err := filesystem.New(root)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	st := store.New(d, store.Options{})
	push := func(b []byte) digest.Digest {
		dg := digest.FromBytes(b)
		if _, err := st.PutBlob(ctx, "app", bytes.NewReader(b), dg); err != nil {
			t.Fatal(err)
		}
		return dg
	}
	var first digest.Digest
	for _, name := range []string{"a", "b"} {
		cfg := []byte(`{"os":"` + name + `"}`)
		layer := []byte("layer " + name)
		cd, ld, sd := push(cfg), push(layer), push([]byte("shared"))
		body := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
			`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},`+
			`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d},`+
			`{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":6}]}`, cd, len(cfg), ld, len(layer), sd)
		res, err := st.PutManifest(ctx, "app", []string{name}, "", "application/vnd.oci.image.manifest.v1+json", []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if first == "" {
			first = res.Digest
		}
	}
	if err := st.DeleteManifest(ctx, "app", first); err != nil {
		t.Fatal(err)
	}
	if _, err := st.StartUpload(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-2 * time.Hour)
	err = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, past, past)
	})
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// regularFiles lists the regular files under root with their sizes and
// modification times. (A collection may create and remove files of its own,
// and directories, even in a dry run.)
func regularFiles(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %d %s\n", p, info.Size(), info.ModTime())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// runGCJSON runs berth gc with args and --json, and returns the report,
// checking that stdout holds nothing but it.
func runGCJSON(t *testing.T, args ...string) gc.Report {
	t.Helper()
	ta := newTestApp(nil)
	if code := ta.run(append([]string{"gc", "--json"}, args...)); code != exitOK {
		t.Fatalf("berth gc --json %q: exit %d, stderr %s", args, code, ta.stderr.String())
	}
	dec := json.NewDecoder(bytes.NewReader(ta.stdout.Bytes()))
	var rep gc.Report
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("stdout is not a JSON report: %v\n%s", err, ta.stdout.String())
	}
	if rest := strings.TrimSpace(ta.stdout.String()[dec.InputOffset():]); rest != "" {
		t.Fatalf("stdout holds more than the report: %q", rest)
	}
	if !strings.Contains(ta.stderr.String(), "gc: started") {
		t.Errorf("no log on stderr: %q", ta.stderr.String())
	}
	return rep
}

func counts(rep gc.Report) string {
	d := rep.Deleted
	return fmt.Sprintf("tags=%d manifests=%d blobs=%d layerLinks=%d uploads=%d", d.Tags, d.Manifests, d.Blobs, d.LayerLinks, d.Uploads)
}

func TestGC(t *testing.T) {
	root := gcRoot(t)
	before := regularFiles(t, root)

	ta := newTestApp(nil)
	if code := ta.run([]string{"gc", "--root", root, "--dry-run"}); code != exitOK {
		t.Fatalf("gc --dry-run: exit %d, stderr %s", code, ta.stderr.String())
	}
	out := ta.stdout.String()
	for _, want := range []string{"gc: would delete (cutoff ", "  blobs             3  (", "  layer links       2\n", "  uploads           0\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("gc --dry-run printed\n%s\nwithout %q", out, want)
		}
	}
	if after := regularFiles(t, root); after != before {
		t.Errorf("gc --dry-run changed the root:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	ta = newTestApp(nil)
	if code := ta.run([]string{"gc", "--root", root, "--verbose"}); code != exitOK {
		t.Fatalf("gc: exit %d, stderr %s", code, ta.stderr.String())
	}
	out = ta.stdout.String()
	for _, want := range []string{"gc: deleted (cutoff ", "  blobs             3  (", "  layer links       2\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("gc printed\n%s\nwithout %q", out, want)
		}
	}
	if strings.Contains(out, "spared") {
		t.Errorf("gc printed a spared section with nothing spared:\n%s", out)
	}
	if got := ta.stderr.String(); !strings.Contains(got, "level=DEBUG") {
		t.Errorf("gc --verbose logged no item: %q", got)
	}

	rep := runGCJSON(t, "--root", root)
	if got := counts(rep); got != "tags=0 manifests=0 blobs=0 layerLinks=0 uploads=0" {
		t.Errorf("second gc deleted %s, want nothing", got)
	}
}

// TestGCJSON checks the shape of the --json report, and that a dry run
// plans exactly what the real run then deletes, deleting nothing itself.
func TestGCJSON(t *testing.T) {
	root := gcRoot(t)
	before := regularFiles(t, root)

	ta := newTestApp(nil)
	if code := ta.run([]string{"gc", "--root", root, "--dry-run", "--json", "--explain"}); code != exitOK {
		t.Fatalf("exit %d, stderr %s", code, ta.stderr.String())
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(ta.stdout.Bytes(), &fields); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, ta.stdout.String())
	}
	for _, k := range []string{"dryRun", "start", "cutoff", "duration", "tags", "manifests", "blobs", "layerLinks",
		"uploads", "reclaimableBytes", "kept", "deleted", "spared"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("report lacks %q: %s", k, ta.stdout.String())
		}
	}
	if !strings.HasPrefix(ta.stdout.String(), "{\n  \"") {
		t.Errorf("report is not indented: %.40q", ta.stdout.String())
	}
	var plan gc.Report
	if err := json.Unmarshal(ta.stdout.Bytes(), &plan); err != nil {
		t.Fatal(err)
	}
	if !plan.DryRun || len(plan.Blobs) != 3 || len(plan.LayerLinks) != 2 || len(plan.Kept) == 0 {
		t.Errorf("dry run report: dryRun %v, %d blobs, %d layer links, %d kept; want true, 3, 2, some",
			plan.DryRun, len(plan.Blobs), len(plan.LayerLinks), len(plan.Kept))
	}
	var size int64
	for _, b := range plan.Blobs {
		size += b.Size
	}
	if size == 0 || plan.ReclaimableBytes != size || plan.Deleted.Bytes != size {
		t.Errorf("reclaimable %d, deleted bytes %d; want the blobs' %d", plan.ReclaimableBytes, plan.Deleted.Bytes, size)
	}
	if !plan.Cutoff.Equal(plan.Start.Add(-gc.DefaultGrace)) {
		t.Errorf("cutoff %s, want start %s less the default grace", plan.Cutoff, plan.Start)
	}
	if after := regularFiles(t, root); after != before {
		t.Errorf("the dry run changed the root:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	done := runGCJSON(t, "--root", root)
	if done.DryRun || !reflect.DeepEqual(done.Blobs, plan.Blobs) || !reflect.DeepEqual(done.LayerLinks, plan.LayerLinks) {
		t.Errorf("the real run planned %v %v, the dry run %v %v", done.Blobs, done.LayerLinks, plan.Blobs, plan.LayerLinks)
	}
	if done.Deleted != plan.Deleted {
		t.Errorf("the real run deleted %+v, the dry run planned %+v", done.Deleted, plan.Deleted)
	}
	if regularFiles(t, root) == before {
		t.Error("the real run deleted nothing")
	}
}

// TestGCFlags: each flag reaches the run, and flags override the gc
// section of the configuration.
func TestGCFlags(t *testing.T) {
	root := gcRoot(t)
	cfgFile := filepath.Join(t.TempDir(), "berth.yaml")
	err := os.WriteFile(cfgFile, []byte(`gc:
  grace: 3h
  uploadMaxAge: 3h
  dryRun: true
  deleteUntagged: true
  retention:
    - repositories: app
      olderThan: 1h
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		args  []string
		grace time.Duration // the cutoff's distance from the start
		want  string        // counts(report)
	}{
		{"defaults", nil, time.Hour, "tags=0 manifests=0 blobs=3 layerLinks=2 uploads=0"},
		{"no grace", []string{"--grace", "0s"}, 0, "tags=0 manifests=0 blobs=3 layerLinks=2 uploads=0"},
		{"grace longer than the content's age", []string{"--grace", "3h", "--upload-max-age", "3h"}, 3 * time.Hour,
			"tags=0 manifests=0 blobs=0 layerLinks=0 uploads=0"},
		{"idle uploads", []string{"--upload-max-age", "90m"}, time.Hour, "tags=0 manifests=0 blobs=3 layerLinks=2 uploads=1"},
		{"retention keeps untagged manifests", []string{"--retention", "app:older-than=1h"}, time.Hour,
			"tags=1 manifests=0 blobs=3 layerLinks=2 uploads=0"},
		{"retention with keep", []string{"--retention", "app:older-than=1h,keep=[ab]"}, time.Hour,
			"tags=0 manifests=0 blobs=3 layerLinks=2 uploads=0"},
		{"retention sparing recent tags", []string{"--retention", "app:older-than=3h"}, time.Hour,
			"tags=0 manifests=0 blobs=3 layerLinks=2 uploads=0"},
		{"retention matching nothing", []string{"--retention", "other/*:keep-last=0,older-than=1m"}, time.Hour,
			"tags=0 manifests=0 blobs=3 layerLinks=2 uploads=0"},
		{"retention and delete-untagged", []string{"--retention", "app:keep-last=0,older-than=1h", "--delete-untagged"}, time.Hour,
			"tags=1 manifests=1 blobs=7 layerLinks=5 uploads=0"},
		// Retention does not wait for the grace; the manifest it leaves
		// untagged is newer than the cutoff and stays.
		{"config", []string{"--config", cfgFile}, 3 * time.Hour, "tags=1 manifests=0 blobs=0 layerLinks=0 uploads=0"},
		{"flags over config", []string{"--config", cfgFile, "--grace", "1h"}, time.Hour,
			"tags=1 manifests=1 blobs=7 layerLinks=5 uploads=0"},
		{"--retention replaces the config's rules", []string{"--config", cfgFile, "--grace", "1h", "--retention", "other:keep-last=1"}, time.Hour,
			"tags=0 manifests=0 blobs=3 layerLinks=2 uploads=0"},
		{"empty --retention clears them", []string{"--config", cfgFile, "--grace", "1h", "--retention", ""}, time.Hour,
			"tags=0 manifests=0 blobs=3 layerLinks=2 uploads=0"},
		{"--delete-untagged=false over config", []string{"--config", cfgFile, "--grace", "1h", "--delete-untagged=false"}, time.Hour,
			"tags=1 manifests=0 blobs=3 layerLinks=2 uploads=0"},
		{"--upload-max-age over config", []string{"--config", cfgFile, "--grace", "1h", "--upload-max-age", "1h"}, time.Hour,
			"tags=1 manifests=1 blobs=7 layerLinks=5 uploads=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := regularFiles(t, root)
			args := append([]string{"--root", root}, tc.args...)
			if !strings.Contains(strings.Join(tc.args, " "), "--config") {
				args = append(args, "--dry-run")
			}
			rep := runGCJSON(t, args...)
			if !rep.DryRun {
				t.Fatal("not a dry run: the config's gc.dryRun or --dry-run was lost")
			}
			if got := counts(rep); got != tc.want {
				t.Errorf("planned %s, want %s", got, tc.want)
			}
			if got := rep.Start.Sub(rep.Cutoff); got != tc.grace {
				t.Errorf("cutoff is %s before the start, want %s", got, tc.grace)
			}
			if after := regularFiles(t, root); after != before {
				t.Errorf("the dry run changed the root")
			}
		})
	}
}

func TestGCUsageErrors(t *testing.T) {
	root := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--retention", "app:keep-last=x"}, `--retention "app:keep-last=x": keep-last=x: want a non-negative integer`},
		{[]string{"--retention", "ok:keep-last=1", "--retention", ":keep-last=1"}, `--retention ":keep-last=1": missing the repository GLOB`},
		{[]string{"--retention", "app:bogus=1"}, `unknown option "bogus"`},
		{[]string{"--retention", "app/[:keep-last=1"}, `gc.retention[0].repositories: "app/[" is not a valid glob`},
		{[]string{"--retention", "app:keep=v("}, `gc.retention[0].keepTags: "v(" is not a Go regular expression`},
		{[]string{"--retention", "app:older-than=30"}, `older-than=30: want a non-negative duration`},
		{[]string{"--grace", "-1s"}, `gc.grace: -1s must not be negative`},
		{[]string{"--grace", "soon"}, `invalid argument "soon" for "--grace"`},
		{[]string{"--upload-max-age", "30m"}, `gc.uploadMaxAge: 30m0s must be at least gc.grace (1h0m0s)`},
		{[]string{"--bogus"}, "unknown flag: --bogus"},
		{[]string{"extra"}, `unknown command "extra"`},
	} {
		ta := newTestApp(nil)
		code := ta.run(append([]string{"gc", "--root", root}, tc.args...))
		if code != exitUsage || !strings.Contains(ta.stderr.String(), tc.want) {
			t.Errorf("gc %q: exit %d, stderr %q; want %d and %q", tc.args, code, ta.stderr.String(), exitUsage, tc.want)
		}
		if ta.stdout.Len() != 0 {
			t.Errorf("gc %q printed %q on stdout", tc.args, ta.stdout.String())
		}
	}
}

func TestParseRetentionRule(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want config.RetentionRule
		err  string // "" for valid
	}{
		{in: "**", want: config.RetentionRule{Repositories: "**"}},
		{in: "team/*:keep-last=5", want: config.RetentionRule{Repositories: "team/*", KeepLast: 5}},
		{in: "ci/**:keep-last=10,older-than=720h", want: config.RetentionRule{Repositories: "ci/**", KeepLast: 10, OlderThan: 720 * time.Hour}},
		{in: "**:older-than=90m,keep=latest,keep=v\\d+", want: config.RetentionRule{Repositories: "**", OlderThan: 90 * time.Minute,
			KeepTags: []string{"latest", `v\d+`}}},
		{in: "a:keep=v\\d{1,3},keep-last=2", want: config.RetentionRule{Repositories: "a", KeepLast: 2, KeepTags: []string{`v\d{1,3}`}}},
		{in: "a:keep=x,y,z", want: config.RetentionRule{Repositories: "a", KeepTags: []string{"x,y,z"}}},
		{in: "a:keep=a=b", want: config.RetentionRule{Repositories: "a", KeepTags: []string{"a=b"}}},
		{in: "a:keep=(1|2):x", want: config.RetentionRule{Repositories: "a", KeepTags: []string{"(1|2):x"}}},
		{in: "a:keep-last=0", want: config.RetentionRule{Repositories: "a"}},
		{in: ":keep-last=1", err: "missing the repository GLOB"},
		{in: "a:", err: `nothing after ":"`},
		{in: "a:keep-last", err: `option "keep-last": want NAME=VALUE`},
		{in: "a:keep-last=-1", err: "keep-last=-1: want a non-negative integer"},
		{in: "a:keep-last=1,keep-last=2", err: "keep-last given twice"},
		{in: "a:older-than=1h,older-than=2h", err: "older-than given twice"},
		{in: "a:older-than=-1h", err: "older-than=-1h: want a non-negative duration"},
		{in: "a:older-than=7d", err: "older-than=7d: want a non-negative duration"},
		{in: "a:keep=", err: "keep= needs a regular expression"},
		{in: "a:keepLast=1", err: `unknown option "keepLast"`},
		{in: "a:,keep-last=1", err: `option "": want NAME=VALUE`},
	} {
		got, err := parseRetentionRule(tc.in)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("parseRetentionRule(%q) = %+v, %v; want error %q", tc.in, got, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("parseRetentionRule(%q): %v", tc.in, err)
		case tc.err == "" && !reflect.DeepEqual(got, tc.want):
			t.Errorf("parseRetentionRule(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

// TestGCOptions: the mapping of the configuration onto gc.Options.
func TestGCOptions(t *testing.T) {
	c := config.Default().GC
	opts, err := gcOptions(c)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Grace != time.Hour || opts.UploadMaxAge != 24*time.Hour || opts.DeleteUntagged || opts.DryRun || opts.Retention != nil {
		t.Errorf("default options %+v", opts)
	}
	c.Grace = 0
	c.Retention = []config.RetentionRule{{Repositories: "a/**", KeepLast: 2, KeepTags: []string{"x"}, OlderThan: time.Hour}}
	opts, err = gcOptions(c)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Grace != gc.NoGrace {
		t.Errorf("grace 0 gives Options.Grace %s, want gc.NoGrace", opts.Grace)
	}
	want := []gc.RetentionRule{{Repositories: "a/**", KeepLast: 2, KeepTags: []string{"x"}, OlderThan: time.Hour}}
	if !reflect.DeepEqual(opts.Retention, want) {
		t.Errorf("retention %+v, want %+v", opts.Retention, want)
	}
	c.Retention = append(c.Retention, config.RetentionRule{Repositories: "b", KeepTags: []string{"("}})
	if _, err := gcOptions(c); err == nil || !strings.Contains(err.Error(), "gc.retention[1]") {
		t.Errorf("invalid rule: err = %v, want one naming gc.retention[1]", err)
	}
}

func TestGCSummary(t *testing.T) {
	start := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	d1, d2 := digest.FromString("1"), digest.FromString("2")
	rep := gc.Report{
		Start: start, Cutoff: start.Add(-time.Hour), Duration: 1500 * time.Millisecond,
		Tags:       []gc.TagItem{{Repository: "app", Tag: "old", Digest: d1, Pushed: start.Add(-48 * time.Hour), Rule: "**"}},
		Manifests:  []gc.ManifestItem{{Repository: "app", Digest: d1}},
		Blobs:      []gc.BlobItem{{Digest: d2, Size: 3 << 20}},
		LayerLinks: []gc.LinkItem{{Repository: "app", Digest: d2}},
		Uploads:    []gc.UploadItem{{Repository: "app", ID: "u1", LastActivity: start.Add(-30 * time.Hour)}},
		Kept:       []gc.KeptItem{{Kind: "layerLink", Repository: "app", Digest: d1, Reason: "referenced by app@" + d1.String()}},
		Deleted:    gc.Counts{Tags: 1, Manifests: 1, Blobs: 1, Bytes: 3 << 20, LayerLinks: 1, Uploads: 1},
		Spared:     gc.Counts{Blobs: 2, Bytes: 2048},
	}
	var b bytes.Buffer
	if err := writeGCSummary(&b, rep, true); err != nil {
		t.Fatal(err)
	}
	want := `gc: deleted (cutoff 2025-06-01T11:00:00Z, took 1.5s):
  tags              1
  manifests         1
  blobs             1  (3.0 MiB)
  layer links       1
  uploads           1
gc: spared, as clients relied on them during the run:
  tags              0
  manifests         0
  blobs             2  (2.0 KiB)
  layer links       0
  uploads           0
gc: plan:
  tag app:old -> ` + d1.String() + `, pushed 2025-05-30T12:00:00Z (rule **)
  manifest app@` + d1.String() + `
  blob ` + d2.String() + ` (3.0 MiB)
  layer link app@` + d2.String() + `
  upload app/u1, idle since 2025-05-31T06:00:00Z
gc: kept:
  layer link app@` + d1.String() + `: referenced by app@` + d1.String() + `
`
	if b.String() != want {
		t.Errorf("summary:\n%s\nwant:\n%s", b.String(), want)
	}

	b.Reset()
	rep.DryRun, rep.Spared = true, gc.Counts{}
	if err := writeGCSummary(&b, rep, false); err != nil {
		t.Fatal(err)
	}
	if got := b.String(); !strings.HasPrefix(got, "gc: would delete (cutoff") || strings.Contains(got, "plan:") || strings.Contains(got, "spared") {
		t.Errorf("dry-run summary without --explain:\n%s", got)
	}
}

func TestGCHelp(t *testing.T) {
	ta := newTestApp(nil)
	if code := ta.run([]string{"gc", "--help"}); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"--retention RULE", "--upload-max-age", "--delete-untagged", "--explain", "--json",
		"keep-last=N", "older-than=DURATION", "keep=REGEXP", "gc.retention", "Exit codes"} {
		if !strings.Contains(ta.stdout.String(), want) {
			t.Errorf("gc --help lacks %q", want)
		}
	}
}

// TestConfigEnvGC: the gc keys have variables, except the list of
// retention rules, which "berth config env" says is YAML only.
func TestConfigEnvGC(t *testing.T) {
	ta := newTestApp(nil)
	if code := ta.run([]string{"config", "env"}); code != exitOK {
		t.Fatalf("exit %d: %s", code, ta.stderr.String())
	}
	out := ta.stdout.String()
	for _, w := range []string{"BERTH_GC_INTERVAL", "BERTH_GC_GRACE", "BERTH_GC_UPLOADMAXAGE", "gc.retention has no variable"} {
		if !strings.Contains(out, w) {
			t.Errorf("config env lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "BERTH_GC_RETENTION") {
		t.Errorf("config env lists a variable for gc.retention:\n%s", out)
	}
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/gc"
	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/storage/store"
)

// retentionSyntax documents --retention, in "berth gc --help".
const retentionSyntax = `A retention RULE is GLOB, optionally followed by ":" and comma-separated
options:

  GLOB[:keep-last=N][,keep=REGEXP]...[,older-than=DURATION]

  GLOB                  repositories the rule applies to: path.Match syntax
                        per name component ("team/*" matches "team/app", not
                        "team/app/x"); "**" as a whole component matches any
                        number of components ("team/**", "**")
  keep-last=N           keep the N most recently pushed tags
  keep=REGEXP           keep the tags REGEXP matches in whole (Go syntax);
                        repeat for more. A comma inside REGEXP is kept when
                        what follows it is not another option
  older-than=DURATION   delete only tags pushed more than DURATION ago
                        (Go syntax: 720h, 90m)

A tag of a repository the rule applies to is deleted when no keep= pattern
matches it, it is not among the keep-last most recent, and it is older than
older-than. A rule with neither keep-last nor older-than deletes nothing (it
still shields its repositories from later rules). The first rule whose GLOB
matches a repository applies to it; a repository no rule matches keeps all
its tags. Repeat --retention for several rules, in order; given at least
once, they replace the configuration's gc.retention (--retention '' alone:
no rules). Example:

  --retention 'ci/**:keep-last=10,older-than=720h' \
  --retention '**:keep-last=50,keep=latest,keep=v\d+\.\d+\.\d+'`

func (a *app) newGCCmd() *cobra.Command {
	var configFile, root string
	var dryRun, asJSON, explain, deleteUntagged, verbose bool
	var grace, uploadMaxAge time.Duration
	var retention []string
	cmd := &cobra.Command{
		Use: "gc [--config FILE] [--root DIR] [--dry-run] [--json] [--explain] [--grace D] " +
			"[--delete-untagged] [--upload-max-age D] [--retention RULE]... [--verbose]",
		Short: "Delete unreferenced content, expired tags and idle uploads, while the registry keeps running",
		Long: `Collect garbage in the configured storage, once: tags that --retention rules
let go, then blob data and repository layer links that no kept manifest
references, untagged manifests with --delete-untagged, and uploads idle
longer than --upload-max-age. The registry need not stop: nothing written or
relied on by a client within --grace before the run started is deleted (the
gc package documentation states the contract).

The configuration is read as by "berth serve"; its gc section gives the
defaults of the flags (gc.grace, gc.deleteUntagged, gc.uploadMaxAge,
gc.dryRun, gc.retention), which override it. "berth serve" runs the same
collection every gc.interval.

Output: a summary of what was deleted per kind (with --dry-run, what would
be), and with --explain the plan item by item and why each kept item stays.
With --json, the report as indented JSON on stdout and nothing else there
(logs go to stderr); its field names are a stable interface.

` + retentionSyntax + `

Exit codes: 0 on success, 2 for a bad flag, rule or configuration, 1 otherwise.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			flags := cmd.Flags()
			var rules []config.RetentionRule
			if flags.Changed("retention") {
				var err error
				if rules, err = parseRetentionRules(retention); err != nil {
					return usageError(err)
				}
			}
			cfg, err := config.Load(configFile, a.lookupEnv, func(c *config.Config) {
				if flags.Changed("root") {
					c.Storage.Filesystem.Root = root
				}
				if flags.Changed("dry-run") {
					c.GC.DryRun = dryRun
				}
				if flags.Changed("grace") {
					c.GC.Grace = grace
				}
				if flags.Changed("delete-untagged") {
					c.GC.DeleteUntagged = deleteUntagged
				}
				if flags.Changed("upload-max-age") {
					c.GC.UploadMaxAge = uploadMaxAge
				}
				if flags.Changed("retention") {
					c.GC.Retention = rules
				}
			})
			if err != nil {
				return usageError(err)
			}
			opts, err := gcOptions(cfg.GC)
			if err != nil {
				return usageError(err)
			}
			opts.Caches = cacheRules(cfg.Proxy)
			opts.RecordAs = "berth gc"
			opts.Explain = explain
			return a.gc(cmd.Context(), cfg, opts, gcOutput{json: asJSON, verbose: verbose})
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "YAML config `FILE` (none: defaults and environment only)")
	f.StringVar(&root, "root", "", "collect under `DIR`, overriding storage.filesystem.root (default ./data)")
	f.BoolVar(&dryRun, "dry-run", false, "plan and print what would be deleted; delete nothing (overrides gc.dryRun)")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON on stdout")
	f.BoolVar(&explain, "explain", false, "print the plan item by item, and why each kept item stays")
	f.DurationVar(&grace, "grace", 0, "keep anything written or relied on within `DURATION` before the run started; 0: no grace, only while nobody pushes (overrides gc.grace, default 1h)")
	f.BoolVar(&deleteUntagged, "delete-untagged", false, "delete manifests that no tag, kept index or kept subject needs (overrides gc.deleteUntagged)")
	f.DurationVar(&uploadMaxAge, "upload-max-age", 0, "purge uploads idle for `DURATION`, at least --grace (overrides gc.uploadMaxAge, default 24h)")
	f.StringArrayVar(&retention, "retention", nil, "delete tags by `RULE` (see below); repeat for more; replaces gc.retention")
	f.BoolVarP(&verbose, "verbose", "v", false, "log each item deleted (or that would be)")
	return cmd
}

// gcOutput says how "berth gc" prints its report.
type gcOutput struct {
	json    bool // the report as JSON on stdout
	verbose bool // debug logs: every item
}

// gcGrace turns a configured grace into gc.Options.Grace: a user's 0 is no
// grace, while a zero Options.Grace means the default.
func gcGrace(d time.Duration) time.Duration {
	if d == 0 {
		return gc.NoGrace
	}
	return d
}

// gcOptions turns the gc section of the configuration into the options of
// gc.Run (without a Logger). Rules are checked by gc.RetentionRule.Validate,
// whose verdict prevails over the configuration's own checks.
func gcOptions(c config.GC) (gc.Options, error) {
	opts := gc.Options{
		Grace:          gcGrace(c.Grace),
		UploadMaxAge:   c.UploadMaxAge,
		DeleteUntagged: c.DeleteUntagged,
		DryRun:         c.DryRun,
		Reserve:        c.ReserveBytes,
	}
	if c.ReserveBytes == 0 {
		opts.Reserve = -1 // none
	}
	for i, r := range c.Retention {
		rule := gc.RetentionRule{
			Repositories: r.Repositories,
			KeepLast:     r.KeepLast,
			KeepTags:     r.KeepTags,
			OlderThan:    r.OlderThan,
		}
		if err := rule.Validate(); err != nil {
			return opts, fmt.Errorf("gc.retention[%d]: %w", i, err)
		}
		opts.Retention = append(opts.Retention, rule)
	}
	return opts, nil
}

// cacheRules are the lifetimes of the pull-through cache's upstreams.
func cacheRules(p config.Proxy) []gc.CacheRule {
	var out []gc.CacheRule
	for _, u := range p.Upstreams {
		out = append(out, gc.CacheRule{Prefix: u.Prefix, ExpireAfter: u.ExpireAfter, MaxBytes: u.MaxBytes})
	}
	return out
}

// parseRetentionRules parses the values of --retention (see
// retentionSyntax). Empty values are skipped, so that an empty --retention
// alone gives no rules. Errors name the value at fault.
func parseRetentionRules(values []string) ([]config.RetentionRule, error) {
	rules := []config.RetentionRule{}
	for _, v := range values {
		if v == "" {
			continue
		}
		r, err := parseRetentionRule(v)
		if err != nil {
			return nil, fmt.Errorf("--retention %q: %w", v, err)
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// retentionOptions are the option names of a --retention RULE.
var retentionOptions = []string{"keep-last", "keep", "older-than"}

// parseRetentionRule parses one RULE: GLOB[:OPTION[,OPTION]...]. It checks
// the syntax and the numbers; gcOptions checks the glob and the patterns.
func parseRetentionRule(s string) (config.RetentionRule, error) {
	glob, opts, hasOpts := strings.Cut(s, ":")
	r := config.RetentionRule{Repositories: glob}
	if glob == "" {
		return r, errors.New("missing the repository GLOB before the options")
	}
	if !hasOpts {
		return r, nil
	}
	if opts == "" {
		return r, errors.New(`nothing after ":": want options such as keep-last=10`)
	}
	// Split at commas, then glue back the pieces that do not start with an
	// option name: they belong to the keep= pattern before them ("keep=v{1,3}").
	var parts []string
	for p := range strings.SplitSeq(opts, ",") {
		name, _, _ := strings.Cut(p, "=")
		isOption := strings.Contains(p, "=") && slices.Contains(retentionOptions, name)
		if !isOption && len(parts) > 0 && strings.HasPrefix(parts[len(parts)-1], "keep=") {
			parts[len(parts)-1] += "," + p
			continue
		}
		parts = append(parts, p)
	}
	var seenLast, seenAge bool
	for _, p := range parts {
		name, value, ok := strings.Cut(p, "=")
		if !ok {
			return r, fmt.Errorf("option %q: want NAME=VALUE with NAME one of keep-last, keep, older-than", p)
		}
		switch name {
		case "keep-last":
			if seenLast {
				return r, errors.New("keep-last given twice")
			}
			seenLast = true
			n, err := strconv.Atoi(value)
			if err != nil || n < 0 {
				return r, fmt.Errorf("keep-last=%s: want a non-negative integer", value)
			}
			r.KeepLast = n
		case "older-than":
			if seenAge {
				return r, errors.New("older-than given twice")
			}
			seenAge = true
			d, err := time.ParseDuration(value)
			if err != nil || d < 0 {
				return r, fmt.Errorf("older-than=%s: want a non-negative duration such as 720h or 90m", value)
			}
			r.OlderThan = d
		case "keep":
			if value == "" {
				return r, errors.New("keep= needs a regular expression")
			}
			r.KeepTags = append(r.KeepTags, value)
		default:
			return r, fmt.Errorf("unknown option %q: want keep-last, keep or older-than", name)
		}
	}
	return r, nil
}

// gc runs one collection with opts over the storage of cfg and prints its
// report on stdout.
func (a *app) gc(ctx context.Context, cfg *config.Config, opts gc.Options, out gcOutput) error {
	if ctx == nil {
		ctx = context.Background()
	}
	logCfg := cfg.Log
	if out.verbose {
		logCfg.Level = "debug"
	}
	logger := newLogger(a.stderr, logCfg)
	opts.Logger = logger
	driver, err := newDriver(cfg.Storage)
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	if c, ok := driver.(io.Closer); ok {
		defer c.Close()
	}
	st := store.New(driver, store.Options{Logger: logger})
	defer a.procsForWalks()()
	rep, err := gc.Run(ctx, st, opts)
	if err != nil && rep.Start.IsZero() {
		return fmt.Errorf("collecting garbage: %w", err)
	}
	// A run that failed midway may have deleted part of its plan: its
	// report says what, before the error.
	var werr error
	if out.json {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		werr = enc.Encode(rep)
	} else {
		werr = writeGCSummary(a.stdout, rep, opts.Explain)
	}
	if err != nil {
		return fmt.Errorf("collecting garbage, stopped partway (the report shows what it did): %w", err)
	}
	return werr
}

// writeGCSummary prints rep for people: the counts per kind, the bytes of
// the blobs, what clients kept from being deleted, and with explain each
// planned and each kept item.
func writeGCSummary(w io.Writer, rep gc.Report, explain bool) error {
	verb := "deleted"
	if rep.DryRun {
		verb = "would delete"
	}
	fmt.Fprintf(w, "gc: %s (cutoff %s, took %s):\n", verb,
		rep.Cutoff.UTC().Format(time.RFC3339), rep.Duration.Round(time.Millisecond))
	writeCounts(w, rep.Deleted)
	if s := rep.Spared; !rep.DryRun && s != (gc.Counts{}) {
		fmt.Fprintln(w, "gc: spared, as clients relied on them during the run:")
		writeCounts(w, s)
	}
	if rep.ReferrersIndexed > 0 {
		fmt.Fprintf(w, "gc: indexed %d referrers the referrers index did not list (content written by another registry)\n", rep.ReferrersIndexed)
	}
	if !explain {
		return nil
	}
	fmt.Fprintln(w, "gc: plan:")
	for _, t := range rep.Tags {
		fmt.Fprintf(w, "  tag %s:%s -> %s, pushed %s (rule %s)\n", t.Repository, t.Tag, t.Digest,
			t.Pushed.UTC().Format(time.RFC3339), t.Rule)
	}
	for _, m := range rep.Manifests {
		fmt.Fprintf(w, "  manifest %s@%s\n", m.Repository, m.Digest)
	}
	for _, b := range rep.Blobs {
		fmt.Fprintf(w, "  blob %s (%s)\n", b.Digest, humanBytes(b.Size))
	}
	for _, l := range rep.LayerLinks {
		fmt.Fprintf(w, "  layer link %s@%s\n", l.Repository, l.Digest)
	}
	for _, u := range rep.Uploads {
		fmt.Fprintf(w, "  upload %s/%s, idle since %s\n", u.Repository, u.ID, u.LastActivity.UTC().Format(time.RFC3339))
	}
	fmt.Fprintln(w, "gc: kept:")
	for _, k := range rep.Kept {
		name := string(k.Digest)
		if k.Repository != "" {
			name = k.Repository + "@" + name
		}
		fmt.Fprintf(w, "  %s %s: %s\n", gcKindName(k.Kind), name, k.Reason)
	}
	return nil
}

// writeCounts prints one line per kind of item, the blobs with their bytes.
func writeCounts(w io.Writer, c gc.Counts) {
	fmt.Fprintf(w, "  %-12s %6d\n", "tags", c.Tags)
	fmt.Fprintf(w, "  %-12s %6d\n", "manifests", c.Manifests)
	fmt.Fprintf(w, "  %-12s %6d  (%s)\n", "blobs", c.Blobs, humanBytes(c.Bytes))
	fmt.Fprintf(w, "  %-12s %6d\n", "layer links", c.LayerLinks)
	fmt.Fprintf(w, "  %-12s %6d\n", "uploads", c.Uploads)
}

// gcKindName spells a KeptItem kind for people ("layerLink": "layer link").
func gcKindName(kind string) string {
	if kind == "layerLink" {
		return "layer link"
	}
	return kind
}

// walkProcs is the GOMAXPROCS of the commands that read or change a whole
// storage (gc, du). They keep many filesystem calls in flight, and a
// goroutine blocked in one holds its P until the runtime's monitor hands
// the P on, which with as few Ps as a small host has cores leaves the disk
// idle between calls: on 2 cores a cold collection took half the time with
// 16 Ps. The work is waiting, not computing, so the extra Ps cost little.
const walkProcs = 16

// procsForWalks raises GOMAXPROCS to walkProcs unless the environment sets
// it, and returns what puts it back.
func (a *app) procsForWalks() (restore func()) {
	if _, set := a.lookupEnv("GOMAXPROCS"); set || runtime.GOMAXPROCS(0) >= walkProcs {
		return func() {}
	}
	old := runtime.GOMAXPROCS(walkProcs)
	return func() { runtime.GOMAXPROCS(old) }
}

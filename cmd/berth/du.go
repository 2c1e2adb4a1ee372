package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/gc"
	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/storage/store"
)

func (a *app) newDUCmd() *cobra.Command {
	var configFile, root string
	var asJSON, deleteUntagged bool
	var grace time.Duration
	cmd := &cobra.Command{
		Use:   "du [REPO-GLOB] [--config FILE] [--root DIR] [--json] [--delete-untagged] [--grace 1h]",
		Short: "Report the storage each repository uses, shares and would get back from gc",
		Long: `Report, per repository of the configured storage:

  SIZE         the bytes its kept manifests reference (their bodies, configs,
               layers and child manifests), each blob counted once
  SHARED       the part of SIZE that other repositories reference too:
               deleting the repository would not free it
  RECLAIMABLE  the bytes "berth gc" with the same --grace and
               --delete-untagged would delete among the blobs linked into it
  MANIFESTS    the manifests kept (all of them unless --delete-untagged)
  TAGS         the tags

The TOTAL line counts each blob once. Without REPO-GLOB, a "(unlinked)" line
shows what gc would delete that no repository links (the bodies of deleted
manifests, mostly), and TOTAL's RECLAIMABLE includes it.

REPO-GLOB selects repositories: path.Match syntax per name component
("team/*" matches "team/app", not "team/app/x"), and "**" as a whole
component matches any number of components ("team/**"). Sharing is counted
against every repository, listed or not.

The configuration is read as by "berth serve"; its gc.grace and
gc.deleteUntagged are the defaults of --grace and --delete-untagged (its
gc.retention rules are not applied: tags they would delete count as kept).
Ages are measured by this host's clock. Nothing is written: du reads the
whole reference graph, as a gc run does, which can take a while on a large
registry.

Exit codes: 0 on success, 2 for a bad flag, glob or configuration, 1 otherwise.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.MaximumNArgs(1)(cmd, args); err != nil {
				return usageError(err)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			flags := cmd.Flags()
			cfg, err := config.Load(configFile, a.lookupEnv, func(c *config.Config) {
				if flags.Changed("root") {
					c.Storage.Filesystem.Root = root
				}
			})
			if err != nil {
				return usageError(err)
			}
			// The config's gc section gives the defaults, as for berth gc.
			opts := gc.UsageOptions{DeleteUntagged: cfg.GC.DeleteUntagged}
			if flags.Changed("delete-untagged") {
				opts.DeleteUntagged = deleteUntagged
			}
			if !flags.Changed("grace") {
				grace = cfg.GC.Grace
			}
			if grace < 0 {
				return usageError(fmt.Errorf("--grace %s must not be negative", grace))
			}
			if len(args) == 1 {
				if err := gc.ValidateGlob(args[0]); err != nil {
					return usageError(err)
				}
				opts.Repositories = args[0]
			}
			return a.du(cmd.Context(), cfg, opts, grace, asJSON)
		},
	}
	cmd.Flags().StringVar(&configFile, "config", "", "YAML config `FILE` (none: defaults and environment only)")
	cmd.Flags().StringVar(&root, "root", "", "read under `DIR`, overriding storage.filesystem.root (default ./data)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON (sizes in bytes)")
	cmd.Flags().BoolVar(&deleteUntagged, "delete-untagged", false, "count untagged manifests no kept index or subject needs as reclaimable (default gc.deleteUntagged)")
	cmd.Flags().DurationVar(&grace, "grace", 0, "count as reclaimable only what was modified more than this `DURATION` ago (default gc.grace, 1h)")
	return cmd
}

// du reads the reference graph of cfg's storage and prints its usage.
func (a *app) du(ctx context.Context, cfg *config.Config, opts gc.UsageOptions, grace time.Duration, asJSON bool) error {
	if ctx == nil {
		ctx = context.Background()
	}
	driver, err := newDriver(cfg.Storage)
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	if c, ok := driver.(io.Closer); ok {
		defer c.Close()
	}
	st := store.New(driver, store.Options{Logger: newLogger(a.stderr, cfg.Log)})
	// The cutoff is taken before reading, as gc.Run does: what is written
	// while the graph is read is recent, so never reclaimable.
	opts.Now = time.Now()
	opts.Cutoff = opts.Now.Add(-grace)
	opts.Caches = cacheRules(cfg.Proxy)
	defer a.procsForWalks()()
	g, err := gc.ReadGraphWithPulls(ctx, st, opts.Caches)
	if err != nil {
		return fmt.Errorf("reading the reference graph: %w", err)
	}
	rep := gc.Usage(g, opts)
	if asJSON {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return writeUsageTable(a.stdout, rep, opts.Repositories == "", len(opts.Caches) > 0)
}

// writeUsageTable prints rep as a table with a TOTAL line; with
// unlinked set (every repository listed), a "(unlinked)" line too, counted
// in the total's reclaimable bytes; with caches set (upstreams are
// configured), LOCAL and CACHE lines splitting the total's size.
func writeUsageTable(w io.Writer, rep gc.UsageReport, unlinked, caches bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REPOSITORY\tSIZE\tSHARED\tRECLAIMABLE\tMANIFESTS\tTAGS")
	for _, r := range rep.Repositories {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\n", r.Name, humanBytes(r.Bytes), humanBytes(r.SharedBytes),
			humanBytes(r.ReclaimableBytes), r.Manifests, r.Tags)
	}
	t := rep.Total
	reclaimable := t.ReclaimableBytes
	if unlinked && t.UnlinkedReclaimableBytes > 0 {
		fmt.Fprintf(tw, "(unlinked)\t-\t-\t%s\t-\t-\n", humanBytes(t.UnlinkedReclaimableBytes))
		reclaimable += t.UnlinkedReclaimableBytes
	}
	fmt.Fprintf(tw, "TOTAL\t%s\t%s\t%s\t%d\t%d\n", humanBytes(t.Bytes), humanBytes(t.SharedBytes),
		humanBytes(reclaimable), t.Manifests, t.Tags)
	if caches {
		fmt.Fprintf(tw, "LOCAL\t%s\t-\t-\t-\t-\n", humanBytes(t.LocalBytes))
		fmt.Fprintf(tw, "CACHE\t%s\t-\t-\t-\t-\n", humanBytes(t.CacheBytes))
	}
	return tw.Flush()
}

// humanBytes renders n in binary units with one decimal: "512 B",
// "1.5 KiB", "20.0 GiB".
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

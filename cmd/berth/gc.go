package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/gc"
	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/storage/store"
)

func (a *app) newGCCmd() *cobra.Command {
	var configFile, root string
	var dryRun, verbose bool
	var grace time.Duration
	cmd := &cobra.Command{
		Use:   "gc [--config FILE] [--root DIR] [--dry-run] [--grace 1h] [--verbose]",
		Short: "Delete blobs and layer links no manifest references, while the registry keeps running",
		Long: `Collect garbage in the configured storage: blob data and repository layer
links that no manifest references (untagged manifests are kept), and uploads
older than storage.uploadPurging.age. The registry need not stop: only files
last modified more than --grace before the run started are deleted, and the
registry refreshes the modification time of any blob a client relies on
(see the gc package documentation for the contract).

The configuration is read as by "berth serve". On a driver that cannot
update modification times (s3), only --dry-run is possible for now.

Exit codes: 0 on success, 2 for a bad flag or configuration, 1 otherwise.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			flags := cmd.Flags()
			cfg, err := config.Load(configFile, a.lookupEnv, func(c *config.Config) {
				if flags.Changed("root") {
					c.Storage.Filesystem.Root = root
				}
			})
			if err != nil {
				return usageError(err)
			}
			if grace <= store.DefaultTouchAfter {
				return usageError(fmt.Errorf("--grace %s must be longer than the registry's touch threshold %s", grace, store.DefaultTouchAfter))
			}
			return a.gc(cmd.Context(), cfg, gc.Options{Grace: grace, DryRun: dryRun}, verbose)
		},
	}
	cmd.Flags().StringVar(&configFile, "config", "", "YAML config `FILE` (none: defaults and environment only)")
	cmd.Flags().StringVar(&root, "root", "", "collect under `DIR`, overriding storage.filesystem.root (default ./data)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be deleted; delete nothing")
	cmd.Flags().DurationVar(&grace, "grace", gc.DefaultGrace, "keep anything modified within this `DURATION` before the run started")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "log each path deleted (or that would be)")
	return cmd
}

func (a *app) gc(ctx context.Context, cfg *config.Config, opts gc.Options, verbose bool) error {
	if ctx == nil {
		ctx = context.Background()
	}
	logCfg := cfg.Log
	if verbose {
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
	res, err := gc.Run(ctx, st, opts)
	if errors.Is(err, gc.ErrCannotSweep) {
		return usageError(fmt.Errorf("%w (driver %s); run with --dry-run", err, cfg.Storage.Driver))
	}
	if err != nil {
		return err
	}
	if opts.DryRun {
		fmt.Fprintf(a.stdout, "gc: would delete %d blobs (%d bytes) and %d layer links, %d blobs kept\n",
			res.Deleted.Blobs, res.Deleted.Bytes, res.Deleted.LayerLinks, 0)
		return nil
	}
	fmt.Fprintf(a.stdout, "gc: %d blobs (%d bytes) deleted, %d kept, %d layer links removed\n",
		res.Deleted.Blobs, res.Deleted.Bytes, 0, res.Deleted.LayerLinks)
	age := cfg.Storage.UploadPurging.Age
	purged, err := st.PurgeUploads(ctx, res.Start.Add(-age))
	if err != nil {
		return fmt.Errorf("purging uploads: %w", err)
	}
	fmt.Fprintf(a.stdout, "gc: %d uploads older than %s purged\n", purged, age)
	return nil
}

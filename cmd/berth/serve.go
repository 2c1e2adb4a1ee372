package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/gc"
	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/logbuffer"
	"github.com/berth-registry/berth/registry"
	"github.com/berth-registry/berth/storage"
	"github.com/berth-registry/berth/storage/filesystem"
	"github.com/berth-registry/berth/storage/inmemory"
	"github.com/berth-registry/berth/storage/s3"
	"github.com/berth-registry/berth/storage/store"
)

// maxHeaderBytes bounds request headers. Bearer tokens make registry
// headers larger than most, but never near this.
const maxHeaderBytes = 1 << 20

func (a *app) newServeCmd() *cobra.Command {
	var configFile, addr, root, cpuProfile, memProfile string
	cmd := &cobra.Command{
		Use:   "serve [--config FILE] [--addr HOST:PORT] [--root DIR]",
		Short: "Run the registry's HTTP server",
		Long: `Run the registry's HTTP server until SIGTERM or SIGINT.

The configuration is built from, lowest precedence first: built-in defaults,
the YAML file given with --config (unknown keys are errors), BERTH_*
environment variables, and the flags --addr and --root. Every key but the
list gc.retention (YAML only) has a variable: BERTH_ and its yaml path
upper-cased, sections joined by "_" (http.drainTimeout is
BERTH_HTTP_DRAINTIMEOUT). "berth config env" lists
them with their defaults; configs/berth.yaml documents every key;
"berth config show" prints the effective configuration.

With gc.interval set, the server also collects garbage every interval, as
"berth gc" does with the gc section of the configuration.

On SIGTERM or SIGINT the server stops accepting connections and waits up to
http.drainTimeout for in-flight requests (uploads) to finish, then exits 0.
A second signal stops at once, exit code 1.

Exit codes: 0 after a graceful stop, 2 for a bad flag or configuration
(nothing started), 1 for any other failure.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			flags := cmd.Flags()
			cfg, err := config.Load(configFile, a.lookupEnv, func(c *config.Config) {
				if flags.Changed("addr") {
					c.HTTP.Addr = addr
				}
				if flags.Changed("root") {
					c.Storage.Filesystem.Root = root
				}
			})
			if err != nil {
				return usageError(err)
			}
			stopProfiles, err := startProfiles(cpuProfile, memProfile)
			if err != nil {
				return err
			}
			err = a.serve(cfg)
			if perr := stopProfiles(); err == nil {
				err = perr
			}
			return err
		},
	}
	cmd.Flags().StringVar(&configFile, "config", "", "YAML config `FILE` (none: defaults and environment only)")
	cmd.Flags().StringVar(&addr, "addr", "", "listen on `HOST:PORT`, overriding http.addr (default 127.0.0.1:5000)")
	cmd.Flags().StringVar(&root, "root", "", "store content under `DIR`, overriding storage.filesystem.root (default ./data)")
	// For make bench's profiles; not part of the interface.
	cmd.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to `FILE` (pprof)")
	cmd.Flags().StringVar(&memProfile, "memprofile", "", "write an allocation profile to `FILE` (pprof) when the server stops")
	_ = cmd.Flags().MarkHidden("cpuprofile")
	_ = cmd.Flags().MarkHidden("memprofile")
	return cmd
}

// startProfiles starts a CPU profile into cpuFile (if not empty) and
// returns the function that ends it and writes the allocation profile to
// memFile (if not empty).
func startProfiles(cpuFile, memFile string) (stop func() error, err error) {
	var cpu *os.File
	if cpuFile != "" {
		if cpu, err = os.Create(cpuFile); err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(cpu); err != nil {
			cpu.Close()
			return nil, err
		}
	}
	return func() error {
		var errs []error
		if cpu != nil {
			pprof.StopCPUProfile()
			errs = append(errs, cpu.Close())
		}
		if memFile != "" {
			f, err := os.Create(memFile)
			if err == nil {
				err = pprof.Lookup("allocs").WriteTo(f, 0)
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}, nil
}

// serve runs the registry described by cfg until a signal stops it.
func (a *app) serve(cfg *config.Config) error {
	// Signals are relayed from the start: a SIGTERM while starting up must
	// not kill the process halfway.
	sigc := make(chan os.Signal, 2)
	stop := a.notify(sigc)
	defer stop()

	// Log lines (one per request) are written by a goroutine of their own,
	// off the requests' path; the rest is written out on return.
	logs := logbuffer.New(a.stderr, logBufferBytes)
	defer logs.Close()
	logger := newLogger(logs, cfg.Log)
	var tlsConfig *tls.Config
	if cfg.HTTP.TLS.Enabled() {
		reloader, err := newCertReloader(cfg.HTTP.TLS.Certificate, cfg.HTTP.TLS.Key, logger)
		if err != nil {
			return usageError(fmt.Errorf("http.tls: %w", err))
		}
		tlsConfig = &tls.Config{GetCertificate: reloader.GetCertificate, MinVersion: tls.VersionTLS12}
	}

	for _, name := range config.UnknownEnv(a.environ) {
		logger.Warn("ignoring environment variable that configures nothing (see berth config env)", "name", name)
	}

	driver, err := newDriver(cfg.Storage)
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	st := store.New(driver, store.Options{Logger: logger, SparseManifests: cfg.Storage.Manifests.Sparse})

	metrics := prometheus.NewRegistry()
	metrics.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	proxies, err := trustedProxies(cfg)
	if err != nil {
		return err
	}
	authorizer, iss, err := newAuth(cfg, proxies, logger, metrics, time.Now)
	if err != nil {
		return err
	}
	collector, err := newGCLoop(cfg.GC, st, logger, metrics) // nil unless gc.interval is set
	if err != nil {
		return err
	}
	if collector != nil {
		collector.opts.Caches = cacheRules(cfg.Proxy)
		collector.opts.RecordAs = "berth serve"
	}
	cache, err := newCache(cfg.Proxy, st, logger, metrics) // nil without upstreams
	if err != nil {
		return err
	}
	usage := gc.NewUsageReporter(st, gc.UsagePolicy{Grace: gcGrace(cfg.GC.Grace),
		DeleteUntagged: cfg.GC.DeleteUntagged, Caches: cacheRules(cfg.Proxy)})
	reg, err := registry.New(registry.Options{
		BodyTimeout:          cfg.HTTP.BodyTimeout,
		MaxConcurrentUploads: cfg.Storage.MaxConcurrentUploads,
		Usage:                usage,
		Cache:                cache,
		Proxies:              proxies,
		Store:                st,
		Logger:               logger,
		Metrics:              metrics,
		AccessLog:            cfg.Log.AccessLog,
		DeleteEnabled:        cfg.Storage.Delete.Enabled,
		Authorizer:           authorizer,
		GC: registry.GCPolicy{Grace: gcGrace(cfg.GC.Grace), DeleteUntagged: cfg.GC.DeleteUntagged,
			Caches: cacheRules(cfg.Proxy)},
	})
	if err != nil {
		return err
	}
	var nextGC func() time.Time
	if collector != nil {
		nextGC = collector.Next
	}
	handler, err := withUI(withIssuer(reg, iss), cfg, uiParts{st: st, iss: iss, cache: cache, usage: usage, nextGC: nextGC}, logger)
	if err != nil {
		return err
	}

	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: cfg.HTTP.ReadHeaderTimeout,
		IdleTimeout:       cfg.HTTP.IdleTimeout,
		// No ReadTimeout or WriteTimeout: a blob upload or download lasts
		// as long as its gigabytes take.
		MaxHeaderBytes: maxHeaderBytes,
		TLSConfig:      tlsConfig,
		ErrorLog:       slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}

	// Listen before logging, so that whoever waits for the "listening"
	// line can connect at once (and learns the port when http.addr asks
	// for port 0).
	ln, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return err
	}
	if n := cfg.HTTP.MaxConnections; n > 0 {
		limited := registry.LimitConnections(ln, n)
		ln, srv.ConnState, srv.Handler = limited, limited.ConnState, limited.Handler(srv.Handler)
	}
	attrs := []any{
		"addr", ln.Addr().String(),
		"tls", tlsConfig != nil,
		"maxConnections", cfg.HTTP.MaxConnections,
		"maxConcurrentUploads", cfg.Storage.MaxConcurrentUploads,
		"storage", cfg.Storage.Driver,
	}
	attrs = append(attrs, storageAttrs(cfg.Storage)...)
	attrs = append(attrs, "deleteEnabled", cfg.Storage.Delete.Enabled, "sparseManifests", cfg.Storage.Manifests.Sparse)
	attrs = append(attrs, authAttrs(cfg)...)
	for _, u := range cfg.Proxy.Upstreams {
		attrs = append(attrs, "upstream", u.Name+"="+u.Prefix+"<-"+u.URL)
	}
	attrs = append(attrs, "version", buildVersion())
	logger.Info("listening", attrs...)

	served := make(chan error, 1)
	go func() {
		if tlsConfig != nil {
			served <- srv.ServeTLS(ln, "", "")
		} else {
			served <- srv.Serve(ln)
		}
	}()

	// Background work lives until the signal, then is cancelled and
	// awaited before draining.
	bg, stopBackground := context.WithCancel(context.Background())
	var background sync.WaitGroup
	defer func() { stopBackground(); background.Wait() }()
	if p := cfg.Storage.UploadPurging; p.Enabled {
		background.Go(func() { purgeUploads(bg, st, firstUploadPurge, p.Interval, p.Age, logger) })
	}
	if cfg.Storage.Driver == config.DriverFilesystem {
		background.Go(func() { reg.WatchSpace(bg, time.Minute, cfg.Storage.Filesystem.WarnFreeBytes) })
	}
	if n := cfg.GC.ReserveBytes; n > 0 {
		background.Go(func() {
			if err := st.Reserve(bg, n); err != nil && bg.Err() == nil {
				logger.Warn("could not make garbage collection's reserve; a collection on a full storage may fail to start", "bytes", n, "error", err)
			}
		})
	}
	if collector != nil {
		background.Go(func() { collector.run(bg) })
	}

	var sig os.Signal
	select {
	case err := <-served:
		return fmt.Errorf("http server: %w", err)
	case sig = <-sigc:
	}
	stopBackground()
	background.Wait()
	return shutdown(srv, sigc, sig, cfg.HTTP.DrainTimeout, logger)
}

// logBufferBytes is how much of the log may wait for a slow reader of the
// output before requests that log wait too.
const logBufferBytes = 256 << 10

// firstUploadPurge is how long after the start the first purge of abandoned
// uploads runs: start-up stays fast, and a short-lived server (a test)
// never purges.
const firstUploadPurge = time.Minute

// purgeUploads removes the uploads begun more than age ago that nobody
// finished, after first and then every interval, until ctx is done. Every
// replica over a shared bucket runs it, and that is safe: deletes are
// idempotent, so an upload that two replicas purge at once is removed once
// and the other finds nothing; a run costs a few listings.
func purgeUploads(ctx context.Context, st *store.Store, first, interval, age time.Duration, logger *slog.Logger) {
	timer := time.NewTimer(first)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		purgeUploadsOnce(ctx, st, age, logger)
		timer.Reset(interval)
	}
}

// purgeUploadsOnce runs one purge: the store's upload directories, then
// what the driver keeps outside them (S3 multipart uploads), if it can.
// Errors are logged, not returned: the next run tries again.
func purgeUploadsOnce(ctx context.Context, st *store.Store, age time.Duration, logger *slog.Logger) {
	start := time.Now()
	purged, err := st.PurgeUploads(ctx, start.Add(-age))
	if err != nil && ctx.Err() == nil {
		logger.Warn("purging abandoned uploads", "age", age.String(), "purged", purged, "error", err)
	}
	attrs := []any{"age", age.String(), "purged", purged}
	if j, ok := st.Driver().(storage.UploadJanitor); ok {
		aborted, err := j.AbortStaleUploads(ctx, age)
		if err != nil && ctx.Err() == nil {
			logger.Warn("aborting stale uploads of the storage backend", "age", age.String(), "aborted", aborted, "error", err)
		}
		attrs = append(attrs, "aborted", aborted)
	}
	if ctx.Err() != nil {
		return
	}
	attrs = append(attrs, "took", time.Since(start).Round(time.Millisecond).String())
	logger.Info("purged abandoned uploads", attrs...)
}

// shutdown stops srv after the signal sig: no new connections, and up to
// drain for in-flight requests, unless a second signal arrives on sigc.
func shutdown(srv *http.Server, sigc <-chan os.Signal, sig os.Signal, drain time.Duration, logger *slog.Logger) error {
	logger.Info("shutting down: waiting for in-flight requests", "signal", sig.String(), "drainTimeout", drain.String())
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	interrupted := make(chan os.Signal, 1)
	go func() {
		select {
		case s := <-sigc:
			interrupted <- s
			cancel()
		case <-ctx.Done():
		}
	}()

	err := srv.Shutdown(ctx)
	if err == nil {
		logger.Info("stopped", "after", time.Since(start).Round(time.Millisecond).String())
		return nil
	}
	// Drain time is up, or a second signal: drop what is left.
	_ = srv.Close()
	select {
	case s := <-interrupted:
		logger.Warn("second signal: stopped without waiting for in-flight requests", "signal", s.String())
		return fmt.Errorf("interrupted by a second signal (%s)", s)
	default:
		logger.Warn("drain timeout expired: closed connections with requests in flight", "drainTimeout", drain.String())
		return nil
	}
}

// driverStartTimeout bounds building a driver: the s3 driver loads
// credentials and reaches the bucket, and a wrong endpoint must fail the
// start rather than hang it.
const driverStartTimeout = time.Minute

// newDriver builds the storage driver that c names. Validate has checked
// the name.
func newDriver(c config.Storage) (storage.Driver, error) {
	switch c.Driver {
	case config.DriverFilesystem:
		d, err := filesystem.New(c.Filesystem.Root)
		if err != nil {
			return nil, err
		}
		return d, nil
	case config.DriverInmemory:
		return inmemory.New(), nil
	case config.DriverS3:
		ctx, cancel := context.WithTimeout(context.Background(), driverStartTimeout)
		defer cancel()
		d, err := s3.New(ctx, s3.Config{
			Bucket:        c.S3.Bucket,
			Region:        c.S3.Region,
			Endpoint:      c.S3.Endpoint,
			PathStyle:     c.S3.PathStyle,
			AccessKey:     c.S3.AccessKey,
			SecretKey:     c.S3.SecretKey,
			Prefix:        c.S3.Prefix,
			Redirect:      c.S3.Redirect,
			PresignExpiry: c.S3.PresignExpiry,
		})
		if err != nil {
			return nil, err
		}
		return d, nil
	default:
		return nil, fmt.Errorf("unknown driver %q", c.Driver)
	}
}

// storageAttrs describes the storage for the "listening" log line: where
// content lives, never credentials.
func storageAttrs(c config.Storage) []any {
	switch c.Driver {
	case config.DriverFilesystem:
		return []any{"root", c.Filesystem.Root}
	case config.DriverS3:
		endpoint, credentials := c.S3.Endpoint, "default chain"
		if endpoint == "" {
			endpoint = "AWS"
		}
		if c.S3.AccessKey != "" {
			credentials = "static"
		}
		attrs := []any{"bucket", c.S3.Bucket, "prefix", c.S3.Prefix, "endpoint", endpoint,
			"region", c.S3.Region, "credentials", credentials, "redirect", c.S3.Redirect}
		if c.S3.Redirect {
			attrs = append(attrs, "presignExpiry", c.S3.PresignExpiry.String())
		}
		return attrs
	}
	return nil
}

// newLogger returns the process logger: text or json on w, from the level c sets.
func newLogger(w io.Writer, c config.Log) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.SlogLevel()}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

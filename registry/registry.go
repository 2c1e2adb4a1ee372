package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/berth-registry/berth/auth"
	"github.com/berth-registry/berth/gc"
	"github.com/berth-registry/berth/manifest"
	"github.com/berth-registry/berth/registry/proxy"
	"github.com/berth-registry/berth/storage"
	"github.com/berth-registry/berth/storage/store"
)

// Options configure a Registry.
type Options struct {
	Store         *store.Store
	Logger        *slog.Logger         // nil: slog.Default()
	Metrics       *prometheus.Registry // nil: no /metrics and no metric collection
	AccessLog     bool                 // one slog line per request
	DeleteEnabled bool                 // false: DELETEs of blobs and manifests answer 405 UNSUPPORTED
	// Authorizer decides who may do what; nil: no authentication. /healthz,
	// /readyz and /metrics are never authorized; /v2/ needs a valid identity.
	Authorizer auth.Authorizer
	// GC is the collection policy the storage-usage report counts
	// reclaimable bytes with.
	GC GCPolicy
	// Proxies are the proxies whose X-Forwarded-For names the client in
	// the access log and refusal warnings; nil: the TCP peer is the client.
	Proxies *auth.TrustedProxies
	// Cache is the pull-through cache of upstream registries; nil: every
	// repository is local.
	Cache *proxy.Cache
	// Usage computes GET /v2/_berth/usage's reports; nil: one of the
	// registry's own, over Store with GC's policy (share one with the web
	// UI, which shows the same).
	Usage *gc.UsageReporter
	// BodyTimeout cuts a request body from which nothing arrives for this
	// long (408; an upload keeps what arrived and can resume), so that a
	// silent client holds nothing for ever. Zero: no timeout.
	BodyTimeout time.Duration
	// MaxConcurrentUploads caps the upload bodies streamed at once; a
	// request beyond it is answered 429 TOOMANYREQUESTS with Retry-After
	// before its body is read. 0: no cap.
	MaxConcurrentUploads int
}

// GCPolicy is what GET /v2/_berth/usage needs of the collection policy.
type GCPolicy struct {
	Grace          time.Duration // zero: gc.DefaultGrace; negative: none
	DeleteUntagged bool
	// Caches are the pull-through cache's prefixes and lifetimes: their
	// repositories are reported as caches, their expired manifests as
	// reclaimable.
	Caches []gc.CacheRule
}

// Registry is the HTTP handler of the distribution API. Its handlers are
// methods that return an error; one adapter (serve) turns errors into OCI
// error responses and records metrics and the access log.
type Registry struct {
	store         *store.Store
	log           *slog.Logger
	metrics       *metrics // nil: metrics off
	accessLog     bool
	deleteEnabled bool
	authorizer    auth.Authorizer // nil: no authentication
	gcPolicy      GCPolicy
	proxies       *auth.TrustedProxies
	cache         *proxy.Cache // nil: no upstreams
	usage         *gc.UsageReporter
	space         space
	bodyTimeout   time.Duration
	uploads       uploadSlots  // nil: no cap
	router        http.Handler // routes' result
}

// New returns a Registry serving opts.Store. It fails if the metrics cannot
// be registered on opts.Metrics (registered twice, for example).
func New(opts Options) (*Registry, error) {
	if opts.Store == nil {
		return nil, errors.New("registry: Options.Store is nil")
	}
	reg := &Registry{
		store:         opts.Store,
		log:           opts.Logger,
		accessLog:     opts.AccessLog,
		deleteEnabled: opts.DeleteEnabled,
		bodyTimeout:   opts.BodyTimeout,
		uploads:       newUploadSlots(opts.MaxConcurrentUploads),
		authorizer:    opts.Authorizer,
		gcPolicy:      opts.GC,
		proxies:       opts.Proxies,
		cache:         opts.Cache,
		usage:         opts.Usage,
	}
	if reg.usage == nil {
		reg.usage = gc.NewUsageReporter(opts.Store, gc.UsagePolicy{Grace: opts.GC.Grace,
			DeleteUntagged: opts.GC.DeleteUntagged, Caches: opts.GC.Caches})
	}
	if reg.log == nil {
		reg.log = slog.Default()
	}
	if opts.Metrics != nil {
		m, err := newMetrics(opts.Metrics)
		if err != nil {
			return nil, err
		}
		reg.metrics = m
		if _, known, _ := opts.Store.FreeBytes(context.Background()); known {
			free := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "berth_storage_free_bytes",
				Help: "Bytes the storage can still hold (the filesystem's free space), read at each scrape.",
			}, func() float64 {
				n, _, _ := opts.Store.FreeBytes(context.Background())
				return float64(n)
			})
			if err := opts.Metrics.Register(free); err != nil {
				return nil, err
			}
		}
	}
	reg.router = reg.routes(opts.Metrics)
	return reg, nil
}

// apiVersion is shared by all responses; net/http only reads it.
var apiVersion = []string{"registry/2.0"}

// ServeHTTP implements http.Handler.
func (reg *Registry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header()["Docker-Distribution-Api-Version"] = apiVersion
	reg.router.ServeHTTP(w, r)
}

// handlerFunc is the shape of every handler: it writes a successful response
// or returns an error, and never writes an error body itself.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// route describes one route template for the adapter.
type route struct {
	template string // the label in metrics and the access log: /v2/{name}/blobs/{digest}
	hasName  bool   // the path holds a repository name to validate
	open     bool   // served without authorization: health, readiness, metrics
	metrics  *routeMetrics
}

// serve adapts h: it validates the repository name and authorizes the
// request before h runs, writes h's error with writeError, and records the
// request.
func (reg *Registry) serve(rt *route, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		observed := reg.metrics != nil || reg.accessLog
		var start time.Time
		if observed {
			start = time.Now()
		}
		rw := &responseWriter{ResponseWriter: w}
		var body *requestBody
		if r.Body != nil && r.Body != http.NoBody {
			body = &requestBody{ReadCloser: r.Body, timeout: reg.bodyTimeout}
			if reg.bodyTimeout > 0 {
				body.rc = http.NewResponseController(w)
			}
			r.Body = body
		}
		var repo string
		var err error
		var cached *proxy.Target
		if rt.hasName {
			repo = mux.Vars(r)["name"]
			if err = manifest.ValidateName(repo); err != nil {
				repo = shorten(repo) // for the access log: it may be huge
			} else if cached, err = reg.cache.Resolve(repo, mirrorNS(r)); cached != nil {
				// A cached repository: authorized, stored and logged
				// under its name in storage (docker.io/library/nginx),
				// however the client named it.
				repo = cached.Repo
				// The target joins the context first: WithContext on the
				// request SetURLVars returns would drop the new vars.
				vars := maps.Clone(mux.Vars(r))
				vars["name"] = repo
				r = mux.SetURLVars(r.WithContext(context.WithValue(r.Context(), targetKey{}, cached)), vars)
			}
		}
		var subject string
		if err == nil && reg.authorizer != nil && !rt.open {
			var id *auth.Identity
			id, err = reg.authorizer.Authorize(r, auth.Required(r.Method, rt.template, repo))
			if err == nil {
				subject = id.Subject
				r = r.WithContext(context.WithValue(r.Context(), identityKey{}, id))
			} else if ch, ok := errors.AsType[*auth.Challenge](err); ok {
				askMountSource(r, ch)
				subject = ch.Subject // who was refused, if known
			}
		}
		if err == nil && cached != nil && !cached.AllowsPush() && isWrite(r.Method) {
			err = fmt.Errorf("%w: %s is filled from upstream %s; push to a repository outside its prefix", proxy.ErrPushDenied, repo, cached.Upstream())
		}
		if err == nil && isWrite(r.Method) && reg.fullBeforeBody(r) {
			err = storage.ErrFull
		}
		if err == nil {
			err = h(rw, r)
			if err == nil && isWrite(r.Method) {
				reg.wrote()
			}
		}
		if err != nil {
			if rw.status == 0 {
				reg.writeError(rw, r, err)
			} else {
				// The response is under way: all that can be done is to
				// log, and net/http closes a connection whose body came
				// up short.
				level := slog.LevelWarn
				if r.Context().Err() != nil {
					level = slog.LevelInfo // the client went away
				}
				reg.log.LogAttrs(r.Context(), level, "response failed after it started",
					slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("error", err))
			}
		}
		if !observed {
			return
		}
		var in int64
		if body != nil {
			in = body.read
		}
		elapsed := time.Since(start)
		status := rw.statusOrOK()
		rt.metrics.observe(r.Method, status, in, rw.written, elapsed.Seconds())
		if reg.accessLog {
			attrs := []slog.Attr{
				slog.String("method", r.Method),
				slog.String("route", rt.template),
				slog.String("repository", repo),
				slog.String("subject", subject),
				slog.Int("status", status),
				slog.Int64("bytes_in", in),
				slog.Int64("bytes_out", rw.written),
				slog.Duration("duration", elapsed),
				slog.String("remote", r.RemoteAddr),
				slog.String("client", reg.client(r)),
				slog.String("user_agent", r.UserAgent()),
			}
			if cached != nil {
				attrs = append(attrs, slog.String("upstream", cached.Upstream()), slog.String("cache", rw.cache))
			}
			reg.log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
		}
	})
}

// askMountSource adds the pull of a mount's source repository to the
// scope of a Bearer challenge refusing the mount (POST ...?mount=D&from=A),
// so that a client asking for a token for the challenge's scope (crane,
// regclient, the conformance runner) asks for both, as docker does by
// itself. The source stays optional: a token without it is accepted, and
// the mount then falls back to an upload (see mountAllowed).
func askMountSource(r *http.Request, ch *auth.Challenge) {
	if ch.Scheme != "Bearer" || r.Method != http.MethodPost {
		return
	}
	q := r.URL.Query()
	from := q.Get("from")
	if !q.Has("mount") || from == "" || manifest.ValidateName(from) != nil {
		return
	}
	ch.Scope = append(ch.Scope, auth.Access{Type: auth.TypeRepository, Name: from, Actions: []string{auth.ActionPull}})
}

// client is the address of the client behind r: the TCP peer, or the one a
// trusted proxy names in X-Forwarded-For.
func (reg *Registry) client(r *http.Request) string {
	if a := reg.proxies.ClientAddr(r); a.IsValid() {
		return a.String()
	}
	return ""
}

// mirrorNS returns the ns parameter of a containerd mirror request, ""
// without one; the query is parsed only when it may hold one (most
// requests have no query at all).
func mirrorNS(r *http.Request) string {
	if !strings.Contains(r.URL.RawQuery, "ns=") {
		return ""
	}
	return r.URL.Query().Get("ns")
}

// isWrite reports whether a request with method changes a repository's
// content by pushing (a DELETE is cache management, and allowed).
func isWrite(method string) bool {
	return method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch
}

// targetKey is the request-context key of the *proxy.Target of a request
// for a cached repository.
type targetKey struct{}

// target returns the cached repository r is for, nil for a local one.
func target(r *http.Request) *proxy.Target {
	t, _ := r.Context().Value(targetKey{}).(*proxy.Target)
	return t
}

// noteCache records how the cache answered, for the access log: res, or
// "error" when err is set.
func noteCache(w http.ResponseWriter, res proxy.Result, err error) {
	if rw, ok := w.(*responseWriter); ok {
		rw.cache = string(res)
		if err != nil {
			rw.cache = "error"
		}
	}
}

// identityKey is the request-context key of the *auth.Identity that serve
// authorized; only the upload handler reads it, for the source of a mount.
type identityKey struct{}

// identity returns the identity serve authorized r as, nil without auth.
func identity(r *http.Request) *auth.Identity {
	id, _ := r.Context().Value(identityKey{}).(*auth.Identity)
	return id
}

// base answers GET /v2/: the registry speaks the v2 API.
func (reg *Registry) base(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", "2")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte("{}"))
	}
	return nil
}

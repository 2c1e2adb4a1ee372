package proxy

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/berth-registry/berth/gc"
	"github.com/berth-registry/berth/manifest"
	"github.com/berth-registry/berth/runner/pull"
)

// Defaults of an Upstream's zero fields.
const (
	DefaultTagFreshness = 5 * time.Minute
	DefaultReadTimeout  = 60 * time.Second
)

// Upstream configures one cached registry.
type Upstream struct {
	// Name names the upstream in logs, metrics and errors.
	Name string
	// URL is the upstream's base URL: scheme and host[:port].
	URL string
	// Prefix is the repository prefix it is served under (docker.io).
	Prefix string
	// Credentials are sent to the upstream; zero means anonymous.
	Credentials pull.Credentials
	// Transport performs the upstream requests (TLS settings included);
	// nil means a clone of http.DefaultTransport.
	Transport http.RoundTripper
	// TagFreshness: a cached tag checked less than this long ago is served
	// without asking the upstream; zero means DefaultTagFreshness.
	TagFreshness time.Duration
	// ReadTimeout: a download receiving nothing for this long fails; zero
	// means DefaultReadTimeout.
	ReadTimeout time.Duration
	// Include and Exclude are repository globs (gc.MatchRepository) over
	// the upstream's repository names: with Include set only matching
	// names are served, and a name matching Exclude never is.
	Include, Exclude []string
	// AllowPush lets clients push into the prefix (kept here, never sent
	// upstream); false refuses pushes with ErrPushDenied.
	AllowPush bool
	// ExpireAfter is the cache lifetime garbage collection applies (see
	// gc.CacheRule); pulls are noted often enough for it. Zero: none.
	ExpireAfter time.Duration
}

// upstream is an Upstream ready for use.
type upstream struct {
	Upstream
	host   string // host[:port] of URL, the pull.Client's registry name
	client *pull.Client
	// noReferrers is set once the upstream answered a referrers request
	// with 404: it has no referrers API (one that has answers 200).
	noReferrers atomic.Bool
}

// dockerHub is the prefix that means Docker Hub, whose one-component
// repository names live under library/, and whose registry answers to
// several host names.
const dockerHub = "docker.io"

// dockerHubHosts are the names clients use for Docker Hub's registry; a
// containerd mirror request for any of them (?ns=) is one for docker.io.
var dockerHubHosts = []string{"docker.io", "index.docker.io", "registry-1.docker.io"}

func newUpstream(u Upstream, userAgent string) (*upstream, error) {
	pu, err := url.Parse(u.URL)
	if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
		return nil, fmt.Errorf("upstream %s: url %q is not an http(s) base URL", u.Name, u.URL)
	}
	for _, g := range append(append([]string(nil), u.Include...), u.Exclude...) {
		if err := gc.ValidateGlob(g); err != nil {
			return nil, fmt.Errorf("upstream %s: %w", u.Name, err)
		}
	}
	if u.TagFreshness <= 0 {
		u.TagFreshness = DefaultTagFreshness
	}
	if u.ReadTimeout <= 0 {
		u.ReadTimeout = DefaultReadTimeout
	}
	creds := u.Credentials
	return &upstream{
		Upstream: u,
		host:     pu.Host,
		client: pull.NewClient(pull.ClientOptions{
			Credentials: func(string) (pull.Credentials, error) { return creds, nil },
			Transport:   u.Transport,
			UserAgent:   userAgent,
			Scheme:      pu.Scheme,
			IdleTimeout: u.ReadTimeout,
			Retries:     -1,
		}),
	}, nil
}

// matchesNS reports whether a containerd mirror request's ns (the registry
// host the client meant) names u: its prefix, its URL's host[:port], or for
// docker.io any of Docker Hub's host names.
func (u *upstream) matchesNS(ns string) bool {
	ns = strings.ToLower(ns)
	if ns == u.Prefix || ns == strings.ToLower(u.host) {
		return true
	}
	if u.Prefix == dockerHub {
		for _, h := range dockerHubHosts {
			if ns == h {
				return true
			}
		}
	}
	return false
}

// remoteName turns a repository name as a client wrote it (after the
// prefix) into the upstream's: Docker Hub's one-component names are under
// library/, as docker resolves them.
func (u *upstream) remoteName(name string) string {
	if u.Prefix == dockerHub && !strings.Contains(name, "/") {
		return "library/" + name
	}
	return name
}

// mirrors reports whether the upstream's repository remote is served, by
// the Include and Exclude globs.
func (u *upstream) mirrors(remote string) bool {
	for _, g := range u.Exclude {
		if ok, _ := gc.MatchRepository(g, remote); ok {
			return false
		}
	}
	if len(u.Include) == 0 {
		return true
	}
	for _, g := range u.Include {
		if ok, _ := gc.MatchRepository(g, remote); ok {
			return true
		}
	}
	return false
}

// Target is a cached repository: the name it is stored under and where it
// comes from.
type Target struct {
	// Repo is the repository in storage: <prefix>/<Remote>.
	Repo string
	// Remote is the repository's name on the upstream.
	Remote string
	up     *upstream
}

// Upstream returns the name of the upstream the repository is a cache of.
func (t *Target) Upstream() string { return t.up.Name }

// AllowsPush reports whether clients may push into the repository.
func (t *Target) AllowsPush() bool { return t.up.AllowPush }

// Resolve maps the repository name of a request, and its ?ns= parameter
// (the registry a containerd mirror request is for; "" when absent), to a
// cached repository. It returns nil for a local repository: no upstream's
// prefix starts the name, and ns names no upstream (an ns that names none
// is ignored, so that a mirror entry for Berth itself reaches its local
// repositories). The error is ErrNotMirrored for a name the upstream's
// globs leave out, or a manifest.ErrNameInvalid for a name that the
// mapping makes too long.
func (c *Cache) Resolve(name, ns string) (*Target, error) {
	if c == nil {
		return nil, nil
	}
	var up *upstream
	remote := ""
	if ns != "" {
		for _, u := range c.upstreams {
			if u.matchesNS(ns) {
				up, remote = u, u.remoteName(name)
				break
			}
		}
	}
	if up == nil {
		for _, u := range c.upstreams {
			if rest, ok := strings.CutPrefix(name, u.Prefix+"/"); ok {
				up, remote = u, u.remoteName(rest)
				break
			}
		}
	}
	if up == nil {
		return nil, nil
	}
	repo := up.Prefix + "/" + remote
	if err := manifest.ValidateName(repo); err != nil {
		return nil, err
	}
	if !up.mirrors(remote) {
		return nil, fmt.Errorf("%w: %s is left out of upstream %s by its include/exclude globs", ErrNotMirrored, remote, up.Name)
	}
	return &Target{Repo: repo, Remote: remote, up: up}, nil
}

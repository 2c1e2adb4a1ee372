package config

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strings"
	"time"
)

// Proxy configures the pull-through cache: the upstream registries whose
// repositories Berth serves, under a repository prefix each, beside its own.
type Proxy struct {
	// Upstreams are the registries cached. A repository whose name starts
	// with an upstream's Prefix (or that a containerd mirror request names
	// with ?ns=) is a cache of that upstream; every other repository is
	// local. Set in YAML only. Default: none.
	Upstreams []Upstream `yaml:"upstreams"`
}

// Upstream is one registry that Berth caches.
type Upstream struct {
	// Name names the upstream in logs, metrics and errors: lower-case
	// letters, digits and dashes. Required, unique.
	Name string `yaml:"name"`
	// URL is the upstream's base URL, scheme and host[:port] only:
	// https://registry.example. Required.
	URL string `yaml:"url"`
	// Prefix is the repository prefix the upstream is served under:
	// docker.io serves the upstream's library/nginx as
	// docker.io/library/nginx. One or more repository-name components;
	// neither equal to nor nested in another upstream's. Required.
	Prefix string `yaml:"prefix"`
	// Username and Password are the credentials sent to the upstream
	// (HTTP Basic, or the token flow's). Default: anonymous.
	Username string `yaml:"username"`
	// Password goes with Username. Never logged or printed.
	Password string `yaml:"password" secret:"true"`
	// PasswordFile is a file holding the password or access token (read at
	// start, trailing newline dropped), instead of Password.
	PasswordFile string `yaml:"passwordFile"`
	// DockerConfig is a docker config.json whose credentials for the
	// upstream's host are used, instead of Username and Password.
	DockerConfig string `yaml:"dockerConfig"`
	// TLS configures the connection to an https upstream.
	TLS UpstreamTLS `yaml:"tls"`
	// TagFreshness: a cached tag checked less than this long ago is
	// served without asking the upstream; an older one is checked with a
	// HEAD first (Docker Hub counts GETs, not HEADs). 0 means the default.
	// Default: 5m.
	TagFreshness time.Duration `yaml:"tagFreshness"`
	// ReadTimeout: a download from the upstream that receives nothing for
	// this long fails (and stores nothing). 0 means the default.
	// Default: 60s.
	ReadTimeout time.Duration `yaml:"readTimeout"`
	// Include lists globs over the upstream's repository names (library/*,
	// team/**); when set, only matching repositories are served. Default:
	// all.
	Include []string `yaml:"include,omitempty"`
	// Exclude lists globs over the upstream's repository names that are
	// never served. Default: none.
	Exclude []string `yaml:"exclude,omitempty"`
	// AllowPush lets clients push into the upstream's prefix (stored here
	// only, never sent upstream). Default: false (DENIED).
	AllowPush bool `yaml:"allowPush"`
	// ExpireAfter: garbage collection deletes a cached manifest not pulled
	// for this long (blobs another image needs are kept). 0 keeps cached
	// content forever. Default: 0.
	ExpireAfter time.Duration `yaml:"expireAfter"`
	// MaxBytes bounds what the upstream's cached repositories reference:
	// over it, garbage collection deletes the least recently pulled cached
	// images first. 0: no bound. Default: 0.
	MaxBytes int64 `yaml:"maxBytes"`
}

// UpstreamTLS configures TLS towards an upstream.
type UpstreamTLS struct {
	// CAFile is a PEM file of certificate authorities trusted besides the
	// system's. Default: none.
	CAFile string `yaml:"caFile"`
	// InsecureSkipVerify accepts any certificate. Default: false.
	InsecureSkipVerify bool `yaml:"insecureSkipVerify"`
}

// DefaultTagFreshness and DefaultUpstreamReadTimeout are an upstream's
// defaults where its YAML leaves them out.
const (
	DefaultTagFreshness        = 5 * time.Minute
	DefaultUpstreamReadTimeout = 60 * time.Second
)

func defaultProxy() Proxy { return Proxy{Upstreams: []Upstream{}} }

var (
	upstreamName = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)
	// prefixComponent is a repository-name path component (the
	// distribution-spec grammar).
	prefixComponent = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*$`)
)

// applyDefaults fills the keys each upstream left at zero (the decoder
// leaves a list element's absent keys at zero).
func (p *Proxy) applyDefaults() {
	for i := range p.Upstreams {
		u := &p.Upstreams[i]
		if u.TagFreshness == 0 {
			u.TagFreshness = DefaultTagFreshness
		}
		if u.ReadTimeout == 0 {
			u.ReadTimeout = DefaultUpstreamReadTimeout
		}
	}
}

func (p *Proxy) validate(report reportFunc) {
	names, prefixes := map[string]bool{}, []string{}
	for i := range p.Upstreams {
		u := &p.Upstreams[i]
		key := fmt.Sprintf("proxy.upstreams[%d]", i)
		switch {
		case u.Name == "":
			report(key+".name", "required: lower-case letters, digits and dashes")
		case !upstreamName.MatchString(u.Name):
			report(key+".name", "%q: use lower-case letters, digits and dashes", u.Name)
		case names[u.Name]:
			report(key+".name", "%q names two upstreams", u.Name)
		}
		names[u.Name] = true
		u.validateURL(key, report)
		if u.Prefix == "" {
			report(key+".prefix", "required: the repository prefix it is served under, such as docker.io")
		} else {
			for _, c := range strings.Split(u.Prefix, "/") {
				if !prefixComponent.MatchString(c) {
					report(key+".prefix", "%q is not a repository-name prefix (lower-case components such as docker.io or mirror/quay.io)", u.Prefix)
					break
				}
			}
			for _, o := range prefixes {
				if o == u.Prefix || strings.HasPrefix(o, u.Prefix+"/") || strings.HasPrefix(u.Prefix, o+"/") {
					report(key+".prefix", "%q overlaps the prefix %q of another upstream", u.Prefix, o)
				}
			}
			prefixes = append(prefixes, u.Prefix)
		}
		creds := 0
		for _, set := range []bool{u.Password != "", u.PasswordFile != "", u.DockerConfig != ""} {
			if set {
				creds++
			}
		}
		if creds > 1 {
			report(key, "set one of password, passwordFile and dockerConfig")
		}
		if (u.Password != "" || u.PasswordFile != "") && u.Username == "" {
			report(key+".username", "required with password or passwordFile")
		}
		if u.TagFreshness < 0 {
			report(key+".tagFreshness", "%s must not be negative", u.TagFreshness)
		}
		if u.ReadTimeout < 0 {
			report(key+".readTimeout", "%s must not be negative", u.ReadTimeout)
		}
		if u.MaxBytes < 0 {
			report(key+".maxBytes", "%d must not be negative (0: no bound)", u.MaxBytes)
		}
		if u.ExpireAfter < 0 {
			report(key+".expireAfter", "%s must not be negative (0 keeps cached content)", u.ExpireAfter)
		}
		for j, g := range u.Include {
			validateGlob(fmt.Sprintf("%s.include[%d]", key, j), g, report)
		}
		for j, g := range u.Exclude {
			validateGlob(fmt.Sprintf("%s.exclude[%d]", key, j), g, report)
		}
	}
}

// validateURL checks an upstream's url: http or https, a host, no path
// beyond "/", no credentials, query or fragment. Messages never quote
// credentials.
func (u *Upstream) validateURL(key string, report reportFunc) {
	if u.URL == "" {
		report(key+".url", "required: the upstream's base URL, such as https://registry.example")
		return
	}
	pu, err := url.Parse(u.URL)
	switch {
	case err != nil:
		report(key+".url", "does not parse as a URL")
	case pu.User != nil:
		report(key+".url", "must not hold credentials (use username and password)")
	case pu.Scheme != "http" && pu.Scheme != "https":
		report(key+".url", "%q: the scheme must be http or https", pu.Scheme)
	case pu.Host == "":
		report(key+".url", "has no host")
	case pu.Path != "" && pu.Path != "/", pu.RawQuery != "", pu.Fragment != "":
		report(key+".url", "%s: give scheme and host only (the registry API lives at /v2/)", pu.Redacted())
	}
}

// validateGlob checks a repository glob as gc.retention's are checked.
func validateGlob(key, g string, report reportFunc) {
	if g == "" {
		report(key, "empty glob")
		return
	}
	for _, c := range strings.Split(g, "/") {
		if c == "**" {
			continue
		}
		if _, err := path.Match(c, ""); c == "" || err != nil {
			report(key, "%q is not a valid glob", g)
			return
		}
	}
}

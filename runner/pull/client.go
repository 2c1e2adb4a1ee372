package pull

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Defaults of ClientOptions.
const (
	DefaultUserAgent = "berth"
	DefaultRetries   = 3
	// DefaultIdleTimeout is ClientOptions.IdleTimeout's default.
	DefaultIdleTimeout = 60 * time.Second
	// maxRedirects bounds the redirects followed for one request.
	maxRedirects = 10
	// maxErrorBody bounds what is read of an error response or a token response.
	maxErrorBody = 64 << 10
)

// ClientOptions configure a Client. The zero value pulls anonymously over HTTPS (plain
// HTTP for loopback registries).
type ClientOptions struct {
	// Insecure allows registries that are not loopback to be reached over HTTPS without
	// certificate verification, or over plain HTTP when HTTPS does not answer, and allows
	// credentials to be sent to them over plain HTTP.
	Insecure bool
	// Credentials returns the credentials for a registry host[:port]; nil, or zero
	// Credentials, means anonymous. (*DockerConfig).Credentials fits.
	Credentials func(registry string) (Credentials, error)
	// Transport performs the HTTP requests; nil means a clone of http.DefaultTransport
	// (with certificate verification off when Insecure). Redirects are followed by the
	// Client itself, so that credentials never follow them to another host.
	Transport http.RoundTripper
	// UserAgent is sent with every request; "" means DefaultUserAgent.
	UserAgent string
	// Retries is how many times in a row a blob download may fail without progress
	// before Pull gives up on it; 0 means DefaultRetries, negative means no retries.
	Retries int
	// IdleTimeout aborts a blob download that received no byte for this long, so that a
	// stalled connection is resumed like a dropped one; 0 means DefaultIdleTimeout,
	// negative means none. A Transport built by NewClient also waits at most this long
	// for response headers.
	IdleTimeout time.Duration
	// Backoff is the wait before the n-th consecutive retry without progress (n >= 1);
	// nil means 250ms doubling up to 4s. A retry after progress does not wait.
	Backoff func(n int) time.Duration
	// Scheme, "http" or "https", is the only scheme tried for every registry; "" means
	// the default choice (plain HTTP for loopback registries, HTTPS for others, and
	// HTTP after HTTPS with Insecure). A client of one configured registry URL (the
	// pull-through cache's) sets it from the URL.
	Scheme string
}

// Client pulls images from registries. It remembers, per registry, the scheme that
// answered, the authentication challenge and the tokens it obtained, so one Client
// should serve a whole pull. It is safe for concurrent use.
type Client struct {
	opts ClientOptions
	http *http.Client

	mu         sync.Mutex
	registries map[string]*registryState
}

// NewClient returns a Client with opts.
func NewClient(opts ClientOptions) *Client {
	if opts.UserAgent == "" {
		opts.UserAgent = DefaultUserAgent
	}
	switch {
	case opts.Retries == 0:
		opts.Retries = DefaultRetries
	case opts.Retries < 0:
		opts.Retries = 0
	}
	switch {
	case opts.IdleTimeout == 0:
		opts.IdleTimeout = DefaultIdleTimeout
	case opts.IdleTimeout < 0:
		opts.IdleTimeout = 0
	}
	if opts.Backoff == nil {
		opts.Backoff = func(n int) time.Duration {
			d := 250 * time.Millisecond << min(n-1, 4)
			return min(d, 4*time.Second)
		}
	}
	rt := opts.Transport
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.ResponseHeaderTimeout = opts.IdleTimeout
		if opts.Insecure {
			if t.TLSClientConfig == nil {
				t.TLSClientConfig = &tls.Config{}
			}
			t.TLSClientConfig.InsecureSkipVerify = true //nolint:gosec // the user asked for it
		}
		rt = t
	}
	return &Client{
		opts: opts,
		http: &http.Client{
			Transport: rt,
			// Redirects are followed in send, which decides which credentials go along.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		registries: map[string]*registryState{},
	}
}

// registryState is what a Client knows about one registry.
type registryState struct {
	host string

	mu        sync.Mutex // guards everything below; held during ping and token requests
	base      string     // "https://host" or "http://host" once pinged
	challenge *challenge // nil: no authentication asked for (yet)
	creds     *Credentials
	tokens    map[string]cachedToken // by scope
}

// cachedToken is a bearer token and when to stop using it.
type cachedToken struct {
	token   string
	expires time.Time
}

// registry returns the state of host, pinging it first if needed (GET /v2/), which
// decides the scheme and learns the authentication challenge.
func (c *Client) registry(ctx context.Context, host string) (*registryState, error) {
	c.mu.Lock()
	st, ok := c.registries[host]
	if !ok {
		st = &registryState{host: host, tokens: map[string]cachedToken{}}
		c.registries[host] = st
	}
	c.mu.Unlock()
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.base == "" {
		if err := c.ping(ctx, st); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// schemes returns the schemes to try for host, in order.
func (c *Client) schemes(host string) []string {
	switch {
	case c.opts.Scheme != "":
		return []string{c.opts.Scheme}
	case isLoopback(host):
		return []string{"http"}
	case c.opts.Insecure:
		return []string{"https", "http"}
	}
	return []string{"https"}
}

// ping sends GET /v2/ to st.host and records the scheme that answered and the challenge
// of a 401. With Insecure, plain HTTP is tried when HTTPS fails below HTTP. The caller
// holds st.mu.
func (c *Client) ping(ctx context.Context, st *registryState) error {
	var firstErr error
	for _, scheme := range c.schemes(st.host) {
		base := scheme + "://" + st.host
		req, err := c.newRequest(ctx, http.MethodGet, base+"/v2/", nil)
		if err != nil {
			return err
		}
		resp, err := c.http.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if firstErr == nil {
				firstErr = fmt.Errorf("contacting registry %s: %w", st.host, err)
			}
			continue
		}
		drain(resp)
		if resp.StatusCode >= 500 {
			return &ResponseError{Method: req.Method, URL: redact(req.URL), Status: resp.StatusCode}
		}
		st.base = base
		if resp.StatusCode == http.StatusUnauthorized {
			ch, ok := pick(parseChallenges(resp.Header))
			if !ok {
				return fmt.Errorf("%w: %s answered 401 without a Bearer or Basic challenge", ErrUnauthorized, st.host)
			}
			st.challenge = &ch
		}
		return nil
	}
	return firstErr
}

// newRequest builds a request with the User-Agent set.
func (c *Client) newRequest(ctx context.Context, method, u string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", c.opts.UserAgent)
	return req, nil
}

// origin returns scheme://host[:port] of u, the unit credentials are scoped to.
func origin(u *url.URL) string {
	host := u.Host
	if u.Port() == "" {
		switch u.Scheme {
		case "http":
			host += ":80"
		case "https":
			host += ":443"
		}
	}
	return strings.ToLower(u.Scheme + "://" + host)
}

// send performs req and follows redirects itself. authorization is the Authorization
// header for trustedOrigin: it is set on req and on redirected requests only while their
// origin is trustedOrigin, never elsewhere (presigned storage URLs, CDNs). The Range and
// Accept headers go along. fromTrusted reports whether the final response came from
// trustedOrigin.
func (c *Client) send(req *http.Request, trustedOrigin, authorization string) (resp *http.Response, fromTrusted bool, err error) {
	for hop := 0; ; hop++ {
		trusted := trustedOrigin != "" && origin(req.URL) == trustedOrigin
		if trusted && authorization != "" {
			req.Header.Set("Authorization", authorization)
		} else {
			req.Header.Del("Authorization")
		}
		resp, err = c.http.Do(req)
		if err != nil {
			return nil, false, redactURLError(err)
		}
		switch resp.StatusCode {
		case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
			http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		default:
			return resp, trusted, nil
		}
		loc := resp.Header.Get("Location")
		if loc == "" || req.Method != http.MethodGet {
			return resp, trusted, nil
		}
		drain(resp)
		if hop >= maxRedirects {
			return nil, false, fmt.Errorf("%w: %s: more than %d redirects", ErrBadResponse, redact(req.URL), maxRedirects)
		}
		next, err := req.URL.Parse(loc)
		if err != nil {
			return nil, false, fmt.Errorf("%w: %s redirected to an invalid Location: %v", ErrBadResponse, redact(req.URL), err)
		}
		if next.Scheme != "http" && next.Scheme != "https" {
			return nil, false, fmt.Errorf("%w: %s redirected to a %q URL", ErrBadResponse, redact(req.URL), next.Scheme)
		}
		nreq, err := c.newRequest(req.Context(), http.MethodGet, next.String(), nil)
		if err != nil {
			return nil, false, err
		}
		for _, h := range []string{"Accept", "Range"} {
			if v := req.Header.Get(h); v != "" {
				nreq.Header.Set(h, v)
			}
		}
		req = nreq
	}
}

// registryGet sends GET <registry>/v2/<path> with the credentials for scope (see Do).
// The caller checks the status and closes the body.
func (c *Client) registryGet(ctx context.Context, host, path, scope string, header http.Header) (*http.Response, error) {
	return c.Do(ctx, host, Request{Method: http.MethodGet, URL: "/v2/" + path, Header: header, Scopes: scopeList(scope)})
}

// authorization returns the Authorization header value for a request of scope to st,
// obtaining and caching a token if the registry asked for Bearer; "" when it asked for
// nothing.
func (c *Client) authorization(ctx context.Context, st *registryState, scope string) (string, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.challenge == nil {
		return "", nil
	}
	creds, err := c.credentials(st)
	if err != nil {
		return "", err
	}
	switch st.challenge.scheme {
	case "basic":
		if creds.Username == "" && creds.Password == "" {
			return "", nil // anonymous: the 401 will say so
		}
		return basicAuth(creds.Username, creds.Password), nil
	case "bearer":
		if t, ok := st.tokens[scope]; ok && time.Now().Before(t.expires) {
			return "Bearer " + t.token, nil
		}
		tr, err := c.fetchToken(ctx, st.host, *st.challenge, scopeList(scope), creds, false)
		if err != nil {
			return "", err
		}
		st.tokens[scope] = cachedToken{token: tr.token, expires: tr.expires}
		return "Bearer " + tr.token, nil
	}
	return "", fmt.Errorf("%w: %s asks for %q authentication", ErrUnsupported, st.host, st.challenge.scheme)
}

// credentials returns the credentials for st, looked up once. The caller holds st.mu.
func (c *Client) credentials(st *registryState) (Credentials, error) {
	if st.creds != nil {
		return *st.creds, nil
	}
	var cr Credentials
	if c.opts.Credentials != nil {
		var err error
		if cr, err = c.opts.Credentials(st.host); err != nil {
			return Credentials{}, err
		}
	}
	st.creds = &cr
	return cr, nil
}

func scopeList(scope string) []string {
	if scope == "" {
		return nil
	}
	return strings.Fields(scope)
}

// repositoryScope is the token scope for pulling from repo.
func repositoryScope(repo string) string { return "repository:" + repo + ":pull" }

// basicAuth renders an Authorization header value for HTTP Basic authentication.
func basicAuth(user, password string) string {
	req := http.Request{Header: http.Header{}}
	req.SetBasicAuth(user, password)
	return req.Header.Get("Authorization")
}

// ErrorFromResponse builds the error for an unexpected response of a registry or token
// server: a *ResponseError with the status and the codes and first message of the OCI
// error envelope of its body (or the start of a body that is not one). It closes the body.
func ErrorFromResponse(resp *http.Response) error {
	defer resp.Body.Close()
	e := &ResponseError{Method: resp.Request.Method, URL: redact(resp.Request.URL), Status: resp.StatusCode}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var env struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &env) == nil && len(env.Errors) > 0 {
		for _, oe := range env.Errors {
			e.Codes = append(e.Codes, oe.Code)
			if e.Message == "" {
				e.Message = oe.Message
			}
		}
	} else if s := strings.TrimSpace(string(body)); s != "" && !strings.HasPrefix(s, "<") {
		e.Message = clip(s, 200)
	}
	return e
}

// redact returns u without its query and user info, for messages.
func redact(u *url.URL) string {
	r := *u
	r.RawQuery, r.ForceQuery, r.User, r.Fragment = "", false, nil, ""
	return r.String()
}

// redactURLError drops the query and user info from the URL of a
// transport error (*url.Error), which may hold a presigned signature or a
// token request's account, so that messages and logs never show them.
func redactURLError(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		if u, perr := url.Parse(ue.URL); perr == nil {
			ue.URL = redact(u)
		} else {
			ue.URL = "(unparsable URL)"
		}
	}
	return err
}

// clip shortens s to at most n bytes, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// drain discards a little of the body, so the connection can be reused, and closes it.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
}

// errContext returns ctx's error if it is done, else err; used where a transport error
// is really a cancellation.
func errContext(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		if c := context.Cause(ctx); c != nil && !errors.Is(c, cerr) {
			return c
		}
		return cerr
	}
	return err
}

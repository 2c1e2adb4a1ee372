package pull

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Request is one request to a registry, for Client.Do: what to send, not yet to whom
// or with which credentials.
type Request struct {
	// Method is the HTTP method.
	Method string
	// URL is a path on the registry ("/v2/team/app/blobs/uploads/"), or an absolute
	// URL the registry gave in a Location header. Credentials go only to the registry's
	// own scheme://host:port.
	URL string
	// Header is sent with every attempt.
	Header http.Header
	// Body opens the request body; nil sends none. It is called anew for each attempt
	// (a first attempt may meet a 401 challenge), so it must return the same bytes
	// every time.
	Body func() (io.ReadCloser, error)
	// ContentLength is the length of Body's bytes; negative means unknown (chunked
	// transfer encoding). It is ignored without Body.
	ContentLength int64
	// Scopes are the token scopes the request needs, such as
	// "repository:team/app:pull,push"; none for requests any token allows (GET /v2/).
	Scopes []string
}

// Do sends req to registry (host[:port]) with the credentials for req.Scopes: it pings
// the registry first if this Client has not yet (which decides the scheme), obtains a
// token for the scopes when the registry asks for Bearer and caches it, and on a 401
// from the registry learns the new challenge and sends the request once more with a
// fresh token. GET requests follow redirects, without the credentials when they lead
// to another origin; other methods return the redirect. The caller checks the status
// (ErrorFromResponse turns an unexpected one into an error carrying the registry's
// message) and closes the body.
func (c *Client) Do(ctx context.Context, registry string, req Request) (*http.Response, error) {
	st, err := c.registry(ctx, registry)
	if err != nil {
		return nil, err
	}
	base, err := url.Parse(st.base)
	if err != nil {
		return nil, err
	}
	target, err := base.Parse(req.URL)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: the URL %q does not parse: %v", ErrBadResponse, registry, clip(req.URL, 100), err)
	}
	if target.Scheme != "http" && target.Scheme != "https" {
		return nil, fmt.Errorf("%w: %s: %q is not an http(s) URL", ErrBadResponse, registry, clip(req.URL, 100))
	}
	scope := strings.Join(req.Scopes, " ")
	for attempt := 0; ; attempt++ {
		var body io.ReadCloser
		if req.Body != nil {
			if body, err = req.Body(); err != nil {
				return nil, err
			}
		}
		hr, err := c.newRequest(ctx, req.Method, target.String(), body)
		if err != nil {
			if body != nil {
				body.Close()
			}
			return nil, err
		}
		if body != nil {
			hr.ContentLength = req.ContentLength
			if req.ContentLength == 0 {
				hr.Body = http.NoBody
				body.Close()
			}
		}
		for k, vs := range req.Header {
			hr.Header[k] = vs
		}
		authorization, err := c.authorization(ctx, st, scope)
		if err != nil {
			if body != nil {
				body.Close()
			}
			return nil, err
		}
		resp, fromRegistry, err := c.send(hr, origin(base), authorization)
		if err != nil {
			return nil, errContext(ctx, err)
		}
		if resp.StatusCode != http.StatusUnauthorized || !fromRegistry || attempt > 0 {
			return resp, nil
		}
		ch, ok := pick(parseChallenges(resp.Header))
		if !ok {
			return resp, nil
		}
		drain(resp)
		st.mu.Lock()
		st.challenge = &ch
		delete(st.tokens, scope) // rejected: fetch a new one
		st.mu.Unlock()
	}
}

// Retries returns how many times in a row a request may fail without progress before
// it is given up (ClientOptions.Retries).
func (c *Client) Retries() int { return c.opts.Retries }

// Backoff returns the wait before the n-th consecutive retry without progress (n >= 1),
// as ClientOptions.Backoff sets it.
func (c *Client) Backoff(n int) time.Duration { return c.opts.Backoff(n) }

// NewClientWithConfig returns a Client with opts whose credentials come from the docker
// config at configPath (DockerConfigPath() when empty; anonymous when that cannot be
// determined), unless opts.Credentials is already set.
func NewClientWithConfig(opts ClientOptions, configPath string) (*Client, error) {
	if opts.Credentials == nil {
		var err error
		if configPath == "" {
			configPath, err = DockerConfigPath()
		}
		if err == nil {
			dc, err := LoadDockerConfig(configPath)
			if err != nil {
				return nil, err
			}
			opts.Credentials = dc.Credentials
		}
	}
	return NewClient(opts), nil
}

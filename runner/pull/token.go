package pull

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

const (
	// clientID identifies Berth to token servers (OAuth2 client_id).
	clientID = "berth"
	// minTokenLifetime is what the Docker token spec tells clients to assume when a
	// token response has no (or a shorter) expires_in.
	minTokenLifetime = 60 * time.Second
	// tokenMargin is subtracted from a token's lifetime, so that it is not used right
	// as it expires.
	tokenMargin = 5 * time.Second
	// maxTokenLifetime caps the lifetime a token response claims.
	maxTokenLifetime = 24 * time.Hour
)

// tokenResult is a token server's answer.
type tokenResult struct {
	token   string
	refresh string // a refresh token, when the server issued one (offline access)
	expires time.Time
}

// fetchToken obtains a bearer token for scopes from the realm of ch (the Docker token
// authentication spec). With an identity token it uses the OAuth2 POST flow
// (grant_type=refresh_token); otherwise GET, with Basic credentials when there are any.
// offline asks the GET flow for a refresh token too (offline_token=true), as login does.
//
// The realm may be another host than the registry: that is where the spec sends the
// credentials. They are refused over plain HTTP unless the realm is loopback or the
// client is Insecure.
func (c *Client) fetchToken(ctx context.Context, registry string, ch challenge, scopes []string, creds Credentials, offline bool) (tokenResult, error) {
	realm := ch.params["realm"]
	if realm == "" {
		return tokenResult{}, fmt.Errorf("%w: %s sent a Bearer challenge without a realm", ErrBadResponse, registry)
	}
	u, err := url.Parse(realm)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return tokenResult{}, fmt.Errorf("%w: %s sent the token realm %q, which is not an http(s) URL", ErrBadResponse, registry, realm)
	}
	if u.Scheme == "http" && !creds.IsZero() && !isLoopback(u.Host) && !c.opts.Insecure {
		return tokenResult{}, fmt.Errorf("%w: token realm %s of %s (use --insecure to allow)", ErrInsecure, redact(u), registry)
	}
	service := ch.params["service"]

	start := time.Now()
	var req *http.Request
	authorization := ""
	if creds.IdentityToken != "" {
		form := url.Values{}
		form.Set("grant_type", "refresh_token")
		form.Set("refresh_token", creds.IdentityToken)
		form.Set("client_id", clientID)
		if service != "" {
			form.Set("service", service)
		}
		if len(scopes) > 0 {
			form.Set("scope", strings.Join(scopes, " "))
		}
		if offline {
			form.Set("access_type", "offline")
		}
		req, err = c.newRequest(ctx, http.MethodPost, u.String(), strings.NewReader(form.Encode()))
		if err != nil {
			return tokenResult{}, err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		q := u.Query()
		if service != "" {
			q.Set("service", service)
		}
		for _, s := range scopes {
			q.Add("scope", s)
		}
		if creds.Username != "" {
			q.Set("account", creds.Username)
		}
		if offline {
			q.Set("offline_token", "true")
			q.Set("client_id", clientID)
		}
		u.RawQuery = q.Encode()
		req, err = c.newRequest(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return tokenResult{}, err
		}
		if creds.Username != "" || creds.Password != "" {
			authorization = basicAuth(creds.Username, creds.Password)
		}
	}
	resp, _, err := c.send(req, origin(u), authorization)
	if err != nil {
		return tokenResult{}, errContext(ctx, fmt.Errorf("token request to %s: %w", redact(u), err))
	}
	if resp.StatusCode != http.StatusOK {
		err := ErrorFromResponse(resp)
		return tokenResult{}, fmt.Errorf("token for %s: %w", registry, err)
	}
	defer resp.Body.Close()
	return decodeToken(io.LimitReader(resp.Body, maxErrorBody), start, redact(u))
}

// decodeToken reads a token server's JSON answer (token or access_token,
// expires_in, refresh_token) requested at start, from the server named from.
// The token expires tokenMargin before the lifetime the answer claims, which
// is taken to be at least minTokenLifetime and at most maxTokenLifetime.
// Errors wrap ErrBadResponse.
func decodeToken(r io.Reader, start time.Time, from string) (tokenResult, error) {
	var body struct {
		Token        string `json:"token"`
		AccessToken  string `json:"access_token"`
		ExpiresIn    int64  `json:"expires_in"`
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.NewDecoder(r).Decode(&body); err != nil {
		return tokenResult{}, fmt.Errorf("%w: token response of %s: %v", ErrBadResponse, from, err)
	}
	tr := tokenResult{token: body.Token, refresh: body.RefreshToken}
	if tr.token == "" {
		tr.token = body.AccessToken
	}
	if tr.token == "" {
		return tokenResult{}, fmt.Errorf("%w: token response of %s holds no token", ErrBadResponse, from)
	}
	lifetime := minTokenLifetime
	if body.ExpiresIn > int64(minTokenLifetime/time.Second) {
		lifetime = time.Duration(min(body.ExpiresIn, int64(maxTokenLifetime/time.Second))) * time.Second
	}
	tr.expires = start.Add(lifetime - tokenMargin)
	return tr, nil
}

package pull

import (
	"context"
	"fmt"
	"net/http"
)

// Login checks username and password against registry (host[:port], a scheme is
// ignored) and stores them in the docker config at configPath (DockerConfigPath() when
// empty), keeping every other entry and key of the file; the file is written with mode
// 0600.
//
// The check follows what the registry asks for at GET /v2/: with Basic, GET /v2/ with
// the credentials must succeed; with Bearer, the token server must issue a token for
// them (asked with offline_token=true) and GET /v2/ must accept it. When the token
// server issues a refresh token, that is stored as the identity token instead of the
// password, as docker does. A registry that asks for nothing gets the credentials stored
// unchecked. Refused credentials give an error wrapping ErrUnauthorized and leave the
// file untouched; a config that delegates registry to a credHelpers entry gives
// ErrCredentialHelper.
func (c *Client) Login(ctx context.Context, registry, username, password, configPath string) error {
	host, err := NormalizeRegistry(registry)
	if err != nil {
		return err
	}
	if username == "" {
		return fmt.Errorf("%w: login to %s: the user name is empty", ErrUnauthorized, host)
	}
	cfg, err := LoadDockerConfig(configPath)
	if err != nil {
		return err
	}
	perRegistry, _, err := cfg.helpers(host)
	if err != nil {
		return err
	}
	if perRegistry != "" {
		return helperError(cfg.Path(), host, perRegistry)
	}

	st, err := c.registry(ctx, host)
	if err != nil {
		return err
	}
	st.mu.Lock()
	base, ch := st.base, st.challenge
	st.mu.Unlock()

	creds := Credentials{Username: username, Password: password}
	stored := creds
	if ch != nil {
		var authorization string
		switch ch.scheme {
		case "basic":
			authorization = basicAuth(username, password)
		case "bearer":
			tr, err := c.fetchToken(ctx, host, *ch, nil, creds, true)
			if err != nil {
				return fmt.Errorf("login to %s: %w", host, err)
			}
			if tr.refresh != "" {
				stored = Credentials{Username: username, IdentityToken: tr.refresh}
			}
			authorization = "Bearer " + tr.token
		default:
			return fmt.Errorf("%w: %s asks for %q authentication", ErrUnsupported, host, ch.scheme)
		}
		req, err := c.newRequest(ctx, http.MethodGet, base+"/v2/", nil)
		if err != nil {
			return err
		}
		resp, _, err := c.send(req, origin(req.URL), authorization)
		if err != nil {
			return errContext(ctx, fmt.Errorf("login to %s: %w", host, err))
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("login to %s: %w", host, ErrorFromResponse(resp))
		}
		drain(resp)
	}

	if err := cfg.SetCredentials(host, stored); err != nil {
		return err
	}
	if err := cfg.Save(); err != nil {
		return err
	}
	// Later requests of this client use the new credentials.
	st.mu.Lock()
	st.creds = &stored
	st.tokens = map[string]cachedToken{}
	st.mu.Unlock()
	return nil
}

// Logout removes the credentials of registry (host[:port]) from the docker config at
// configPath (DockerConfigPath() when empty), keeping everything else. It returns an
// error wrapping ErrNotLoggedIn, and leaves the file untouched, when there were none.
func Logout(registry, configPath string) error {
	host, err := NormalizeRegistry(registry)
	if err != nil {
		return err
	}
	cfg, err := LoadDockerConfig(configPath)
	if err != nil {
		return err
	}
	removed, err := cfg.RemoveCredentials(host)
	if err != nil {
		return err
	}
	if !removed {
		return fmt.Errorf("%w: %s has no credentials for %s", ErrNotLoggedIn, cfg.Path(), host)
	}
	return cfg.Save()
}

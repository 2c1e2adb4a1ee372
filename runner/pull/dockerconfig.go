package pull

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Credentials authenticate to a registry or its token server.
type Credentials struct {
	Username string
	Password string
	// IdentityToken is an OAuth2 refresh token (docker config "identitytoken"). When set it
	// is used instead of the password, through the token server's OAuth2 POST flow.
	IdentityToken string
}

// IsZero reports whether c holds no credentials (anonymous access).
func (c Credentials) IsZero() bool {
	return c.Username == "" && c.Password == "" && c.IdentityToken == ""
}

// DockerConfig is a docker config.json file: the format `docker login`, podman and
// `berth login` share, of which this package reads and writes the "auths" map and reads
// "credsStore" and "credHelpers". Every other key is kept as it was read.
//
// An entry of "auths" is keyed by registry host[:port] (keys with a scheme or a path, as
// older clients wrote them, match too) and holds "auth", the base64 of user:password,
// and optionally "identitytoken".
type DockerConfig struct {
	path  string
	top   map[string]json.RawMessage
	auths map[string]json.RawMessage
}

// authEntry is one value of the "auths" map.
type authEntry struct {
	Auth          string `json:"auth,omitempty"`
	Username      string `json:"username,omitempty"` // older files; "auth" wins
	Password      string `json:"password,omitempty"`
	IdentityToken string `json:"identitytoken,omitempty"`
}

// DockerConfigPath returns the config.json Berth uses when no path is given:
// $DOCKER_CONFIG/config.json when DOCKER_CONFIG is set, else ~/.docker/config.json.
func DockerConfigPath() (string, error) {
	if dir := os.Getenv("DOCKER_CONFIG"); dir != "" {
		return filepath.Join(dir, "config.json"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("locating the docker config: %w", err)
	}
	return filepath.Join(home, ".docker", "config.json"), nil
}

// LoadDockerConfig reads the docker config at path, or at DockerConfigPath() when path is
// empty. A missing or empty file is an empty config. Errors other than I/O wrap
// ErrDockerConfig.
func LoadDockerConfig(path string) (*DockerConfig, error) {
	if path == "" {
		var err error
		if path, err = DockerConfigPath(); err != nil {
			return nil, err
		}
	}
	c := &DockerConfig{path: path, top: map[string]json.RawMessage{}, auths: map[string]json.RawMessage{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(string(b)) == "" {
		return c, nil
	}
	if err := json.Unmarshal(b, &c.top); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrDockerConfig, path, err)
	}
	if c.top == nil { // the file was "null"
		c.top = map[string]json.RawMessage{}
	}
	if raw, ok := c.top["auths"]; ok && present(raw) {
		if err := json.Unmarshal(raw, &c.auths); err != nil {
			return nil, fmt.Errorf("%w: %s: auths: %v", ErrDockerConfig, path, err)
		}
		if c.auths == nil {
			c.auths = map[string]json.RawMessage{}
		}
	}
	return c, nil
}

// present reports whether a JSON value was given and is not null.
func present(raw json.RawMessage) bool {
	return len(raw) > 0 && string(raw) != "null"
}

// Path returns the file the config was read from and Save writes.
func (c *DockerConfig) Path() string { return c.path }

// keysFor returns the keys of auths that name registry: the exact key first, then keys
// that normalize to it ("https://host/v1/"), in sorted order.
func (c *DockerConfig) keysFor(registry string) []string {
	var keys []string
	if _, ok := c.auths[registry]; ok {
		keys = append(keys, registry)
	}
	var others []string
	for k := range c.auths {
		if k == registry {
			continue
		}
		if n, err := NormalizeRegistry(k); err == nil && n == registry {
			others = append(others, k)
		}
	}
	sort.Strings(others)
	return append(keys, others...)
}

// helpers returns the credential helper credHelpers names for registry and the
// credsStore helper; "" when there is none.
func (c *DockerConfig) helpers(registry string) (perRegistry, store string, err error) {
	if raw, ok := c.top["credHelpers"]; ok && present(raw) {
		var helpers map[string]string
		if err := json.Unmarshal(raw, &helpers); err != nil {
			return "", "", fmt.Errorf("%w: %s: credHelpers: %v", ErrDockerConfig, c.path, err)
		}
		for k, h := range helpers {
			if n, err := NormalizeRegistry(k); err == nil && n == registry && h != "" {
				perRegistry = h
			}
		}
	}
	if raw, ok := c.top["credsStore"]; ok && present(raw) {
		if err := json.Unmarshal(raw, &store); err != nil {
			return "", "", fmt.Errorf("%w: %s: credsStore: %v", ErrDockerConfig, c.path, err)
		}
	}
	return perRegistry, store, nil
}

// Credentials returns the credentials stored for registry (host[:port]); none, without
// an error, when the config has no entry for it.
//
// Credential helpers are not run. When credHelpers names one for registry, or credsStore
// is set and the registry's auths entry holds no secret of its own (the helper holds it),
// the error wraps ErrCredentialHelper and names the helper. A credsStore with no entry at
// all for registry means anonymous access.
func (c *DockerConfig) Credentials(registry string) (Credentials, error) {
	registry, err := NormalizeRegistry(registry)
	if err != nil {
		return Credentials{}, err
	}
	perRegistry, store, err := c.helpers(registry)
	if err != nil {
		return Credentials{}, err
	}
	if perRegistry != "" {
		return Credentials{}, helperError(c.path, registry, perRegistry)
	}
	keys := c.keysFor(registry)
	for _, k := range keys {
		var e authEntry
		if err := json.Unmarshal(c.auths[k], &e); err != nil {
			return Credentials{}, fmt.Errorf("%w: %s: auths[%q]: %v", ErrDockerConfig, c.path, k, err)
		}
		cr := Credentials{Username: e.Username, Password: e.Password, IdentityToken: e.IdentityToken}
		if e.Auth != "" {
			user, pass, err := decodeAuth(e.Auth)
			if err != nil {
				return Credentials{}, fmt.Errorf("%w: %s: auths[%q].auth: %v", ErrDockerConfig, c.path, k, err)
			}
			cr.Username, cr.Password = user, pass
		}
		if cr.IdentityToken != "" {
			cr.Password = "" // docker stores "user:" next to an identity token anyway
		}
		if cr.IsZero() {
			if store != "" {
				return Credentials{}, helperError(c.path, registry, store)
			}
			continue
		}
		return cr, nil
	}
	return Credentials{}, nil
}

func helperError(path, registry, helper string) error {
	return fmt.Errorf("%w: %s delegates the credentials of %s to docker-credential-%s; "+
		"run `berth login %s` to store them in the file, or use a config without credsStore/credHelpers",
		ErrCredentialHelper, path, registry, helper, registry)
}

// decodeAuth decodes the base64 "auth" value user:password.
func decodeAuth(s string) (user, password string, err error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		if b, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "=")); err != nil {
			return "", "", errors.New("not base64")
		}
	}
	user, password, ok := strings.Cut(string(b), ":")
	if !ok {
		return "", "", errors.New("not user:password")
	}
	return user, password, nil
}

// SetCredentials stores cr for registry under the key host[:port], replacing every entry
// that names the same registry and keeping all other entries. With an identity token the
// password is not stored ("auth" is the base64 of "user:"), as docker does. A user name
// holding ':' is refused (ErrDockerConfig): "auth" could not carry it.
func (c *DockerConfig) SetCredentials(registry string, cr Credentials) error {
	registry, err := NormalizeRegistry(registry)
	if err != nil {
		return err
	}
	if strings.Contains(cr.Username, ":") {
		// "auth" is user:password split at the first ':', as Basic
		// authentication is (RFC 7617 forbids a ':' in the user-id).
		return fmt.Errorf("%w: user name %q holds a ':', which its auth entry (user:password) cannot carry", ErrDockerConfig, cr.Username)
	}
	for _, k := range c.keysFor(registry) {
		delete(c.auths, k)
	}
	e := authEntry{IdentityToken: cr.IdentityToken}
	password := cr.Password
	if cr.IdentityToken != "" {
		password = ""
	}
	if cr.Username != "" || password != "" {
		e.Auth = base64.StdEncoding.EncodeToString([]byte(cr.Username + ":" + password))
	}
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	c.auths[registry] = b
	return nil
}

// RemoveCredentials removes every entry for registry and reports whether there was one.
func (c *DockerConfig) RemoveCredentials(registry string) (bool, error) {
	registry, err := NormalizeRegistry(registry)
	if err != nil {
		return false, err
	}
	keys := c.keysFor(registry)
	for _, k := range keys {
		delete(c.auths, k)
	}
	return len(keys) > 0, nil
}

// Save writes the config back to Path(): mode 0600, through a temporary file renamed
// into place (into the target of a symlink), creating the directory (0700) if needed.
func (c *DockerConfig) Save() error {
	top := make(map[string]json.RawMessage, len(c.top)+1)
	for k, v := range c.top {
		top[k] = v
	}
	auths, err := json.Marshal(c.auths)
	if err != nil {
		return err
	}
	top["auths"] = auths
	b, err := json.MarshalIndent(top, "", "\t")
	if err != nil {
		return err
	}
	b = append(b, '\n')

	path := c.path
	if target, err := filepath.EvalSymlinks(path); err == nil {
		path = target
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".config.json.*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
